#!/bin/sh
# h5py-roundtrip.sh - the schema is usable from another language: files
# written by h5py (variable-length strings, numpy booleans, 1-element array
# attributes, integers stored as floats, an empty packed sequence), with
# outputs from a plain numpy implementation of the math in DESIGN.md, are
# accepted by `lcattn run`, and the double reference agrees with numpy to
# 1e-12 by `lcattn check`. And h5py reads our golden files. Skips (77)
# without python3-h5py.
set -u
tool="$top_builddir/tools/lcattn"
py=
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import h5py, numpy' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "skip: no python3 with h5py and numpy (Debian: python3-h5py)"; exit 77; }
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/write.py" <<'EOF'
import sys
import h5py
import numpy as np

rng = np.random.default_rng(7)

def rope_half(x, pos, r, theta):
    """Rotate pairs (i, i + r/2) of the first r coordinates at position pos."""
    y = x.copy()
    for i in range(r // 2):
        a = pos * theta ** (-2.0 * i / r)
        c, s = np.cos(a), np.sin(a)
        y[i], y[i + r // 2] = c * x[i] - s * x[i + r // 2], s * x[i] + c * x[i + r // 2]
    return y

def softmax(path, causal):
    Tq, Tk, H, Hkv, dk, dv, W, r, theta = 9, 13, 4, 2, 8, 6, 5, 4, 100.0
    q = rng.standard_normal((Tq, H, dk))
    k = rng.standard_normal((Tk, Hkv, dk))
    v = rng.standard_normal((Tk, Hkv, dv))
    scale = 1 / np.sqrt(dk)
    o, lse = np.zeros((Tq, H, dv)), np.zeros((Tq, H))
    for i in range(Tq):
        pq = Tk - Tq + i  # bottom-right alignment
        keep = [s for s in range(Tk) if not causal or 0 <= pq - s < W]
        for h in range(H):
            g = h // (H // Hkv)
            qr = rope_half(q[i, h], pq, r, theta)
            l = np.array([scale * rope_half(k[s, g], s, r, theta) @ qr for s in keep])
            m = l.max()
            p = np.exp(l - m)
            o[i, h] = (p / p.sum()) @ v[keep, g, :]
            lse[i, h] = m + np.log(p.sum())
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "lcattn-golden/1"       # variable-length string
        f.attrs["variant"] = np.bytes_("softmax")   # fixed-length string
        f.attrs["case"] = "h5py-softmax"
        f.attrs["seed"] = 7
        c = f.create_group("config")
        c.attrs["Tq"] = Tq
        c.attrs["Tk"] = np.array([Tk])               # a 1-element array
        c.attrs["H"] = np.float64(H)                 # an integer stored as float
        c.attrs["Hkv"] = np.int32(Hkv)
        c.attrs["dk"] = dk
        c.attrs["dv"] = np.uint8(dv)
        c.attrs["scale"] = scale
        c.attrs["causal"] = np.bool_(causal)         # h5py: an enum over int8
        if causal:
            c.attrs["window"] = W
        c.attrs["rope_dim"] = r
        c.attrs["rope_theta"] = theta
        c.attrs["rope_style"] = "half"
        i = f.create_group("inputs")
        i["q"], i["k"], i["v"] = q, k, v
        out = f.create_group("outputs")
        out["o"], out["lse"] = o, lse

def deltanet(path):
    seq = [5, 0, 9, 4]  # an empty sequence too
    T, H, Hk, dk, dv, N = sum(seq), 4, 2, 6, 5, len(seq)
    q = rng.standard_normal((T, Hk, dk))
    k = rng.standard_normal((T, Hk, dk))
    v = rng.standard_normal((T, H, dv))
    g = -rng.uniform(0, 2, (T, H))
    beta = rng.uniform(0, 1, (T, H))
    s0 = rng.standard_normal((N, H, dk, dv))
    cu = np.concatenate([[0], np.cumsum(seq)]).astype(np.int64)
    nrm = lambda x: x / np.sqrt((x * x).sum() + 1e-6)
    o, st = np.zeros((T, H, dv)), np.zeros((N, H, dk, dv))
    for n in range(N):
        for h in range(H):
            S, j = s0[n, h].copy(), h // (H // Hk)
            for t in range(cu[n], cu[n + 1]):
                kk, qq = nrm(k[t, j]), nrm(q[t, j]) / np.sqrt(dk)
                S = np.exp(g[t, h]) * S
                S = S + np.outer(kk, beta[t, h] * (v[t, h] - S.T @ kk))
                o[t, h] = S.T @ qq
            st[n, h] = S
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "lcattn-golden/1"
        f.attrs["variant"] = "deltanet"
        c = f.create_group("config")
        for name, val in dict(T=T, H=H, Hk=Hk, dk=dk, dv=dv, nseq=N).items():
            c.attrs[name] = val
        c.attrs["qk_l2norm"] = True
        i = f.create_group("inputs")
        for name, val in dict(q=q, k=k, v=v, g=g, beta=beta, state0=s0, cu_seqlens=cu).items():
            i[name] = val
        out = f.create_group("outputs")
        out["o"], out["state"] = o, st

def lightning(path):
    T, H, dk, dv = 23, 2, 4, 3
    q, k, v = (rng.standard_normal((T, H, d)) for d in (dk, dk, dv))
    slope = np.array([0.5, 0.01])
    o, st = np.zeros((T, H, dv)), np.zeros((1, H, dk, dv))
    for h in range(H):
        S = np.zeros((dk, dv))
        for t in range(T):
            S = np.exp(-slope[h]) * S + np.outer(k[t, h], v[t, h])
            o[t, h] = S.T @ q[t, h]
        st[0, h] = S
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "lcattn-golden/1"
        f.attrs["variant"] = "lightning"
        c = f.create_group("config")
        for name, val in dict(T=T, H=H, dk=dk, dv=dv).items():
            c.attrs[name] = val
        i = f.create_group("inputs")
        i["q"], i["k"], i["v"], i["slope"] = q, k, v, slope
        out = f.create_group("outputs")
        out["o"], out["state"] = o, st

d = sys.argv[1]
softmax(d + "/softmax-window.h5", True)
softmax(d + "/softmax-full.h5", False)
deltanet(d + "/deltanet.h5")
lightning(d + "/lightning.h5")
EOF

cat >"$tmp/read.py" <<'EOF'
import sys
import h5py
for path in sys.argv[1:]:
    with h5py.File(path, "r") as f:
        a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        assert a["schema"] == "lcattn-golden/1", a
        assert a["variant"] in ("softmax", "mla", "deltanet", "lightning"), a
        assert a["command"].startswith("lcattn gen "), a
        assert int(a["seed"]) >= 0 and a["generator"].startswith("lcattn "), a
        assert f["inputs"]["q" if a["variant"] != "mla" else "q_nope"].dtype == "float64"
        assert f["outputs"]["o"].ndim == 3 and len(f["config"].attrs["H"].shape) == 0
        for name, m in f["metrics"].items():
            d = m.attrs["definition"]
            assert len(d.decode() if isinstance(d, bytes) else d) > 10, (path, name)
print("h5py reads %d golden files" % (len(sys.argv) - 1))
EOF

status=0
"$py" "$tmp/write.py" "$tmp" || { echo "FAIL: h5py could not write the cases"; exit 1; }
for c in softmax-window softmax-full deltanet lightning; do
	if "$tool" run "$tmp/$c.h5" "$tmp/$c.out.h5" && "$tool" check "$tmp/$c.h5" "$tmp/$c.out.h5"; then
		echo "ok: h5py-written $c: accepted, reference agrees with numpy"
	else
		echo "FAIL: h5py-written $c"
		status=1
	fi
done
"$py" "$tmp/read.py" "$top_srcdir"/golden/*.h5 || { echo "FAIL: h5py cannot read the golden files"; status=1; }

# The smallest candidate lcattn-golden(5) allows: schema, generator, /outputs
# (here the golden outputs rounded to float32, checked by the f32 rule).
g="$top_srcdir/golden/deltanet-t65.h5"
"$py" - "$g" "$tmp/mine.h5" <<'EOF'
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as g, h5py.File(sys.argv[2], "w") as f:
    f.attrs["schema"] = "lcattn-golden/1"
    f.attrs["generator"] = "my-kernel 1.0 f32"
    for name in ("o", "state"):
        f["outputs/" + name] = g["outputs/" + name][...].astype(np.float32).astype(np.float64)
EOF
if "$tool" check "$g" "$tmp/mine.h5"; then
	echo "ok: a minimal h5py candidate is checked by the f32 rule"
else
	echo "FAIL: minimal h5py candidate"
	status=1
fi
exit $status

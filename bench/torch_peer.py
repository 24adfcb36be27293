#!/usr/bin/env python3
"""torch_peer.py - the PyTorch peer of `lcattn bench`.

Times the same causal prefill math as the lcattn cpu backend, written the
way one would write it in PyTorch on the CPU, with the shapes of the bench
(H=8, d=128; mla dn=128 dr=64 dc=512 dv=128):

  softmax    matmul-softmax-matmul with a causal mask (T x T logits per head)
  mla        naive, the form lcattn's cpu AUTO runs for a prefill (3.4x
             fewer flops than absorbed at these shapes): K and V
             decompressed per head, then matmul-softmax-matmul, interleaved
             RoPE on dr; the absorbed form (DeepSeek-V2 sec. 2.1) is kept
             for --selftest
  deltanet   Gated DeltaNet, chunked WY/UT form (chunk 64): every chunk's UT
             triangular solve batched, then one pass over chunks for the state
  lightning  blockwise (block 256): intra-block (Q K^T . D) V, inter-block
             through the carried state, every exponent <= 0

Prints "# ..." lines that describe the run and one "mechanism,T,seconds"
line per measurement (median of --reps calls; one call when a call takes
over 20 s). --selftest checks each chunked form against its token-by-token
recurrence in float64 and exits.
"""
import argparse
import math
import os
import sys
import time

# Debian's torch runs elementwise ops on an OpenMP pool and GEMMs on
# OpenBLAS's own pthreads pool. With OpenMP's default active spin-wait the
# two pools fight for the cores: a [8,4096,128] x [8,128,4096] bmm ran at
# 33 GFLOP/s by default and 81 GFLOP/s with passive waiting on the 2-core
# development machine (deltanet T=4096: 5.3 s against 0.37 s). Give the
# peer its better setting unless the caller chose one (it must be set
# before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

H, D = 8, 128
DN, DR, DC, DV = 128, 64, 512, 128
CHUNK, BLOCK = 64, 256
LONG_S = 20.0


def causal_mask(T):
    """True above the diagonal: the keys a query must not see."""
    return torch.ones(T, T, dtype=torch.bool).triu_(1)


def softmax_attn(q, k, v, scale):
    """q, k [T,H,dk], v [T,H,dv] -> o [T,H,dv]."""
    T = q.shape[0]
    s = torch.matmul(q.transpose(0, 1), k.transpose(0, 1).transpose(1, 2)) * scale
    s.masked_fill_(causal_mask(T), float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.matmul(p, v.transpose(0, 1)).transpose(0, 1).contiguous()


def rope_interleaved(x, theta=10000.0):
    """Rotate pairs (2i, 2i+1) of x [T,...,d] at positions 0..T-1."""
    T, d = x.shape[0], x.shape[-1]
    freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    shape = (T,) + (1,) * (x.dim() - 2) + (d // 2,)
    c = torch.cos(ang).to(x.dtype).reshape(shape)
    s = torch.sin(ang).to(x.dtype).reshape(shape)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


def mla_absorbed(qn, qr, ckv, kr, wuk, wuv, scale):
    """qn [T,H,dn], qr [T,H,dr], ckv [T,dc], kr [T,dr], wuk [H,dn,dc],
    wuv [H,dv,dc] -> o [T,H,dv]. Selftest only."""
    T = qn.shape[0]
    qr, kr = rope_interleaved(qr), rope_interleaved(kr)
    qlat = torch.matmul(qn.transpose(0, 1), wuk)                  # [H,T,dc]
    s = torch.matmul(qlat, ckv.t()) + torch.matmul(qr.transpose(0, 1), kr.t())
    s.mul_(scale).masked_fill_(causal_mask(T), float("-inf"))
    p = torch.softmax(s, dim=-1)
    lat = torch.matmul(p, ckv)                                    # [H,T,dc]
    return torch.matmul(lat, wuv.transpose(1, 2)).transpose(0, 1).contiguous()


def mla_naive(qn, qr, ckv, kr, wuk, wuv, scale):
    """Decompressed K and V per head: the timed form."""
    T = qn.shape[0]
    qr, kr = rope_interleaved(qr), rope_interleaved(kr)
    k_nope = torch.einsum("hnc,tc->htn", wuk, ckv)
    v = torch.einsum("hvc,tc->htv", wuv, ckv)
    q = torch.cat((qn.transpose(0, 1), qr.transpose(0, 1)), dim=-1)
    k = torch.cat((k_nope, kr[None].expand(qn.shape[1], -1, -1)), dim=-1)
    s = (q @ k.transpose(1, 2)) * scale
    s.masked_fill_(causal_mask(T), float("-inf"))
    return (torch.softmax(s, -1) @ v).transpose(0, 1)


def l2norm(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def deltanet_chunked(q, k, v, g, beta, scale, C=CHUNK):
    """Gated DeltaNet, chunked WY/UT form. Per chunk, with G the in-chunk
    cumulative log decay (Gamma_i = exp(G_i)) and u the pseudo-values of
    S_i = Gamma_i S0 + sum_{j<=i} Gamma_i/Gamma_j k_j u_j^T:
      (I + A) U = beta V - beta Gamma K S0,  A_ij = beta_i Gamma_i/Gamma_j k_i.k_j (j < i)
      O  = Gamma Q S0 + (Q K^T . D) U,       D_ij = Gamma_i/Gamma_j (j <= i)
      S0 <- Gamma_C S0 + K^T (Gamma_C/Gamma_j . U)
    Padding tokens (k = v = 0, g = 0, beta = 0) change nothing."""
    T, Hh, dk = q.shape
    dv = v.shape[2]
    q, k = l2norm(q) * scale, l2norm(k)
    N = (T + C - 1) // C
    pad = N * C - T
    if pad:
        z = lambda x: torch.cat((x, x.new_zeros((pad,) + x.shape[1:])))
        q, k, v, g, beta = z(q), z(k), z(v), z(g), z(beta)
    Q = q.transpose(0, 1).reshape(Hh, N, C, dk)
    K = k.transpose(0, 1).reshape(Hh, N, C, dk)
    V = v.transpose(0, 1).reshape(Hh, N, C, dv)
    G = g.t().reshape(Hh, N, C).cumsum(-1)
    B = beta.t().reshape(Hh, N, C)
    incl = torch.ones(C, C, dtype=torch.bool).tril_()
    strict = incl.clone().fill_diagonal_(False)
    # exponents masked to -inf before exp: every one kept <= 0
    Dm = torch.exp((G[..., :, None] - G[..., None, :]).masked_fill(~incl, float("-inf")))
    A = (B[..., :, None] * (K @ K.transpose(-1, -2)) * Dm).masked_fill_(~strict, 0)
    eye = torch.eye(C, dtype=q.dtype)
    rhs = torch.cat((K * (B * torch.exp(G))[..., None], V * B[..., None]), dim=-1)
    WU = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
    W, U = WU[..., :dk], WU[..., dk:]
    QK = (Q @ K.transpose(-1, -2)) * Dm
    Qg = Q * torch.exp(G)[..., None]
    Kd = K * torch.exp(G[..., -1:] - G)[..., None]
    S = q.new_zeros(Hh, dk, dv)
    O = q.new_empty(Hh, N, C, dv)
    for n in range(N):
        Un = U[:, n] - W[:, n] @ S
        O[:, n] = Qg[:, n] @ S + QK[:, n] @ Un
        S = torch.exp(G[:, n, -1])[:, None, None] * S + Kd[:, n].transpose(1, 2) @ Un
    return O.reshape(Hh, N * C, dv)[:, :T].transpose(0, 1).contiguous(), S


def deltanet_recurrent(q, k, v, g, beta, scale):
    T, Hh, dk = q.shape
    q, k = l2norm(q) * scale, l2norm(k)
    S = q.new_zeros(Hh, dk, v.shape[2])
    o = q.new_empty(T, Hh, v.shape[2])
    for t in range(T):
        S = torch.exp(g[t])[:, None, None] * S
        u = beta[t][:, None] * (v[t] - torch.einsum("hkv,hk->hv", S, k[t]))
        S = S + k[t][:, :, None] * u[:, None, :]
        o[t] = torch.einsum("hkv,hk->hv", S, q[t])
    return o, S


def lightning_blockwise(q, k, v, slope, scale, Bk=BLOCK):
    """Per block of b tokens, local index i = 0..b-1, lambda = exp(-slope):
      O = scale (lambda^(i+1) Q S + (Q K^T . D) V),  D_ij = lambda^(i-j) (j <= i)
      S <- lambda^b S + (lambda^(b-1-j) K)^T V
    Every exponent is -slope times a non-negative count: never > 0."""
    T, Hh, dk = q.shape
    dv = v.shape[2]
    Q, K, V = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    sl = slope.to(q.dtype)[:, None]
    S = q.new_zeros(Hh, dk, dv)
    O = q.new_empty(Hh, T, dv)
    for t0 in range(0, T, Bk):
        b = min(Bk, T - t0)
        i = torch.arange(b, dtype=q.dtype)
        diff = (i[:, None] - i[None, :])
        incl = diff >= 0
        Dm = torch.where(incl, torch.exp(-sl[:, :, None] * diff.clamp(min=0)), q.new_zeros(()))
        Qb, Kb, Vb = Q[:, t0:t0 + b], K[:, t0:t0 + b], V[:, t0:t0 + b]
        inter = (Qb * torch.exp(-sl * (i + 1))[..., None]) @ S
        O[:, t0:t0 + b] = scale * (inter + ((Qb @ Kb.transpose(1, 2)) * Dm) @ Vb)
        S = torch.exp(-sl * b)[..., None] * S + (Kb * torch.exp(-sl * (b - 1 - i))[..., None]).transpose(1, 2) @ Vb
    return O.transpose(0, 1).contiguous(), S


def lightning_recurrent(q, k, v, slope, scale):
    T, Hh, dk = q.shape
    lam = torch.exp(-slope.to(q.dtype))[:, None, None]
    S = q.new_zeros(Hh, dk, v.shape[2])
    o = q.new_empty(T, Hh, v.shape[2])
    for t in range(T):
        S = lam * S + k[t][:, :, None] * v[t][:, None, :]
        o[t] = scale * torch.einsum("hkv,hk->hv", S, q[t])
    return o, S


def minimax_slopes(Hh, layer=0, L=8):
    """2^(-8(h+1)/H) (1 - layer/(L-1) + 1e-5), H a power of two."""
    f = 1 - layer / (L - 1) + 1e-5
    return torch.tensor([2 ** (-8 * (h + 1) / Hh) * f for h in range(Hh)], dtype=torch.float64)


def inputs(mech, T, dtype, gen, Hh=H, d=D, dn=DN, dr=DR, dc=DC, dv=DV):
    """The bench's distributions: mild values, g in (-0.1, 0], beta in [0,1)."""
    u = lambda *shape, lo=-1.0, hi=1.0: (lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)).to(dtype)
    if mech == "softmax":
        return (u(T, Hh, d), u(T, Hh, d), u(T, Hh, d), 1 / math.sqrt(d))
    if mech == "mla":
        w = 1 / math.sqrt(dc)
        return (u(T, Hh, dn), u(T, Hh, dr), u(T, dc), u(T, dr),
                u(Hh, dn, dc, lo=-w, hi=w), u(Hh, dv, dc, lo=-w, hi=w), 1 / math.sqrt(dn + dr))
    if mech == "deltanet":
        return (u(T, Hh, d), u(T, Hh, d), u(T, Hh, d), u(T, Hh, lo=-0.1, hi=0.0),
                u(T, Hh, lo=0.0, hi=1.0), 1 / math.sqrt(d))
    return (u(T, Hh, d), u(T, Hh, d), u(T, Hh, d), minimax_slopes(Hh).to(dtype), 1.0)


FAST = {"softmax": softmax_attn, "mla": mla_naive,
        "deltanet": deltanet_chunked, "lightning": lightning_blockwise}


def time_calls(fn, args, reps):
    """Median seconds of >= reps calls; a first call under 1 s is a warm-up;
    stop after any call over LONG_S."""
    times = []
    first = True
    while len(times) < reps:
        t0 = time.perf_counter()
        fn(*args)
        dt = time.perf_counter() - t0
        if first and dt < 1.0:
            first = False
            continue
        first = False
        times.append(dt)
        if dt > LONG_S:
            break
    times.sort()
    n = len(times)
    return (times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2), n


def rel(x, ref):
    return (torch.linalg.norm((x - ref).flatten()) / torch.linalg.norm(ref.flatten())).item()


def selftest():
    """Each peer form against its definition, float64, a ragged length."""
    gen = torch.Generator().manual_seed(7)
    T, Hh, d = 300, 2, 16
    dt = torch.float64
    a = inputs("deltanet", T, dt, gen, Hh, d)
    e_dn = max(rel(x, y) for x, y in zip(deltanet_chunked(*a), deltanet_recurrent(*a)))
    a = inputs("lightning", T, dt, gen, Hh, d)
    e_li = max(rel(x, y) for x, y in zip(lightning_blockwise(*a), lightning_recurrent(*a)))
    a = inputs("mla", T, dt, gen, Hh, d, 16, 8, 32, 16)
    e_mla = rel(mla_absorbed(*a), mla_naive(*a))
    q, k, v, sc = inputs("softmax", T, dt, gen, Hh, d)
    ref = torch.empty_like(v)
    for t in range(T):
        w = torch.softmax(torch.einsum("hd,shd->hs", q[t], k[:t + 1]) * sc, -1)
        ref[t] = torch.einsum("hs,shd->hd", w, v[:t + 1])
    e_sm = rel(softmax_attn(q, k, v, sc), ref)
    print(f"deltanet chunked vs recurrent {e_dn:.2e}, lightning blockwise vs recurrent {e_li:.2e}, "
          f"mla absorbed vs naive {e_mla:.2e}, softmax vs loop {e_sm:.2e}")
    return 0 if max(e_dn, e_li, e_mla, e_sm) < 1e-10 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", default="1024,4096,8192")
    ap.add_argument("--mech", default="softmax,mla,deltanet,lightning")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.selftest:
        return selftest()
    dtype = getattr(torch, a.dtype)
    print(f"# torch {torch.__version__} on the cpu, {torch.get_num_threads()} threads, {a.dtype}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
          f"softmax matmul-softmax-matmul, mla naive, deltanet chunked WY/UT (chunk {CHUNK}), "
          f"lightning blockwise (block {BLOCK})", flush=True)
    with torch.inference_mode():
        for mech in a.mech.split(","):
            for T in (int(t) for t in a.T.split(",")):
                args = inputs(mech, T, dtype, torch.Generator().manual_seed(T))
                t0 = time.perf_counter()
                secs, n = time_calls(FAST[mech], args, a.reps)
                print(f"{mech},{T},{secs:.6g}", flush=True)
                print(f"torch peer: {mech:9s} T={T:<6d} ... {secs:.3g} s per call, {n} call"
                      f"{'' if n == 1 else 's'} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
                del args
    return 0


if __name__ == "__main__":
    sys.exit(main())

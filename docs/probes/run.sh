#!/bin/sh
# run.sh - regenerate every probe table and plot of lcattn-probes(7).
#
#   docs/probes/run.sh [DIR]
#
# runs each probe of `lcattn probe` on the default shape (dk = dv = 64, one
# head, random unit keys and values, rho 0, seeds from 1) and writes, in DIR
# (default: this script's directory):
#   NAME.csv        the summary each probe prints
#   NAME-*.csv      its full table (--csv)
#   token.txt       the answer for token 847 of 4096
#   gradflow.csv    the gradient of the last output against distance (T 1024;
#                   for mla, of the latent ckv and the rotary key k_rope)
#   *.png           the plots (plot.sh, gnuplot)
# The tool is $LCATTN if set, else ./tools/lcattn, else the tree's. The
# numbers come from seeded draws and the double reference: a rerun on the
# same machine gives the same files. About a minute on two cores.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here}
tool=${LCATTN:-}
if [ -z "$tool" ]; then
	if [ -x ./tools/lcattn ]; then tool=./tools/lcattn; else tool=$here/../../tools/lcattn; fi
fi
case $tool in /*) ;; *) tool=$(pwd)/$tool ;; esac
[ -x "$tool" ] || { echo "run.sh: no lcattn at $tool (build first or set LCATTN)" >&2; exit 2; }
mkdir -p "$dir"
cd "$dir"

echo "run.sh: retrieval against age and load" >&2
"$tool" probe retrieval --csv retrieval-age.csv >retrieval.csv
echo "run.sh: deltanet overwrite against similarity" >&2
"$tool" probe overwrite --csv overwrite-age.csv >overwrite.csv
echo "run.sh: lightning dilution against length" >&2
"$tool" probe dilution --csv dilution-age.csv >dilution.csv
echo "run.sh: order sensitivity against distance" >&2
"$tool" probe position --csv position-dist.csv >position.csv
echo "run.sh: token 847 of 4096" >&2
"$tool" probe token --index 847 --T 4096 --csv token.csv >token.txt
echo "run.sh: gradient of the last output against distance" >&2
"$tool" probe gradflow --csv gradflow-dist.csv >gradflow.csv
sh "$here/plot.sh" "$dir"
echo "run.sh: wrote the probe tables and plots in $dir" >&2

#!/bin/sh
# plot.sh - draw the probe plots from the CSV files that run.sh wrote.
#
#   docs/probes/plot.sh [DIR]
#
# reads and writes in DIR (default: this script's directory). Needs gnuplot
# with the pngcairo terminal (Debian: gnuplot-nox).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here}
command -v gnuplot >/dev/null 2>&1 || { echo "plot.sh: gnuplot not found" >&2; exit 2; }
cd "$dir"

gnuplot <<'GP'
set datafile separator ","
set terminal pngcairo size 900,560 font ",11" noenhanced
set grid
set key top left
mech = "softmax mla deltanet lightning"
sel(name, v) = strcol(1) eq name ? v : NaN

# ---- retrieval error against age, at two loads ----
set output "retrieval-age.png"
set multiplot layout 1,2 title "retrieval error against age (dk = dv = 64, random unit keys, 16 seeds)"
set xlabel "age of the pair (tokens written after it)"
set ylabel "error min_a ||a o - v|| / ||v||"
set yrange [0:1.05]
set xrange [0:63]
set key center right
set title "N/dk = 1 (64 pairs; mla = softmax while N <= dc)"
plot for [m in mech] "retrieval-age.csv" using 7:(strcol(1) eq m && $5 == 1 ? $8 : NaN) \
	with lines lw 2 title m
set xrange [0:255]
set key at graph 0.97, graph 0.06 right bottom
set title "N/dk = 4 (256 pairs)"
plot for [m in mech] "retrieval-age.csv" using 7:(strcol(1) eq m && $5 == 4 ? $8 : NaN) \
	with lines lw 2 title m
unset multiplot
unset title
set autoscale x
# "set key at ..." above sticks until the key is reset.
set key default
set key top left

# ---- mean retrieval error against load ----
set output "retrieval-load.png"
set title "mean retrieval error against load N/dk (dk = dv = 64)"
set logscale x 2
set xlabel "load N/dk"
set ylabel "mean error over the N pairs"
plot for [m in mech] "retrieval.csv" using 5:(strcol(1) eq m ? $7 : NaN) \
	with linespoints lw 2 title m
unset logscale x

# ---- deltanet overwrite against age and similarity ----
set output "overwrite-age.png"
set title "DeltaNet overwrite 1 - ||P k_i|| / ||k_i|| against age (beta = 1, T = 4096)"
set logscale x
set xlabel "age + 1"
set ylabel "overwrite"
set key bottom right
plot for [r in "0 0.2 0.4 0.6 0.8"] "overwrite-age.csv" \
	using ($7 + 1):($5 == r + 0 ? $8 : NaN) with lines lw 2 title "rho = ".r
unset logscale x

set output "overwrite-rho.png"
set title "DeltaNet overwrite against key similarity (beta = 1, T = 4096, dk = 64)"
set xlabel "mean pairwise cosine rho of the keys"
set ylabel "overwrite"
set key center right
set xrange [-0.05:0.85]
set yrange [0:1.05]
plot "overwrite.csv" using 5:8 skip 1 with linespoints lw 2 title "after dk = 64 later writes", \
	"" using 5:7 skip 1 with linespoints lw 2 title "mean over the 4096 tokens"
set xrange [*:*]
set key top left

# ---- lightning dilution against length and age ----
set output "dilution-length.png"
set title "Lightning crosstalk / signal against length (dk = dv = 64, median over tokens)"
set logscale xy
set xlabel "tokens T (load T/dk)"
set ylabel "crosstalk / signal"
set yrange [*:*]
plot "dilution.csv" using 5:($4 == 0 ? $8 : NaN) skip 1 with linespoints lw 2 title "lambda = 1", \
	"" using 5:($4 > 0 ? $8 : NaN) skip 1 with linespoints lw 2 title "slope 2^-8 (MiniMax layer 0, slowest head)", \
	"" using 5:($4 == 0 ? $11 : NaN) skip 1 with lines dt 2 lw 2 title "sqrt((T-1)/dk)"

set output "dilution-age.png"
set title "Lightning crosstalk / signal against age at T = 4096 (dk = dv = 64)"
set xlabel "age + 1"
plot "dilution-age.csv" using ($7 + 1):($4 == 0 && $5 == 4096 ? $8 : NaN) skip 1 \
	with lines lw 2 title "lambda = 1", \
	"" using ($7 + 1):($4 > 0 && $5 == 4096 ? $8 : NaN) skip 1 with lines lw 2 \
	title "slope 2^-8"

# ---- order sensitivity against distance ----
set output "position.png"
set title "order sensitivity against distance (T = 4096, dk = dv = 64, 16 seeds; RoPE on softmax, mla dr = 16)"
set xlabel "distance d of the swapped pair from the reader"
set ylabel "||o_d - o|| / ||o||"
set yrange [1e-18:1]
set format y "%.0e"
set key bottom left
plot for [m in mech] "position-dist.csv" using 6:(strcol(1) eq m ? $7 : NaN) \
	with lines lw 2 title m, 0.01 with lines dt 2 lc "black" title "1%"

# ---- gradient of the last output against distance ----
set terminal pngcairo size 1200,560 font ",11" noenhanced
set output "gradflow.png"
set multiplot layout 1,2 title "gradient of the last output of one layer against distance (T = 1024, 8 heads, dk = dv = 64, random unit inputs, RMS over heads and 8 seeds)"
set xlabel "distance d = T - 1 - t"
set logscale xy
set xrange [1:1023]
set yrange [1e-20:1]
set format y "%.0e"
set key bottom left
curves = "softmax softmax-rope deltanet-strong deltanet-weak lightning-l0 lightning-l7 mla mla-compressed"
# deltanet-strong goes on below the frame and underflows to 0 near d = 570;
# zeros cannot be drawn on a log scale. softmax-rope (dashed) lies on softmax;
# mla and mla-compressed (dashed) lie on it for the values (the gradient
# reaching the latent ckv_t) and near half of it for the keys (the rotary
# key k_rope_t, dr = 16 of dk = 64 coordinates).
set title "values: ||d o_{T-1} / d v_t||_F / sqrt(dv) (mla: the latent ckv_t)"
set ylabel "gradient norm"
plot for [i=1:words(curves)] "gradflow-dist.csv" \
	using 8:(strcol(1) eq word(curves, i) && $9 > 0 ? $9 : NaN) \
	with lines lw 2 dt 1 + (i == 2 || i >= 7) title word(curves, i)
set title "keys: ||d o_{T-1} / d k_t||_F / sqrt(dv), sampled (mla: k_rope_t)"
plot for [i=1:words(curves)] "gradflow-dist.csv" \
	using 8:(strcol(1) eq word(curves, i) && $10 > 0 ? $10 : NaN) \
	with lines lw 2 dt 1 + (i == 2 || i >= 7) title word(curves, i)
unset multiplot
GP
echo "plot.sh: wrote the PNG plots in $dir" >&2

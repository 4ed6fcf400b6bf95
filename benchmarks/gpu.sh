#!/usr/bin/env bash
# The GPU figures of the README: the same benchmarks on a machine whose JAX has a CUDA backend.
#   bash benchmarks/gpu.sh OUT_DIR check      # device, a GPU run of the exactness tests, extraction, gradient
#   bash benchmarks/gpu.sh OUT_DIR large      # 3_8x32 complete, enumeration
#   bash benchmarks/gpu.sh OUT_DIR enumerate  # enumeration: d-scaling, and batch sizes 256 vs 2048
#   bash benchmarks/gpu.sh OUT_DIR extract    # extraction only: the default cases and 3_8x32
#   bash benchmarks/gpu.sh OUT_DIR probe      # d = 32 enumeration: default, no fusion autotuner, no walks
# Each step has its own time limit; a step that fails leaves its log in OUT_DIR and the next one runs.
set -u
out=${1:?OUT_DIR}; part=${2:-check}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
py=${PYTHON:-python3}
mkdir -p "$out"
step() { local secs=$1 name=$2; shift 2; echo "== $name"; timeout "$secs" "$@" 2>&1 | tee "$out/$name.log" | tail -n 25; }
if [ "$part" = check ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $py -c "import jax; print('jax', jax.__version__, jax.devices())"
  step 200 tests $py -m pytest -q -x -p no:cacheprovider tests/test_subdivision.py tests/test_enumeration.py \
    -k "bunny_counts or closed_form or zero_bias or four_lines or lp_reference or multilayer_matches or bunny_2d or subset_count"
  step 220 extract $py benchmarks/extract.py --repeat 3 --out "$out/extract_gpu.json"
  step 90 gradient $py benchmarks/gradient.py --out "$out/gradient_gpu.json"
elif [ "$part" = extract ]; then
  step 240 extract $py benchmarks/extract.py --repeat 3 --out "$out/extract_gpu.json"
  step 150 extract_8x32 $py benchmarks/extract.py --cases bunny-3d-8x32 --repeat 1 --out "$out/extract_8x32_gpu.json"
elif [ "$part" = enumerate ]; then
  step 200 batch2048 $py benchmarks/enumerate.py --only w64_d4,w64_d8,3x16_d6 --batch-size 2048 --max-regions 50000 \
    --out "$out/enumerate_b2048_gpu.json"
  step 60 batch256 $py benchmarks/enumerate.py --only w64_d8 --max-regions 50000 --out "$out/enumerate_b256_gpu.json"
  step 240 dscaling $py benchmarks/enumerate.py --only dscaling --out "$out/enumerate_dscaling_gpu.json" \
    --plot "$out/enumerate_dscaling_gpu.png"
elif [ "$part" = probe ]; then
  # The session-4 GPU run never finished compiling d = 32 ("very slow compile" of a reduction fusion).
  # Every d = 32 kernel compiles for an H200 in under 4 s without a GPU (benchmarks/gpu_compile.py), where
  # XLA skips its autotuners; so first the default run, then the same without the fusion autotuner
  # (Triton against the native emitter per fusion), then without the walks. JAX logs each compilation.
  # The slowest compilations of a step, and the last one started (the stalled one, if it timed out).
  compiles() { echo "== $1: slowest compilations, last started"; grep -o "Finished XLA compilation of .*" "$out/$1.log" | sort -t' ' -k7 -g | tail -n 6
               grep "^Compiling " "$out/$1.log" | tail -n 1 | cut -c1-160; }
  d32() { local name=$1 xf="${XLA_FLAGS:-}${2:+ $2}"; shift 2
          step 150 "$name" env JAX_LOG_COMPILES=1 XLA_FLAGS="${xf# }" $py benchmarks/enumerate.py \
            --only dscaling --dims 32 --scale-repeats 1 --out "$out/probe_${name}_gpu.json" \
            --plot "$out/probe_${name}_gpu.png" "$@" > /dev/null; compiles "$name"; }
  d32 d32_walks ""
  d32 d32_no_fusion_autotuner --xla_gpu_experimental_enable_fusion_autotuner=false
  d32 d32_nowalks "" --walk-min-dim 1000000000
else
  step 200 extract_8x32 $py benchmarks/extract.py --cases bunny-3d-8x32 --repeat 1 --out "$out/extract_8x32_gpu.json"
  step 360 enumerate $py benchmarks/enumerate.py --baseline-seconds 20 --out "$out/enumerate_gpu.json" \
    --plot "$out/enumerate_dscaling_gpu.png"
fi

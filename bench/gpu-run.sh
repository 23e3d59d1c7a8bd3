#!/usr/bin/env bash
# Issue 7's measurements in one device run, most important first, inside a time budget.
# On the GPU machine (see ../shared/device/README.md), from the project root:
#   here:   npm run build && bash ../shared/device/pack.sh
#   device: carry [".device", "dist", "build"]  (build/ holds the io addon: N-API, portable)
#           command: . .device/prelude.sh && BUDGET_S=500 bash bench/gpu-run.sh
# Everything lands in $OUT (at most 8 files come back): gpu-run.log, build.log, precision.jsonl,
# native.jsonl, python.jsonl, compare.md, end-to-end.jsonl, product.log.
# A phase that fails is logged and the next one runs; a phase that would start after the budget is
# skipped (and logged), so the files that come back always say how far it got.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
BUDGET_S="${BUDGET_S:-500}"
started=$SECONDS
log() { echo "[$((SECONDS - started)) s] $*" | tee -a "$OUT/gpu-run.log"; }

# phase NAME MIN_SECONDS_LEFT COMMAND...: runs COMMAND unless fewer than MIN_SECONDS_LEFT remain.
phase() {
  local name=$1 need=$2; shift 2
  local left=$((BUDGET_S - (SECONDS - started)))
  if [ "$left" -lt "$need" ]; then
    log "skip $name: ${left} s left, it needs ~${need} s"
    return 0
  fi
  log "start $name"
  if timeout "$left" bash -c '"$@"' "$name" "$@"; then log "done $name"; else log "FAILED $name (exit $?)"; fi
}

# SMOKE=1 runs every phase on CPU with tiny sizes, to check this script itself on any machine.
if [ "${SMOKE:-0}" = 1 ]; then
  DEVICE=cpu SIZE=64 STEPS=2 WARMUP=1 BATCHES=2,4 E2E="--batch-size 4 --image-size 64 --records 64 --steps 4 --warmup 1 --width-factor 0.25"
  PRECISIONS_FIRST=fp32 PRECISIONS_REST=fp32 GRAPHS=off NATIVE_EXTRA="--width-factor 0.25" CHECK="--steps 20 --image-size 32 --batch-size 8 --width-factor 0.25" PRODUCT_EPOCHS=1 CONTEXT_PRECISION=fp32
else
  DEVICE=cuda SIZE=256 STEPS=20 WARMUP=5 BATCHES=8,32,128,256 E2E="--batch-size 128 --image-size 256 --records 6400 --steps 40 --warmup 5"
  PRECISIONS_FIRST=bf16 PRECISIONS_REST=fp16,fp32 GRAPHS=on,off NATIVE_EXTRA="" CHECK="--steps 200 --image-size 128 --batch-size 32" PRODUCT_EPOCHS=2 CONTEXT_PRECISION=fp16
fi
export OUT DEVICE SIZE STEPS WARMUP NATIVE_EXTRA PRODUCT_EPOCHS CONTEXT_PRECISION PYTHON="${PYTHON:-python3}"
native() { node dist/cli.js bench --device "$DEVICE" --image-size "$SIZE" --steps "$STEPS" --warmup "$WARMUP" $NATIVE_EXTRA "$@" >> "$OUT/native.jsonl"; }
python_eager() { "${PYTHON:-python3}" bench/python_baseline.py --device "$DEVICE" --image-size "$SIZE" --steps "$STEPS" --warmup "$WARMUP" --out "$OUT/python.jsonl" "$@" > /dev/null; }
export -f native python_eager

log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1); $(nproc) cores"
# The GPU JPEG decoder has never been compiled against CUDA 13's nvjpeg.h before this run: when
# the build fails, build again without it rather than lose every measurement.
build_engine() {
  node node_modules/cmake-js/bin/cmake-js compile --out native/engine/build > "$OUT/build.log" 2>&1 && return 0
  echo "=== build failed; building again without nvJPEG (ENGINE_NVJPEG=OFF) ===" >> "$OUT/build.log"
  node node_modules/cmake-js/bin/cmake-js rebuild --out native/engine/build --CDENGINE_NVJPEG=OFF >> "$OUT/build.log" 2>&1
}
export -f build_engine
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  phase build 150 build_engine
fi
grep -E "engine: (LibTorch|CUDA|nvJPEG)|build failed" "$OUT/build.log" 2>/dev/null | tee -a "$OUT/gpu-run.log"
node -e "const n=require('./dist/native');console.log(JSON.stringify(n.torchInfo()))" 2>&1 | tee -a "$OUT/gpu-run.log"

# 1. Correctness before speed: bf16/fp16 (and graph vs eager) loss curves against fp32 eager.
phase precision 60 bash -c "node dist/cli.js bench --precision-check --device $DEVICE $CHECK > '$OUT/precision.jsonl'"
# 2. The targets: B0, bf16, every batch size, graph on and off; Python eager and graph alongside.
phase native-b0-first 60 native --models efficientnet-b0 --precisions $PRECISIONS_FIRST --batch-sizes $BATCHES --graph-modes $GRAPHS
phase python-b0-first 60 python_eager --models efficientnet-b0 --precisions $PRECISIONS_FIRST --batch-sizes $BATCHES --modes eager,graph
phase compare 5 bash -c "node dist/bench/compare.js '$OUT/native.jsonl' '$OUT/python.jsonl' --markdown '$OUT/compare.md' | tee -a '$OUT/gpu-run.log'"
# 3. End to end at batch 128 from 1024 px JPEG TFRecords, decodes sized to the cores.
phase end-to-end 90 bash -c "node dist/cli.js bench --end-to-end --device $DEVICE $E2E >> '$OUT/end-to-end.jsonl'"
# 3b. The same from the GPU decoder (nvJPEG), after its pixels are compared with sharp's. On an
#     engine without it (CPU, SMOKE) the check prints why and the nvjpeg run is skipped.
phase decode-check 30 bash -c "node dist/cli.js bench --decode-check --device $DEVICE --image-size $SIZE >> '$OUT/end-to-end.jsonl'"
if node -e "process.exit(require('./dist/native').torchInfo().nvjpeg ? 0 : 1)" 2>/dev/null; then
  phase end-to-end-nvjpeg 90 bash -c "node dist/cli.js bench --end-to-end --device $DEVICE --decode nvjpeg $E2E >> '$OUT/end-to-end.jsonl'"
else
  log "skip end-to-end-nvjpeg: this engine has no nvJPEG decoder"
fi
# 4. The product itself on the device: the demo run (train:native's defaults: graphs, bf16), a
#    prediction with TTA and a calibrator, embeddings and Grad-CAM maps; then a patient-context
#    model in fp16 (its attention scores are computed in fp32 under autocast), its prediction (the
#    head on whole patients) and its Grad-CAM maps (the patients' other images as features).
product() {
  local runs="$OUT/product-runs" log="$OUT/product.log" demo
  set -e
  demo="$(node -p "require('./dist/data/demo').demoCacheDir()")"
  node dist/cli.js train --device "$DEVICE" --epochs "$PRODUCT_EPOCHS" --runs-dir "$runs" --log-every 10 >> "$log" 2>&1
  local run; run="$(ls -d "$runs"/*/ | head -1)"
  node dist/cli.js calibrate "$run" --out "$runs/calibrator.json" >> "$log" 2>&1
  node dist/cli.js predict "$run" --data "$demo" --tta 2 --calibrator "$runs/calibrator.json" --out "$runs/submission.csv" >> "$log" 2>&1
  node dist/cli.js embed "$run" --data "$demo" --out "$runs/embeddings" >> "$log" 2>&1
  node dist/cli.js explain "$run" --data "$demo" --hardest "$run/evaluation.json" --out "$runs/explained" >> "$log" 2>&1
  node dist/cli.js train --device "$DEVICE" --epochs "$PRODUCT_EPOCHS" --patient-context 64 --precision "$CONTEXT_PRECISION" --runs-dir "$runs/context" --log-every 10 >> "$log" 2>&1
  run="$(ls -d "$runs"/context/*/ | head -1)"
  node dist/cli.js predict "$run" --data "$demo" --out "$runs/context-submission.csv" >> "$log" 2>&1
  node dist/cli.js explain "$run" --data "$demo" --hardest "$run/evaluation.json" --out "$runs/context-explained" >> "$log" 2>&1
  rm -rf "$runs"  # only the log comes back (at most 8 files)
}
export -f product
phase product 90 product
# 5. The rest of the matrix, as time allows.
phase native-b0-rest 60 native --models efficientnet-b0 --precisions $PRECISIONS_REST --batch-sizes $BATCHES --graph-modes $GRAPHS
phase python-b0-rest 60 python_eager --models efficientnet-b0 --precisions $PRECISIONS_REST --batch-sizes $BATCHES
phase native-b3 60 native --models efficientnet-b3 --precisions $PRECISIONS_FIRST,$PRECISIONS_REST --batch-sizes $BATCHES --graph-modes $GRAPHS
phase python-b3 60 python_eager --models efficientnet-b3 --precisions $PRECISIONS_FIRST,$PRECISIONS_REST --batch-sizes $BATCHES
phase compare-all 5 bash -c "node dist/bench/compare.js '$OUT/native.jsonl' '$OUT/python.jsonl' --markdown '$OUT/compare.md' --replace | tee -a '$OUT/gpu-run.log'"
log "finished in $((SECONDS - started)) s"

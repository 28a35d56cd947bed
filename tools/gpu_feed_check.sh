#!/usr/bin/env bash
# The GPU measurements issue 18 asks for, in one run (about 8 minutes on one GPU with 16 cores):
# configs/gpu.toml with 16-mixed and channels-last, the data path stage by stage, the loader per
# worker count beside the step alone and end to end (data wait share, MFU), the batched device
# maps against numba, and train --profile. Results go to $OUT (or runs/gpu-feed) as JSON and logs.
#
#     OUT=/tmp/out bash tools/gpu_feed_check.sh
#
# Record the figures in docs/benchmarks.md ("Feeding the GPU") with `nvidia-smi -L` and `lscpu`.
set -euo pipefail
OUT=${OUT:-runs/gpu-feed}
mkdir -p "$OUT"
OCRKIT=${OCRKIT:-.venv/bin/ocrkit}
GPU=(--config configs/gpu.toml --set train.precision=16-mixed --set train.channels_last=true --set "log.dir=$OUT/runs")

{ nvidia-smi -L; lscpu | grep -E "Model name|^CPU\(s\)"; } > "$OUT/machine.txt" 2>&1 || true

# 1. one image's stages on one core (jitter and maps on the GPU where the fused pipeline puts them)
$OCRKIT bench data "${GPU[@]}" --sources store,preload --workers 0 --epoch-images 96 --repeats 3 \
    --model-steps 0 --name stages --json "$OUT/stages.json" 2>&1 | tee "$OUT/stages.log"
$OCRKIT bench data "${GPU[@]}" --set data.label_maps=device --pipelines fused --sources store \
    --workers 0 --epoch-images 96 --repeats 3 --model-steps 0 --name stages-device-maps \
    --json "$OUT/stages_device_maps.json" 2>&1 | tee "$OUT/stages_device_maps.log"
# 2. loader per worker count, the step alone and end to end (data wait share, TFLOP/s, MFU)
$OCRKIT bench data "${GPU[@]}" --pipelines fused --sources preload --workers 4,8,15 \
    --epoch-images 480 --repeats 2 --model-steps 40 --name workers --json "$OUT/workers.json" \
    2>&1 | tee "$OUT/workers.log"
# 3. the batched maps on the GPU against numba on one core, per image
$OCRKIT bench maps --no-growth --images 16 --repeats 5 --device-maps cuda --json "$OUT/maps.json" \
    2>&1 | tee "$OUT/maps.log"
# 4. train --profile: the step's stages with TFLOP/s and MFU per epoch
$OCRKIT train "${GPU[@]}" --profile --epochs 2 --name profile 2>&1 | tee "$OUT/profile.log"

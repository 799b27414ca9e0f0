#!/usr/bin/env bash
# Side by side on the CPU (issue #21): mini-Xception at 64x64 on the cats sample, the same
# seed, split and epoch budget for each recipe; one JSON per recipe in benchmarks/results/.
#   book                 conf/base
#   improved             conf/improved as measured for #13 (EMA and random erasing off)
#   improved_ema_erasing conf/improved as it is now (EMA 0.99, random erasing 0.25)
#   improved_all         the same + MixUp 0.2 + CutMix 1.0
# Usage: benchmarks/recipe_options.sh ARCHIVE [EPOCHS] [LIMIT]   (LIMIT: images per class and split)
set -euo pipefail
archive=${1:?the dogs-vs-cats.zip archive}
epochs=${2:-10}
limit=${3:-250}
here=$(dirname "$0")
run() {
  local name=$1
  shift
  TF_ENABLE_ONEDNN_OPTS=1 python "$here/train_gpu.py" --archive "$archive" --image-size 64 \
    --epochs "$epochs" --limit "$limit" \
    --output "$here/results/cpu_2core_64px_${epochs}_epochs_${limit}_recipe_${name}.json" "$@"
}
run book --recipe book
run improved --recipe improved --set training.ema=false --set augmentation.erasing=0
run improved_ema_erasing --recipe improved
run improved_all --recipe improved --set training.mixup_alpha=0.2 --set training.cutmix_alpha=1.0

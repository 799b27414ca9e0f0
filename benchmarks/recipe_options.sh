#!/usr/bin/env bash
# Side by side on the CPU (issue #21): mini-Xception at 64x64 on the cats sample (the book's
# 2,000 / 1,000 / 2,000 split), TensorFlow, seed 1337, the same epoch budget for each recipe;
# one JSON per recipe, benchmarks/results/cpu_2core_64px_<EPOCHS>_epochs_<recipe>_tensorflow.json:
#   book                  conf/base
#   improved              conf/improved as measured for #13 (EMA and random erasing off)
#   improved_ema_erasing  conf/improved as it is now (EMA 0.99, random erasing 0.25)
#   improved_all          the same + MixUp 0.2 + CutMix 1.0
#   improved_search       conf/improved + the best of a small search: 6 trials of 8 epochs, 2
#                         workers, on the same data at 64 px (README: the tune command; the
#                         values are its best_parameters.json)
# Usage: [RECIPES="improved_all ..."] [SUFFIX=_rerun] benchmarks/recipe_options.sh ARCHIVE [EPOCHS]
set -euo pipefail
archive=${1:?the dogs-vs-cats.zip archive}
epochs=${2:-25}
here=$(dirname "$0")
declare -A settings=(
  [book]="--recipe book"
  [improved]="--recipe improved --set training.ema=false --set augmentation.erasing=0"
  [improved_ema_erasing]="--recipe improved"
  [improved_all]="--recipe improved --set training.mixup_alpha=0.2 --set training.cutmix_alpha=1.0"
  [improved_search]="--recipe improved --set training.learning_rate=0.00430484185488353 \
    --set training.weight_decay=0.0005204518423796698 --set training.label_smoothing=0.19747311896846143 \
    --set training.batch_size=32 --set augmentation.rotation=0.05298933467143179 \
    --set augmentation.zoom=0.0009256138601780205"
)
for name in ${RECIPES:-book improved improved_ema_erasing improved_all}; do
  # shellcheck disable=SC2086  # the settings are words
  TF_ENABLE_ONEDNN_OPTS=1 python "$here/train_gpu.py" --archive "$archive" --image-size 64 \
    --epochs "$epochs" ${settings[$name]} \
    --output "$here/results/cpu_2core_64px_${epochs}_epochs_${name}_tensorflow${SUFFIX:-}.json"
done

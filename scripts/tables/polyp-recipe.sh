#!/usr/bin/env bash
# Table: the generalisation recipe (issue 14), one element at a time (docs/training.md#generalisation-recipe).
#
#   scripts/run_experiments.sh polyp-recipe [--resume]
#   RECIPE_EPOCHS=20 RECIPE_ARMS="base full" scripts/run_experiments.sh polyp-recipe
#   RECIPE_SIZE=160 RECIPE_EPOCHS=8 RECIPE_PROGRESSIVE="[{epochs: 2, size: 96}, {epochs: 2, size: 128}]" ...
#       (the CPU budget of docs/results.md)
#   RECIPE_RUN=recipe-pranet-e36 ...: the PraNet-protocol run's name (default recipe-pranet-full), for a
#   second budget beside the first
#   RECIPE_PRANET=0 ...: only the cross-dataset ablation (benchmarks/results/polyp_recipe_ablation.{json,md},
#   written by benchmarks/recipe_results.py), not the full recipe on the PraNet protocol
#
# Restartable: run the same command again (--resume says so explicitly; it is the default):
# finished runs (runs/NAME.done) are skipped, interrupted ones continue with `medattn train --resume`.
for arg in "$@"; do
    case $arg in
        --resume) ;;
        *) echo "usage: scripts/run_experiments.sh polyp-recipe [--resume]" >&2; exit 2 ;;
    esac
done
# shellcheck source=scripts/tables/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

# Issue 14: the generalisation recipe, ablated on cross-dataset proxies for unseen data (train on
# Kvasir-SEG only and judge on all of CVC-ClinicDB, and the reverse): the base (flip + rotate90, as
# bundled), the full recipe, and the full recipe without each element (leave-one-out); then the full
# recipe on the PraNet protocol, evaluated per test set (with and without test-time flips) and by
# polyp size. Each arm is `--set` overrides of configs/polyp_recipe_{kvasir,clinicdb}.yaml.
RECIPE_EPOCHS=${RECIPE_EPOCHS:-10}
RECIPE_SIZE=${RECIPE_SIZE:-352}
RECIPE=(--set train.epochs="$RECIPE_EPOCHS" --set data.input_size="$RECIPE_SIZE")
# RECIPE_PROGRESSIVE: the progressive-resizing stages of the recipe arms (default the configs':
# 2 epochs at 128 px, 2 at 224, then RECIPE_SIZE); a smaller RECIPE_SIZE wants smaller stages
[ -n "${RECIPE_PROGRESSIVE:-}" ] && RECIPE+=(--set "train.progressive=$RECIPE_PROGRESSIVE")
declare -A ARM=(
    [base]="data.augment=[flip, rotate90];train.multi_scale=null;train.progressive=[];train.ema=null"
    [full]=""
    [no-multiscale]="train.multi_scale=null"
    [no-geometric]="data.augment=[flip, {name: color_jitter, brightness: 0.3, contrast: 0.3, saturation: 0.2, hue: 0.03, prob: 0.8}, {name: gamma, range: [0.7, 1.5], prob: 0.3}, {name: blur, sigma: [0.25, 1.5], prob: 0.2}, {name: jpeg, quality: [30, 90], prob: 0.3}, {name: specular, count: [1, 4], radius: [0.01, 0.04], prob: 0.3}]"
    [no-photometric]="data.augment=[flip, {name: rotate, range: 30, prob: 0.5}, {name: random_resized_crop, scale: [0.6, 1.0], prob: 0.5}]"
    [no-progressive]="train.progressive=[]"
    [no-ema]="train.ema=null"
)
RECIPE_ARMS=${RECIPE_ARMS:-"base full no-multiscale no-geometric no-photometric no-progressive no-ema"}

# evaluate NAME RUN DATA [--tta]: toolbox metrics of RUN on every image of DATA -> runs/NAME.json
evaluate() {
    local name=$1 run=$2 data=$3; shift 3
    [ -e "$run/best.safetensors" ] && [ -e "runs/${run#runs/}.done" ] || return 0  # finished runs only
    step "$name" bash -c "$MEDATTN evaluate --model $run --data $data --format json $* > runs/$name.json.tmp \
        && mv runs/$name.json.tmp runs/$name.json"
}

for arm in $RECIPE_ARMS; do
    arm_sets "${ARM[$arm]}"
    train "recipe-k2c-$arm" configs/polyp_recipe_kvasir.yaml "${RECIPE[@]}" "${SETS[@]}"
    evaluate "recipe-k2c-$arm-eval" "runs/recipe-k2c-$arm" ../shared/data/cvc-clinicdb
    train "recipe-c2k-$arm" configs/polyp_recipe_clinicdb.yaml "${RECIPE[@]}" "${SETS[@]}"
    evaluate "recipe-c2k-$arm-eval" "runs/recipe-c2k-$arm" ../shared/data/kvasir-seg
done
evaluate recipe-k2c-full-tta-eval runs/recipe-k2c-full ../shared/data/cvc-clinicdb --tta
evaluate recipe-c2k-full-tta-eval runs/recipe-c2k-full ../shared/data/kvasir-seg --tta
log "table: $RESULTS/polyp_recipe_ablation.{json,md}"
$NICE $PY benchmarks/recipe_results.py --runs runs --out "$RESULTS" >> runs/recipe-results.log 2>&1 \
    || log "FAILED recipe table, see runs/recipe-results.log"
[ "${RECIPE_PRANET:-1}" = 1 ] || { log "polyp-recipe finished (RECIPE_PRANET=0: no PraNet-protocol run)"; exit 0; }
RUN=${RECIPE_RUN:-recipe-pranet-full}
train "$RUN" configs/polyp_recipe.yaml "${RECIPE[@]}"
step "$RUN-eval" $PY benchmarks/polyp_results.py "BSANet recipe=runs/$RUN" --out benchmarks/results/polyp_recipe
step "$RUN-small" $PY benchmarks/small_lesions.py --model "runs/$RUN" --sizes "$RECIPE_SIZE" \
    --out benchmarks/results/small_lesions_recipe
log "polyp-recipe finished"

#!/usr/bin/env bash
# Table: the generalisation recipe for the skin model (issue 14), on the cross-dataset proxy of
# configs/skin_recipe.yaml: trained on ISIC 2017 only, judged on the 150 ISIC 2017 validation pairs and on
# all 100 PH2 images (unseen clinic and camera). Arms (--set overrides of the config):
#   base  the shipped hlfnet-skin recipe: flips + zoom, no multi-scale, no EMA, no test-time flips
#   full  the config: + any-angle rotations, resized crops, photometric augmentation, multi-scale, EMA, TTA
#   mnv2  the full recipe, HFE decoder on the ImageNet MobileNetV2 encoder
#
#   scripts/run_experiments.sh skin-recipe               (restartable; finished runs are skipped)
#   SKIN_ARMS="full mnv2" SKIN_EPOCHS=10 SKIN_SIZE='[128,160]' scripts/run_experiments.sh skin-recipe
#   SMOKE=1 OMP_NUM_THREADS=1 scripts/run_experiments.sh skin-recipe     (1 epoch, 64 x 64, 12 images: a check)
# Results: benchmarks/results/skin_recipe/polyp_results.{json,md} (benchmarks/polyp_results.py: the
# toolbox metrics per test part, each run at its own inference settings; arms the earlier table scored whose
# runs are not on this disk are kept, so SKIN_ARMS=base adds the base arm on a fresh machine).
# shellcheck source=scripts/tables/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

SKIN_EPOCHS=${SKIN_EPOCHS:-10}
SKIN_SIZE=${SKIN_SIZE:-'[128,160]'}
SKIN_ARMS=${SKIN_ARMS:-"base full mnv2"}
SKIN_PREFIX=${SKIN_PREFIX:-skin-recipe-}
BUDGET=()
if [ "$SMOKE" = 1 ]; then  # end-to-end check: 1 epoch at 64 x 64 on 12 images per part
    SKIN_EPOCHS=1; SKIN_SIZE='[64,64]'; SKIN_PREFIX=${P}skin-recipe-
    rm -rf runs/${SKIN_PREFIX}* "$RESULTS/skin_recipe"
    BUDGET=(--set data.limit=12 --set data.cache=false)
fi
BUDGET+=(--set train.epochs="$SKIN_EPOCHS" --set "data.input_size=$SKIN_SIZE")
OVERLAYS=docs/img/results/skin_recipe_overlays.png
[ "$SMOKE" = 1 ] && OVERLAYS=$RESULTS/skin_recipe/overlays.png
MNV2=../shared/data/pretrained/mobilenet_v2_imagenet.pth
declare -A ARM=(
    [base]="data.augment=[flip, {name: zoom, min: 1.0, max: 1.2}];train.multi_scale=null;train.ema=null;inference.tta=false"
    [full]=""
    [mnv2]="model.options={encoder: mobilenet_v2, pretrained_encoder: $MNV2, encoder_options: {normalize: imagenet}}"
)
for arm in $SKIN_ARMS; do
    [ -n "${ARM[$arm]+x}" ] || { log "unknown arm $arm (base, full, mnv2)"; exit 2; }
    arm_sets "${ARM[$arm]}"
    train "$SKIN_PREFIX$arm" configs/skin_recipe.yaml "${BUDGET[@]}" "${SETS[@]}"
done
labels=()
for arm in base full mnv2; do  # the table holds every finished arm, whichever SKIN_ARMS trained
    [ -e "runs/$SKIN_PREFIX$arm.done" ] && labels+=("$arm=runs/$SKIN_PREFIX$arm")
done
[ ${#labels[@]} -gt 0 ] || exit 0
EXTRA=()  # arms the table scored on another machine stay in it; the overlays need every arm's weights here
[ -f "$RESULTS/skin_recipe/polyp_results.json" ] && EXTRA+=(--prior "$RESULTS/skin_recipe/polyp_results.json")
[ ${#labels[@]} -eq ${#ARM[@]} ] && EXTRA+=(--overlays "$OVERLAYS")
log "table: $RESULTS/skin_recipe/polyp_results.{json,md}"
$NICE $PY benchmarks/polyp_results.py "${labels[@]}" --out "$RESULTS/skin_recipe" \
    "${EXTRA[@]}" >> "runs/${SKIN_PREFIX}results.log" 2>&1 \
    || log "FAILED skin-recipe table, see runs/${SKIN_PREFIX}results.log"
log "skin-recipe finished"

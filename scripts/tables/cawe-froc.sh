# CAWE (paper 002) Table 1 on polyp data: RetinaNet Sens@1..4 FP/image per input arm (gray, +Color,
# +CAWE, +Color+CAWE, colour originals, and CLAHE / unsharp masking / histogram equalisation as
# stand-ins for the paper's AFDA and MedGA), three detector seeds, mean and spread.
#
#   scripts/run_experiments.sh cawe-froc                      # full budget (a GPU, or a long CPU queue)
#   COLORIZER_MINUTES=30 CAWE_MINUTES=15 FROC_SIZE=128 FROC_EPOCHS=4 FROC_TRAIN_LIMIT=300 \
#       scripts/run_experiments.sh cawe-froc                  # the CPU budget of docs/results.md
#   SMOKE=1 OMP_NUM_THREADS=1 scripts/run_experiments.sh cawe-froc                         # end-to-end check
#
# 1. the colorization GAN on all our colour training images (isic2017-unlabeled, 2000 dermoscopy
#    images, + the PraNet training split, 1450 Kvasir-SEG / CVC-ClinicDB images; never the test
#    images), with its L1 / feature / adversarial curves;
# 2. the CAWE lesion classifier (ImageNet MobileNetV2) on crops of the SAME training images
#    (PraNet train + 80 % of PH2: the paper trains it on another data set, which we do not have);
# 3. the detector FROC with both, every arm at the same budget, seeds 0, 1, 2.
# Writes $RESULTS/cawe_froc.{json,md,png}, $RESULTS/cawe_froc_colorizer/ and $RESULTS/cawe_froc_classifier/.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

MNV2=../shared/data/pretrained/mobilenet_v2_imagenet.pth
COLORIZER=runs/${P}cawe-froc-colorizer
CLASSIFIER=runs/${P}cawe-froc-classifier
COL=(--limit 0 --size "${COLORIZER_SIZE:-64}" --minutes "${COLORIZER_MINUTES:-120}")
CLS=(--limit 0 --epochs "${CAWE_EPOCHS:-12}" --minutes "${CAWE_MINUTES:-60}")
FROC=(--size "${FROC_SIZE:-256}" --epochs "${FROC_EPOCHS:-12}" --seeds "${FROC_SEEDS:-0,1,2}"
      --train-limit "${FROC_TRAIN_LIMIT:-0}")
if [ "$SMOKE" = 1 ]; then
    COL=(--limit 16 --size 32 --steps 2 --batch 2)
    CLS=(--limit 8 --epochs 1 --minutes 0.5 --crop 32)
    FROC=(--size 64 --epochs 1 --train-limit 8 --test-limit 4 --seeds 0,1)
fi
mkdir -p "$RESULTS/cawe_froc_colorizer" "$RESULTS/cawe_froc_classifier"
step "${P}cawe-froc-colorizer" $PY -u benchmarks/enhance_colorize.py "${COL[@]}" --run "$COLORIZER" \
    --out "$RESULTS/cawe_froc_colorizer" --img "$RESULTS/cawe_froc_colorizer" \
    --curves "$RESULTS/cawe_froc_colorizer/curves.png" || exit 1
step "${P}cawe-froc-classifier" $PY -u benchmarks/enhance_cawe.py --backbone mobilenet_v2 --pretrained "$MNV2" \
    --lr 3e-4 "${CLS[@]}" --run "$CLASSIFIER" --out "$RESULTS/cawe_froc_classifier" || exit 1
log "table: $RESULTS/cawe_froc.{json,md}"
$NICE $PY -u benchmarks/enhance_froc.py "${FROC[@]}" --classifier "$CLASSIFIER" --colorizer "$COLORIZER" \
    --tag cawe_froc --out "$RESULTS" --plot "$RESULTS"

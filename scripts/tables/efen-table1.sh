# EFEN (paper 001) Table 1 rows + the U-Net / EFEN rows of Table 2, and the same three ablation rows
# on the ImageNet MobileNetV2 (transfer learning; an encoder that learns in a short budget), on CVC-ClinicDB with the committed 8:1:1 split
# (configs/splits/cvc_clinicdb_811_seed0.json) and configs/efen_table1/*.yaml:
#
#   scripts/run_experiments.sh efen-table1            # the paper's budget: 300 epochs at 288 x 384 (a GPU)
#   EFEN_EPOCHS=40 EFEN_SIZE=[144,192] scripts/run_experiments.sh efen-table1    # a reduced budget
#   EFEN_EPOCHS=12 EFEN_SIZE=[96,128] EFEN_OPTIM=adam EFEN_LR=1e-3 EFEN_SCHEDULE=cosine \
#       EFEN_ENCODER=vgg19_bn scripts/run_experiments.sh efen-table1   # the CPU budget of docs/results.md
#   EFEN_ROWS="unet_mobilenet_v2 reextract_mobilenet_v2 efen_mobilenet_v2" EFEN_TAG=efen_table1_mobilenet_v2 \
#       scripts/run_experiments.sh efen-table1     # only these rows, into their own results files
#   SMOKE=1 OMP_NUM_THREADS=1 scripts/run_experiments.sh efen-table1             # end-to-end check (minutes)
#
# One budget for every row (the env vars change all rows alike). The paper's SGD at lr 1e-4 with a
# plateau schedule is made for 300 epochs; a short budget needs a faster optimiser (EFEN_OPTIM,
# EFEN_LR, EFEN_SCHEDULE: every row alike). EFEN_ENCODER=vgg19_bn gives the three VGG-19 rows batch
# norm: from scratch (no ImageNet VGG-19 here) the plain VGG-19 does not learn in a short budget
# (validation Dice fell to 0.005 after 4 epochs, train loss barely below the all-background level).
# Writes
# $RESULTS/efen_table1.{json,md} (benchmarks/results/ unless SMOKE=1).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

BUDGET=(--set train.epochs="${EFEN_EPOCHS:-300}" --set "data.input_size=${EFEN_SIZE:-[288,384]}"
        --set train.batch_size="${EFEN_BATCH:-8}" --set optim.name="${EFEN_OPTIM:-sgd}"
        --set optim.lr="${EFEN_LR:-1.0e-4}")
[ "${EFEN_SCHEDULE:-plateau}" = plateau ] || BUDGET+=(--set schedule="{name: ${EFEN_SCHEDULE}, warmup_epochs: 0.5}")
if [ "$SMOKE" = 1 ]; then
    BUDGET=(--set train.epochs=1 --set data.input_size=32 --set train.batch_size=2 --set data.limit=4
            --set train.max_steps_per_epoch=2 --set train.curves=false)
fi
ROWS=(unet reextract efen unet_mobilenet_v2 reextract_mobilenet_v2 efen_mobilenet_v2)
LABELS=("U-Net (baseline)" "U-Net + Process1" "EFEN" "U-Net (MobileNetV2, ImageNet)"
        "U-Net + Process1 (MobileNetV2, ImageNet)" "EFEN (MobileNetV2, ImageNet)")
# EFEN_ROWS: train and tabulate only these rows (default all), into $RESULTS/$EFEN_TAG.{json,md}
WANT=" ${EFEN_ROWS:-${ROWS[*]}} "
TAG=${EFEN_TAG:-efen_table1}
SPECS=()
for i in "${!ROWS[@]}"; do
    [[ "$WANT" == *" ${ROWS[$i]} "* ]] || continue
    name="${P}efen-table1-${ROWS[$i]}"
    ENC=()
    [[ "${ROWS[$i]}" != *_mobilenet_v2 ]] && [ "${EFEN_ENCODER:-vgg19}" != vgg19 ] \
        && ENC=(--set "model.options={encoder: $EFEN_ENCODER}")
    train "$name" "configs/efen_table1/${ROWS[$i]}.yaml" "${BUDGET[@]}" "${FAST[@]}" "${ENC[@]}" || exit 1
    SPECS+=("${LABELS[$i]}=runs/$name")
done
SPEED=256; [ "$SMOKE" = 1 ] && SPEED=32
log "table: $RESULTS/$TAG.{json,md}"
LIMIT=0; [ "$SMOKE" = 1 ] && LIMIT=4
$NICE $PY benchmarks/paper_tables.py efen-table1 "${SPECS[@]}" --out "$RESULTS" --speed-size "$SPEED" --test-limit "$LIMIT" \
    --tag "$TAG"

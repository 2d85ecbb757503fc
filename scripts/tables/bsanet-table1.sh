# BSANet (paper 000) Table 1 style on the PraNet protocol: U-Net, UNet++, Attention U-Net, PraNet
# and EFEN (both on the ImageNet MobileNetV2 encoder BSANet uses), HLF-Net, GRCSF, BSANet, and
# BSANet without ISAM / FSAM / ARM; configs/bsanet_table1/*.yaml, one budget for all:
#
#   scripts/run_experiments.sh bsanet-table1                       # 30 epochs at 256 x 256 (a GPU)
#   BSANET_EPOCHS=10 BSANET_SIZE=128 scripts/run_experiments.sh bsanet-table1   # the CPU budget of docs/results.md
#   SMOKE=1 OMP_NUM_THREADS=1 scripts/run_experiments.sh bsanet-table1          # end-to-end check (minutes)
#
# Writes $RESULTS/bsanet_table1.{json,md}: the six PraNet-toolbox metrics on Kvasir-100 and
# ClinicDB-62, parameters, GMACs, CPU images/s.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

BUDGET=(--set train.epochs="${BSANET_EPOCHS:-30}" --set "data.input_size=${BSANET_SIZE:-256}"
        --set train.batch_size="${BSANET_BATCH:-16}")
if [ "$SMOKE" = 1 ]; then
    BUDGET=(--set train.epochs=1 --set data.input_size=32 --set train.batch_size=2 --set data.limit=4
            --set train.max_steps_per_epoch=2 --set train.curves=false)
fi
ROWS=(unet unetpp attention_unet pranet efen hlfnet grcsf bsanet bsanet_no_isam bsanet_no_fsam bsanet_no_arm)
LABELS=("U-Net" "UNet++" "Attention U-Net" "PraNet (MobileNetV2)" "EFEN (MobileNetV2)" "HLF-Net" "GRCSF"
        "BSANet" "BSANet w/o ISAM" "BSANet w/o FSAM" "BSANet w/o ARM")
SPECS=()
for i in "${!ROWS[@]}"; do
    name="${P}bsanet-table1-${ROWS[$i]}"
    train "$name" "configs/bsanet_table1/${ROWS[$i]}.yaml" "${BUDGET[@]}" "${FAST[@]}" || exit 1
    SPECS+=("${LABELS[$i]}=runs/$name")
done
SPEED=256; [ "$SMOKE" = 1 ] && SPEED=32
log "table: $RESULTS/bsanet_table1.{json,md}"
LIMIT=0; [ "$SMOKE" = 1 ] && LIMIT=4
$NICE $PY benchmarks/paper_tables.py bsanet-table1 "${SPECS[@]}" --out "$RESULTS" --speed-size "$SPEED" --test-limit "$LIMIT"

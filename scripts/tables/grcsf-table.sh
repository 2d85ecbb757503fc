#!/usr/bin/env bash
# GRCSF (paper 003) on ISIC 2017 and PH2 5-fold beside HLF-Net and U-Net, one budget for every row
# (scripts/tables/_lesion.sh; the HLF-Net row is the one of hlfnet-table1.sh, trained once):
# GRCSF with its MAE pretrained on the 2000 unlabeled ISIC 2017 training images (the same images
# as the ISIC training pairs, none of the 150 test images, no PH2 image), with a random frozen MAE
# of the same architecture, and without the RCU (GCU only). The MAE regresses plain pixels
# (norm_pix_loss false: docs/pretraining.md, "Does the MAE residual map highlight lesions?") at
# the table's input size; MAE_EPOCHS (default 20) sets its length.
# Results: benchmarks/results/grcsf_table_{isic2017,ph2}.{json,md}
#   scripts/run_experiments.sh grcsf-table              (restartable; SMOKE=1 for a 1-epoch check)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_lesion.sh"

MAE_RUN="runs/${RUNS}grcsf-mae"
if [ "$SMOKE" = 1 ]; then MAE_BUDGET=(--set epochs=1 --set data.max_images=16 --set batch_size=8)
else MAE_BUDGET=(--set epochs="${MAE_EPOCHS:-20}"); fi
step "${RUNS}grcsf-mae" $MEDATTN pretrain configs/pretrain_mae_isic.yaml --out "$MAE_RUN" --quiet \
    --set "input_size=$LESION_SIZE" --set norm_pix_loss=false --set warmup_epochs=1 --set lr=1.0e-3 \
    --set data.cache=true "${MAE_BUDGET[@]}"

row unet --set model.name=unet
row hlfnet --set model.name=hlfnet
[ -e "$MAE_RUN/mae.safetensors" ] && row grcsf_mae \
    --set model.name=grcsf --set "model.options={mae: $MAE_RUN/mae.safetensors}"
row grcsf_random_mae --set model.name=grcsf --set 'model.options={mae: null, mae_options: {norm_pix_loss: false}}'
row grcsf_gcu --set model.name=grcsf --set 'model.options={use_rcu: false}'
results grcsf_table "U-Net (MONAI)=unet" "HLF-Net=hlfnet" "GRCSF, pretrained MAE=grcsf_mae" \
    "GRCSF, random MAE=grcsf_random_mae" "GRCSF, GCU only (no RCU)=grcsf_gcu"
log "grcsf-table finished"

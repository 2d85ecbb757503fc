#!/usr/bin/env bash
# GRCSF's premise (issue 16, item 3): does the MAE residual map single out lesions, and does
# pretraining help? Two CPU-sized MAEs pretrained on the 2000 isic2017-unlabeled images at 128x128
# (patch 16, mask ratio 0.75), one with the MAE paper's per-patch normalised target (norm_pix_loss),
# one regressing plain pixels, weights kept after several epochs; then residual-map AUROC for PH2
# lesion pixels against pretraining length, target, de-normalisation, mask ratio and input scale,
# with residual maps as a picture (benchmarks/grcsf_residual_auroc.py; docs/pretraining.md).
#   scripts/run_experiments.sh grcsf-premise     (restartable; ~25 CPU-minutes on one thread)
# PREMISE_EPOCHS (default 6 / 12) sets the two pretraining lengths.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
E_NORM=${PREMISE_EPOCHS_NORMPIX:-6}
E_PIX=${PREMISE_EPOCHS_PIXEL:-12}
M=runs/premise
MAE=(configs/pretrain_mae_isic.yaml --quiet --set 'input_size=[128,128]' --set warmup_epochs=1
     --set lr=1.0e-3 --set data.cache=true --set mask_ratio=0.75)
step premise-mae-normpix $MEDATTN pretrain "${MAE[@]}" --out "$M/mae-normpix" --set norm_pix_loss=true \
    --set epochs="$E_NORM" --set 'snapshot_epochs=[2]'
step premise-mae-pixel $MEDATTN pretrain "${MAE[@]}" --out "$M/mae-pixel" --set norm_pix_loss=false \
    --set epochs="$E_PIX" --set "snapshot_epochs=[2, $((E_PIX / 2))]"
step premise-auroc $PY -u benchmarks/grcsf_residual_auroc.py \
    --mae "norm-pix target, 2 epochs=$M/mae-normpix/mae_epoch2.safetensors" \
    --mae "norm-pix target, $E_NORM epochs=$M/mae-normpix/mae.safetensors" \
    --mae "pixel target, 2 epochs=$M/mae-pixel/mae_epoch2.safetensors" \
    --mae "pixel target, $((E_PIX / 2)) epochs=$M/mae-pixel/mae_epoch$((E_PIX / 2)).safetensors" \
    --mae "pixel target, $E_PIX epochs=$M/mae-pixel/mae.safetensors" \
    --sizes 128,64,192 --mask-ratios 0.75,0.5 --stats context,patch \
    --pictures docs/img/results/grcsf_residual_maps.png --tag grcsf_residual_auroc

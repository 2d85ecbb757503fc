#!/usr/bin/env bash
# Issue 8 experiment queue: the training runs behind docs/results.md, one at a time.
#
#   nohup setsid scripts/run_experiments.sh > runs/queue.log 2>&1 < /dev/null &
#
# Every run logs to runs/<name>.log and is marked finished by runs/<name>.done, so the
# script can be started again at any time: finished runs are skipped, an interrupted
# `medattn train` run continues with --resume from its last checkpoint. Before each step it
# waits while another BSANet polyp training (runs/bsanet-polyp) runs, so that no two
# trainings share the CPU. Budgets are chosen for a shared 2-core CPU without GPU (see
# docs/results.md); extend a finished polyp run with
#   medattn train --resume runs/polyp-bsanet --set train.epochs=N   (and the same for the baselines).
# `ONLY="polyp-unet ph2-*"` (shell patterns) restricts the queue to matching runs.
#
# Named tables: `scripts/run_experiments.sh TABLE` runs scripts/tables/TABLE.sh instead (one paper
# table each, restartable the same way; `scripts/run_experiments.sh list` names them).
set -u
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then
    if [ "$1" = list ]; then
        for f in scripts/tables/[!_]*.sh; do [ -e "$f" ] && basename "$f" .sh; done
        exit 0
    fi
    [ -f "scripts/tables/$1.sh" ] || { echo "error: no table '$1' (scripts/run_experiments.sh list)" >&2; exit 2; }
    exec bash "scripts/tables/$1.sh" "${@:2}"
fi

# shared with the table scripts: log, step NAME CMD..., train NAME CONFIG ARGS... (restartable)
source scripts/tables/_common.sh
# FAST (the fast engine path) comes from _common.sh; runs started before issue 14 used its first three

# One polyp budget for BSANet and every baseline (PraNet protocol: 1305 train + 145 val images).
POLYP_EPOCHS=${POLYP_EPOCHS:-3}
POLYP=(--set data.input_size=128 --set train.epochs="$POLYP_EPOCHS" --set train.batch_size=16
       --set 'data.augment=[flip, rotate90]' --set schedule.name=cosine --set schedule.warmup_epochs=0.5)

# PH2 budget (both arms identical; only the encoder's starting weights differ)
PH2_FOLDS=${PH2_FOLDS:-"0 1 2 3 4"}
PH2=(--set 'data.input_size=[96,128]' --set train.epochs=15 --set optim.lr=5.0e-4
     --set schedule.name=cosine --set schedule.warmup_epochs=1)
LFE_PRETRAINED="runs/pretrain-hlf-lfe/encoder.safetensors"

selected() {
    [ -z "${ONLY:-}" ] && return 0
    local pat
    for pat in $ONLY; do
        # shellcheck disable=SC2053
        [[ $1 == $pat ]] && return 0
    done
    return 1
}

# run only the ONLY runs, and never beside a BSANet polyp training (no two trainings share the CPU)
before_step() {
    selected "$1" || return 1
    while pgrep -f "medattn train .*runs/bsanet-polyp" > /dev/null; do sleep 30; done
}

# 1. polyps: BSANet (ImageNet MobileNetV2 encoder) and the U-Net (no pretraining), same budget,
#    then the evaluation on Kvasir-100 and ClinicDB-62. bf16 falls back to fp32 if it diverges.
BSANET_OPTS='model.options={encoder: mobilenet_v2, encoder_pretrained: ../shared/data/pretrained/mobilenet_v2_imagenet.pth, encoder_options: {normalize: imagenet}}'
train polyp-bsanet configs/bsanet_polyp.yaml --set "$BSANET_OPTS" "${POLYP[@]}" "${FAST[@]}" \
    || train polyp-bsanet-fp32 configs/bsanet_polyp.yaml --set "$BSANET_OPTS" "${POLYP[@]}" "${FAST[@]}" \
        --set train.precision=fp32
train polyp-unet configs/unet_polyp.yaml "${POLYP[@]}" "${FAST[@]}"
BSANET_RUN=runs/polyp-bsanet; [ -e runs/polyp-bsanet.done ] || BSANET_RUN=runs/polyp-bsanet-fp32
step eval-polyp $PY benchmarks/polyp_results.py "BSANet=$BSANET_RUN" U-Net=runs/polyp-unet \
    --overlays docs/img/results/polyp_overlays.png

# 2. PH2 (5-fold CV): HLF-Net from scratch vs its LFE encoder pretrained on isic2017-unlabeled
step pretrain-hlf-lfe $MEDATTN pretrain configs/pretrain_encoder_isic.yaml --out runs/pretrain-hlf-lfe --quiet \
    --set encoder=hlf_lfe --set patch_size=16 --set 'input_size=[96,128]' --set data.max_images=1024 \
    --set data.cache=true --set epochs=3 --set warmup_epochs=0.5 --set bf16=true
for fold in $PH2_FOLDS; do
    train "ph2-hlfnet-scratch-f$fold" configs/hlfnet_ph2.yaml --set data.split.fold="$fold" "${PH2[@]}" "${FAST[@]}"
    if [ -e "$LFE_PRETRAINED" ]; then
        train "ph2-hlfnet-pretrained-f$fold" configs/hlfnet_ph2.yaml --set data.split.fold="$fold" \
            --set "model.options={pretrained_encoder: $LFE_PRETRAINED}" "${PH2[@]}" "${FAST[@]}"
    fi
done
step eval-ph2 $PY benchmarks/ph2_results.py --force

# 3. if time remains: Attention U-Net on polyps, U-Net on PH2
train polyp-attention_unet configs/attention_unet_polyp.yaml "${POLYP[@]}" "${FAST[@]}"
for fold in $PH2_FOLDS; do
    train "ph2-unet-f$fold" configs/unet_ph2.yaml --set data.split.fold="$fold" "${PH2[@]}" "${FAST[@]}"
done
# 3b. transfer learning on polyps (the paper's central claim): the same BSANet on the MobileNetV2
#     encoder started from ImageNet (= polyp-bsanet above), from in-domain masked image modelling
#     on the training split's images only (test images stay unseen), and from scratch; same budget.
SCRATCH_OPTS='model.options={encoder: mobilenet_v2, encoder_options: {normalize: imagenet}}'
MIM_ENCODER=runs/pretrain-polyp-mnv2/encoder.safetensors
MIM_OPTS="model.options={encoder: mobilenet_v2, encoder_pretrained: $MIM_ENCODER, encoder_options: {normalize: imagenet}}"
train polyp-bsanet-scratch configs/bsanet_polyp.yaml --set "$SCRATCH_OPTS" "${POLYP[@]}" "${FAST[@]}"
step pretrain-polyp-mnv2 $MEDATTN pretrain configs/pretrain_encoder_isic.yaml --out runs/pretrain-polyp-mnv2 --quiet \
    --set encoder=mobilenet_v2 --set 'encoder_options={normalize: imagenet}' --set 'data.folders=[]' \
    --set "data.splits=[{file: $BSANET_RUN/split.json, subset: train}]" --set 'input_size=[128,128]' \
    --set data.cache=true --set epochs=${MIM_EPOCHS:-8} --set warmup_epochs=1 --set bf16=true
[ -e "$MIM_ENCODER" ] && train polyp-bsanet-mim configs/bsanet_polyp.yaml --set "$MIM_OPTS" "${POLYP[@]}" "${FAST[@]}"
step eval-polyp-transfer $PY benchmarks/polyp_results.py "ImageNet=$BSANET_RUN" "MIM (in-domain)=runs/polyp-bsanet-mim" \
    "scratch=runs/polyp-bsanet-scratch" --out benchmarks/results/polyp_transfer
# 4. a longer polyp budget, all three models again from scratch (fresh cosine over POLYP_LONG epochs)
POLYP_LONG=${POLYP_LONG:-10}
LONG=(--set data.input_size=128 --set train.epochs="$POLYP_LONG" --set train.batch_size=16
      --set 'data.augment=[flip, rotate90]' --set schedule.name=cosine --set schedule.warmup_epochs=0.5)
train "polyp$POLYP_LONG-bsanet" configs/bsanet_polyp.yaml --set "$BSANET_OPTS" "${LONG[@]}" "${FAST[@]}"
train "polyp$POLYP_LONG-unet" configs/unet_polyp.yaml "${LONG[@]}" "${FAST[@]}"
step eval-polyp-all $PY benchmarks/polyp_results.py "BSANet=$BSANET_RUN" U-Net=runs/polyp-unet \
    "Attention U-Net=runs/polyp-attention_unet" "BSANet ${POLYP_LONG} ep=runs/polyp$POLYP_LONG-bsanet" \
    "U-Net ${POLYP_LONG} ep=runs/polyp$POLYP_LONG-unet" --overlays docs/img/results/polyp_overlays_all.png
train "polyp$POLYP_LONG-attention_unet" configs/attention_unet_polyp.yaml "${LONG[@]}" "${FAST[@]}"
# 5. low-dose CT (issue 5): every denoiser gets the same number of 64x64 training patches on the
#    0.98 mm grid (configs/ldct_*.yaml); transfer = other anatomy first, then the target anatomy,
#    same total budget as from scratch. Then the held-out evaluation (BM3D merged from an earlier
#    run on the same slices when benchmarks/results/ldct_eval_bm3d.json exists).
LDCT_EPOCHS=${LDCT_EPOCHS:-4}
train ldct-cadn_small configs/ldct_cadn_small.yaml --set train.epochs="$LDCT_EPOCHS"
train ldct-redcnn48 configs/ldct_redcnn.yaml --set train.epochs="$LDCT_EPOCHS"
train ldct-cadn_small_pretrain configs/ldct_cadn_pretrain.yaml --set train.epochs=$((LDCT_EPOCHS / 2))
train ldct-cadn_small_finetune configs/ldct_cadn_finetune.yaml --set train.epochs=$((LDCT_EPOCHS - LDCT_EPOCHS / 2)) \
    --set model.init=runs/ldct-cadn_small_pretrain/best.safetensors
train ldct-dncnn configs/ldct_dncnn.yaml --set train.epochs="$LDCT_EPOCHS"
# 6. enhancement (issue 6): the detector FROC with every arm trained for the same number of epochs
#    (no time limit) and three seeds, with the bundled CAWE classifier and colorizer.
step enhance-froc-seeds $PY -u benchmarks/enhance_froc.py --quick --minutes 0 --seeds 0,1,2 \
    --classifier cawe-lesion --colorizer colorizer-lesion --tag enhance_froc_seeds
# 7. real low-dose CT (issue 13): denoisers blind to dose (1.5-50 %), kernel and grid (0.6-1 mm), trained
#    on projection-domain noise inserted into the sharp CT we have, calibrated on the real L506 pairs
#    (benchmarks/ldct_noise_calibration.py) and validated on them; each network until its validation
#    curve flattens (CADN 48 epochs, flat from ~40; RED-CNN and DnCNN cost 2-3x / 4x more per step on
#    the CPU: LDCT_BLIND_EPOCHS_REDCNN / _DNCNN), then the table on the real pairs (last epoch of each:
#    the real pairs are the validation curve, not the checkpoint choice). The earlier releases are rows
#    too: copy src/medattn/weights/cadn-ldct.* of v1 (git 7068fe0) and v2 (git c547102) to
#    runs/ldct13/cadn-ldct-v1.* / -v2.*.
LDCT_BLIND_EPOCHS=${LDCT_BLIND_EPOCHS:-48}
train ldct-blind-cadn configs/ldct_cadn_blind.yaml --set model.name=cadn --set train.epochs="$LDCT_BLIND_EPOCHS"
# RED-CNN at its paper's learning rate (1e-4; at 1e-3 it stayed below the input for 4 epochs)
train ldct-blind-redcnn48 configs/ldct_cadn_blind.yaml --set model.name=redcnn --set 'model.options={channels: 48}' \
    --set optim.lr=1.0e-4 --set train.epochs="${LDCT_BLIND_EPOCHS_REDCNN:-32}"
train ldct-blind-dncnn configs/ldct_cadn_blind.yaml --set model.name=dncnn \
    --set train.epochs="${LDCT_BLIND_EPOCHS_DNCNN:-12}"
REAL=../shared/data/ct/mayo-l506-real
step eval-ldct-real $PY benchmarks/ldct_eval.py --real "$REAL" --out benchmarks/results/ldct_real \
    --panels docs/img/ldct_real_crops.png --crop 140,90,160 --panel-slice 3 --threads "$OMP_NUM_THREADS" \
    --no-bm3d --merge benchmarks/results/ldct_real_bm3d.json --merge benchmarks/results/ldct_real_bm3d_oracle.json \
    --curves docs/img/ldct_curves.png \
    --run "cadn-ldct v1 (25 % dose, 0.98 mm), K 0.25=runs/ldct13/cadn-ldct-v1.safetensors@0.25" \
    --run "cadn-ldct v2 (CADN blind, 16 ep), K 0.25=runs/ldct13/cadn-ldct-v2.safetensors@0.25,notta" \
    --run "CADN blind 48 ep, K 0=runs/ldct-blind-cadn/last.safetensors@0" \
    --run "CADN blind 48 ep, K 0.25=runs/ldct-blind-cadn/last.safetensors@0.25" \
    --run "CADN blind 48 ep, K 0.25, self-ensemble=runs/ldct-blind-cadn/last.safetensors@0.25,tta" \
    --run "RED-CNN (48) blind 32 ep, K 0=runs/ldct-blind-redcnn48/last.safetensors@0" \
    --run "RED-CNN (48) blind 32 ep, K 0.25=runs/ldct-blind-redcnn48/last.safetensors@0.25" \
    --run "DnCNN blind 12 ep, K 0=runs/ldct-blind-dncnn/last.safetensors@0" \
    --run "DnCNN blind 12 ep, K 0.25=runs/ldct-blind-dncnn/last.safetensors@0.25"
log "queue finished"

#!/usr/bin/env bash
# Issue 8 experiment queue: the training runs behind docs/results.md, one at a time.
#
#   nohup scripts/run_experiments.sh > runs/queue.log 2>&1 &
#
# Every run logs to runs/<name>.log and is marked finished by runs/<name>.done, so the
# script can be started again at any time: finished runs are skipped, an interrupted
# `medattn train` run continues with --resume from its last checkpoint. It first waits for
# the BSANet polyp run (started separately, see docs/results.md) so that no two trainings
# share the CPU. Budgets are chosen for a 2-core CPU without GPU; see docs/results.md.
# `ONLY="unet-polyp ph2-*"` (shell patterns) restricts the queue to matching runs.
set -u
cd "$(dirname "$0")/.."

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
MEDATTN=".venv/bin/medattn"
PY=".venv/bin/python"
NICE="nice -n 5"
FAST=(--set train.precision=bf16 --set train.deterministic=false --set data.cache=true)

# The polyp budget of the BSANet run (runs/bsanet-polyp/config.yaml): every polyp baseline gets the same.
POLYP=(--set data.input_size=192 --set train.epochs=12 --set train.batch_size=16
       --set 'data.augment=[flip, rotate90]' --set schedule.name=cosine --set schedule.warmup_epochs=0.5)

# PH2 budget (both arms identical; only the encoder's starting weights differ)
PH2_FOLDS=${PH2_FOLDS:-"0 1 2 3 4"}
PH2=(--set 'data.input_size=[128,176]' --set train.epochs=20 --set optim.lr=5.0e-4
     --set schedule.name=cosine --set schedule.warmup_epochs=1)
LFE_PRETRAINED="runs/pretrain-hlf-lfe/encoder.safetensors"

log() { echo "[$(date -u +%H:%M:%S)] $*"; }

selected() {
    [ -z "${ONLY:-}" ] && return 0
    local pat
    for pat in $ONLY; do
        # shellcheck disable=SC2053
        [[ $1 == $pat ]] && return 0
    done
    return 1
}

# step NAME CMD...: run CMD once (skipped when runs/NAME.done exists), output to runs/NAME.log
step() {
    local name=$1; shift
    selected "$name" || return 0
    if [ -e "runs/$name.done" ]; then log "skip $name (done)"; return 0; fi
    log "start $name: $*"
    local t0=$SECONDS
    if $NICE "$@" >> "runs/$name.log" 2>&1; then
        date -u +%FT%TZ > "runs/$name.done"
        log "done $name in $((SECONDS - t0)) s"
    else
        log "FAILED $name (exit $?), see runs/$name.log"
    fi
}

# train NAME CONFIG ARGS...: `medattn train`, resuming an interrupted run folder
train() {
    local name=$1 config=$2; shift 2
    if [ -e "runs/$name/state.pt" ] && [ ! -e "runs/$name.done" ]; then
        step "$name" $MEDATTN train --resume "runs/$name" --no-progress
    else
        step "$name" $MEDATTN train "$config" --out "runs/$name" --no-progress "$@"
    fi
}

mkdir -p runs
log "waiting for the BSANet polyp run"
while pgrep -f "medattn train .*runs/bsanet-polyp" > /dev/null; do sleep 30; done

# 1. polyp baselines with BSANet's budget, and the polyp evaluation (Kvasir-100, ClinicDB-62)
train unet-polyp configs/unet_polyp.yaml "${POLYP[@]}" "${FAST[@]}"
step eval-polyp $PY benchmarks/polyp_results.py BSANet=runs/bsanet-polyp U-Net=runs/unet-polyp \
    --overlays docs/img/results/polyp_overlays.png

# 2. PH2 (5-fold CV): HLF-Net from scratch vs its LFE encoder pretrained on isic2017-unlabeled
step pretrain-hlf-lfe $MEDATTN pretrain configs/pretrain_encoder_isic.yaml --out runs/pretrain-hlf-lfe --quiet \
    --set encoder=hlf_lfe --set patch_size=16 --set 'input_size=[128,176]' --set data.max_images=1024 \
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
train attention_unet-polyp configs/attention_unet_polyp.yaml "${POLYP[@]}" "${FAST[@]}"
for fold in $PH2_FOLDS; do
    train "ph2-unet-f$fold" configs/unet_ph2.yaml --set data.split.fold="$fold" "${PH2[@]}" "${FAST[@]}"
done
log "queue finished"

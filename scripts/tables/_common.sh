# Shared by scripts/tables/*.sh (sourced): the step/train helpers of scripts/run_experiments.sh.
# A table script sources this, then calls `train NAME CONFIG ARGS...` and `step NAME CMD...`:
# finished runs (runs/NAME.done) are skipped, an interrupted `medattn train` run resumes.
# MEDATTN / PY name other executables (default: the project's .venv). SMOKE=1 is a table script's
# end-to-end check: `$P` prefixes its run names with "smoke-" and RESULTS (where the table's JSON +
# Markdown go, default benchmarks/results) becomes runs/smoke-results.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export PYTHONPATH=${PYTHONPATH:-src}  # this checkout's medattn, whichever one the venv installed
MEDATTN=${MEDATTN:-.venv/bin/medattn}
PY=${PY:-.venv/bin/python}
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then P=smoke-; RESULTS=${RESULTS:-runs/smoke-results}; else P=; RESULTS=${RESULTS:-benchmarks/results}; fi
mkdir -p "$RESULTS"
# the fast engine path (docs/training.md#speed-cpu): bf16 autocast, cached decoded images, channels-last
# where it pays, fused Adam
FAST=(--set train.precision=bf16 --set train.deterministic=false --set data.cache=true
      --set train.channels_last=auto --set optim.fused=true)
NICE="nice -n 5"
mkdir -p runs
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
# a caller may define before_step NAME: return non-zero to skip the step (run_experiments.sh's ONLY
# filter), or wait inside it (for another training to finish)
step() {
    local name=$1; shift
    if declare -F before_step > /dev/null && ! before_step "$name"; then return 0; fi
    if [ -e "runs/$name.done" ]; then log "skip $name (done)"; return 0; fi
    log "start $name: $*"
    local t0=$SECONDS
    if $NICE "$@" >> "runs/$name.log" 2>&1; then
        date -u +%FT%TZ > "runs/$name.done"
        log "done $name in $((SECONDS - t0)) s"
    else
        log "FAILED $name, see runs/$name.log"
        return 1
    fi
}
train() {
    local name=$1 config=$2; shift 2
    if [ -e "runs/$name/state.pt" ] && [ ! -e "runs/$name.done" ]; then
        step "$name" $MEDATTN train --resume "runs/$name" --no-progress
    else
        step "$name" $MEDATTN train "$config" --out "runs/$name" --no-progress "$@"
    fi
}
# arm_sets "KEY=VALUE;KEY=VALUE...": an ablation arm's config overrides as --set arguments, in SETS
arm_sets() {
    local item items
    SETS=()
    IFS=';' read -ra items <<< "$1"
    for item in "${items[@]}"; do SETS+=(--set "$item"); done
}

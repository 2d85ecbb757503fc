# Shared by the skin-lesion tables (hlfnet-table1.sh, grcsf-table.sh; sourced after _common.sh):
# one budget for every row of both tables, the two protocols, and the results script.
#
# ISIC 2017 (configs/lesion_isic2017.yaml): train on 1800 of the 2000 training pairs, choose the
# checkpoint (best) on the other 200, score the 150 official validation pairs (the test part;
# the official test masks are not available). PH2: 5-fold cross-validation on the committed folds
# configs/splits/ph2_5fold_fold{0..4}.json (= the seeded k-fold of the shipped HLF-Net results),
# the last epoch scored on the held-out fold. A row's run names are shared by both tables, so a
# row trained for one table is reused (skipped) by the other.
#
# Budget (env): LESION_EPOCHS (10 on ISIC, PH2_EPOCHS 15 on PH2), LESION_SIZE ([96,128]; the
# paper's is [192,256]), ISIC_SEEDS ("0"), PH2_FOLDS ("0 1 2 3 4"), LESION_DATA ("isic2017 ph2": which
# protocols to train and tabulate; "ph2" alone for the cheaper one), LESION_RUN_PREFIX (prefix of the run
# names, so a second budget does not reuse the first one's runs; RESULTS then sends its tables
# elsewhere), LESION_ROWS (train and tabulate only these rows, e.g. "unet28 hlfnet"). Adam 5e-4, cosine with a
# 1-epoch warm-up, Dice loss, batch 6, flips + zoom, bf16 autocast, cached images: the recipe of
# the shipped PH2 results (docs/results.md). SMOKE=1: 1 epoch at 64x64 on 6 images, one seed,
# PH2 folds 0 and 1, runs under runs/smoke/ and results in runs/smoke/results (wiped first).
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
    RUNS=smoke/
    rm -rf runs/smoke
    mkdir -p runs/smoke
    RESULTS=runs/smoke/results
    ISIC_EPOCHS=1; PH2_EPOCHS=1; LESION_SIZE='[64,64]'; ISIC_SEEDS=0; PH2_FOLDS="0 1"
    BUDGET=(--set data.limit=6 --set train.batch_size=3)
else
    RUNS=${LESION_RUN_PREFIX:-}  # e.g. "e10-": other run names for another budget (finished runs are reused)
    RESULTS=${RESULTS:-benchmarks/results}
    ISIC_EPOCHS=${LESION_EPOCHS:-10}; PH2_EPOCHS=${PH2_EPOCHS:-15}; LESION_SIZE=${LESION_SIZE:-'[96,128]'}
    ISIC_SEEDS=${ISIC_SEEDS:-0}; PH2_FOLDS=${PH2_FOLDS:-"0 1 2 3 4"}
    BUDGET=(--set train.batch_size=6)
fi
LESION_DATA=${LESION_DATA:-"isic2017 ph2"}
case " $LESION_DATA " in *" isic2017 "*) ;; *) ISIC_SEEDS="";; esac
case " $LESION_DATA " in *" ph2 "*) ;; *) PH2_FOLDS="";; esac
RECIPE=(--set "data.input_size=$LESION_SIZE" --set optim.lr=5.0e-4 --set schedule.name=cosine
        --set schedule.warmup_epochs=1 --set train.precision=bf16 --set train.deterministic=false
        --set data.cache=true "${BUDGET[@]}")

# row NAME ARGS...: train row NAME (model and options in ARGS) on ISIC 2017 (each seed) and on each
# PH2 fold; runs runs/<RUNS>isic-NAME-s<seed> and runs/<RUNS>ph2-NAME-f<fold>
row() {
    local name=$1; shift
    local seed fold
    wanted "$name" || return 0
    for seed in $ISIC_SEEDS; do
        train "${RUNS}isic-$name-s$seed" configs/lesion_isic2017.yaml --set train.epochs="$ISIC_EPOCHS" \
            --set train.seed="$seed" "${RECIPE[@]}" "$@"
    done
    for fold in $PH2_FOLDS; do
        train "${RUNS}ph2-$name-f$fold" configs/hlfnet_ph2.yaml --set data.split.kind=file \
            --set "data.split.file=configs/splits/ph2_5fold_fold$fold.json" --set train.epochs="$PH2_EPOCHS" \
            "${RECIPE[@]}" "$@"
    done
}

# wanted NAME: is row NAME in LESION_ROWS (all rows when it is empty)
wanted() { [ -z "${LESION_ROWS:-}" ] || [[ " $LESION_ROWS " == *" $1 "* ]]; }

# results TABLE "LABEL=NAME" ...: the two results files <RESULTS>/TABLE_{isic2017,ph2}.{json,md}
# (benchmarks/ph2_results.py; cached per run, recomputed when a run's weights are newer). The runs an
# earlier results file holds and this disk does not (another machine's seeds) are kept (--prior), so
# ISIC_SEEDS="1" adds a seed to a table whose seed 0 was trained elsewhere.
results() {
    local table=$1; shift
    local isic=() ph2=() spec
    for spec in "$@"; do
        wanted "${spec#*=}" || continue
        isic+=(--arm "${spec%%=*}=runs/${RUNS}isic-${spec#*=}-s*")
        ph2+=(--arm "${spec%%=*}=runs/${RUNS}ph2-${spec#*=}-f*")
    done
    [ -f "$RESULTS/${table}_isic2017.json" ] && isic+=(--prior "$RESULTS/${table}_isic2017.json")
    [ -f "$RESULTS/${table}_ph2.json" ] && ph2+=(--prior "$RESULTS/${table}_ph2.json")
    log "results $table -> $RESULTS/${table}_{$LESION_DATA}.md"
    [ -n "$ISIC_SEEDS" ] && { $NICE $PY benchmarks/ph2_results.py --part test --checkpoint best \
        --name "${table}_isic2017" --out "$RESULTS" "${isic[@]}" >> "runs/${RUNS}$table-results.log" 2>&1 \
        || log "FAILED ISIC results, see runs/${RUNS}$table-results.log"; }
    [ -n "$PH2_FOLDS" ] && { $NICE $PY benchmarks/ph2_results.py --part val --checkpoint last \
        --name "${table}_ph2" --out "$RESULTS" "${ph2[@]}" >> "runs/${RUNS}$table-results.log" 2>&1 \
        || log "FAILED PH2 results, see runs/${RUNS}$table-results.log"; }
    return 0
}

#!/usr/bin/env bash
# Training data and evaluation candidates for the default (MiniLM groupwise) reranker.
#
#     scripts/train_default.sh                # from the repository root; FORCE=1 redoes every step
#     RUN_DATE=2026-11-27 DATA=../shared/data OUT=out scripts/train_default.sh
#
# Training queries never include an evaluation query: evaluation is Vaswani and TREC DL19;
# training uses SciFact's *train* claims (not BEIR's test claims) and CACM's topics.
# No qrels are read by any training step (the synthesis is answer-free); ingest writes the
# collections' qrels tables only because it always writes three tables.
#
# Steps (each skipped when its output table exists, unless FORCE=1; times measured on the shared
# 2-core development machine, 2026-11-27, with other jobs running):
#   1. ingest   SciFact train claims (809, from scifact_original_csv.zip) + corpus (5,183 docs),
#               and CACM (64 topics, 3,204 docs), with `grouprank ingest --format scifact|cacm`.
#               114 s and 90 s here (mostly Spark start-up on the loaded machine).
#   2. retrieve BM25 top-100 per training set (`grouprank retrieve --method bm25 --top-k 100`),
#               then one candidates table $OUT/train/candidates with qids prefixed `scifact-` /
#               `cacm-` (scripts/candidates_table.py union), so one synthesis run writes one
#               run_date partition. 219 s (SciFact, 80,900 rows) + 187 s (CACM, 6,400 rows) +
#               110 s (union: 87,300 rows, 873 queries).
#   3. synthesize answer-free samples into $OUT/train/samples: pointwise teacher `encoder`
#               (all-MiniLM-L6-v2 cosine), listwise teacher `first-stage` (BM25), pools of 50,
#               group sizes 5-20, 8 samples per query, 20% of queries to the RL split. Over 60 min
#               here (873 pools, encoder on CPU in 2 Spark workers at ~35-55% of a core each).
#   4. evaluation candidates: DL19 BM25 top-100 with passage text (rank_llm JSON) ->
#               $OUT/bench/dl19-bm25 (qrels: the TREC file, read by `grouprank evaluate`
#               directly); Vaswani ingest + BM25 top-100 -> $OUT/bench/vaswani-bm25 (qrels:
#               $OUT/bench/vaswani/qrels). Vaswani existed already (skipped); DL19 not timed yet.
#   5. training and evaluation: added by the model's author (marked at the end).
set -euo pipefail

cd "$(dirname "$0")/.."
RUN_DATE=${RUN_DATE:-2026-11-27}
DATA=${DATA:-../shared/data}
OUT=${OUT:-out}
FORCE=${FORCE:-0}
GROUPRANK=${GROUPRANK:-.venv/bin/grouprank}
PYTHON=${PYTHON:-.venv/bin/python}

# True when the step must run: FORCE=1, or its output Delta table does not exist yet.
needs() {
    if [[ "$FORCE" == 1 || ! -d "$1/_delta_log" ]]; then return 0; fi
    echo "skip: $1 exists (FORCE=1 to redo)"
    return 1
}

# Runs a command and prints how long it took.
timed() {
    local started=$SECONDS
    "$@"
    echo "took $((SECONDS - started)) s: $*"
}

# --- 1. training collections ---------------------------------------------------------------
if needs "$OUT/train/scifact/queries"; then
    timed "$GROUPRANK" ingest --format scifact --subset train --source "$DATA/scifact" \
        --output "$OUT/train/scifact"
fi
if needs "$OUT/train/cacm/queries"; then
    timed "$GROUPRANK" ingest --format cacm --source "$DATA/cacm" --output "$OUT/train/cacm"
fi

# --- 2. BM25 top-100 candidates, one table with prefixed qids ------------------------------
for name in scifact cacm; do
    if needs "$OUT/train/$name-bm25"; then
        timed "$GROUPRANK" retrieve --corpus "$OUT/train/$name/corpus" \
            --queries "$OUT/train/$name/queries" --output "$OUT/train/$name-bm25" \
            --method bm25 --top-k 100
    fi
done
if needs "$OUT/train/candidates"; then
    timed "$PYTHON" scripts/candidates_table.py union --output "$OUT/train/candidates" \
        "$OUT/train/scifact-bm25=scifact-" "$OUT/train/cacm-bm25=cacm-"
fi

# --- 3. answer-free samples ------------------------------------------------------------------
if needs "$OUT/train/samples"; then
    timed "$GROUPRANK" synthesize --candidates "$OUT/train/candidates" \
        --output "$OUT/train/samples" --run-date "$RUN_DATE" \
        --pointwise-teacher encoder --listwise-teacher first-stage \
        --samples-per-query 8 --rl-fraction 0.2
fi

# --- 4. evaluation candidates (Vaswani, TREC DL19) -------------------------------------------
if needs "$OUT/bench/dl19-bm25"; then
    timed "$PYTHON" scripts/candidates_table.py rank-llm --output "$OUT/bench/dl19-bm25" \
        "$DATA/trec-dl19-passage/bm25/retrieve_results_dl19_top100.json"
fi
if needs "$OUT/bench/vaswani/queries"; then
    timed "$GROUPRANK" ingest --format trec --source "$DATA/vaswani" --output "$OUT/bench/vaswani"
fi
if needs "$OUT/bench/vaswani-bm25"; then
    timed "$GROUPRANK" retrieve --corpus "$OUT/bench/vaswani/corpus" \
        --queries "$OUT/bench/vaswani/queries" --output "$OUT/bench/vaswani-bm25" \
        --method bm25 --top-k 100
fi
echo "evaluation qrels: DL19 $DATA/trec-dl19-passage/qrels.dl19-passage.txt (graded 0-3)," \
     "Vaswani $OUT/bench/vaswani/qrels"

# --- 5. training, ablations and evaluation ------------------------------------------------------
# SFT (distillation) on the sft split, then GRPO on the rl split with the full reward and without
# each term (the paper's ablation); every checkpoint is scored on both evaluation collections.
MODELS=${MODELS:-$OUT/models}
if [[ "$FORCE" == 1 || ! -f "$MODELS/sft/head.safetensors" ]]; then
    timed "$GROUPRANK" train-sft --samples "$OUT/train/samples" --base minilm \
        --output "$MODELS/sft" --epochs 4
fi
declare -A ABLATIONS=([rl]="ndcg,recall,alignment" [rl-no-ndcg]="recall,alignment"
                      [rl-no-recall]="ndcg,alignment" [rl-no-alignment]="ndcg,recall")
for name in rl rl-no-ndcg rl-no-recall rl-no-alignment; do
    if [[ "$FORCE" == 1 || ! -f "$MODELS/$name/head.safetensors" ]]; then
        timed "$GROUPRANK" train-rl --samples "$OUT/train/samples" --init "$MODELS/sft" \
            --output "$MODELS/$name" --epochs 4 --reward-terms "${ABLATIONS[$name]}"
    fi
done
timed "$PYTHON" bench/train_eval.py \
    --collection "vaswani=$OUT/bench/vaswani-bm25:$DATA/vaswani/qrels" \
    --collection "dl19=$OUT/bench/dl19-bm25:$DATA/trec-dl19-passage/qrels.dl19-passage.txt" \
    --checkpoint "sft=$MODELS/sft" --checkpoint "sft+rl=$MODELS/rl" \
    --checkpoint "rl-no-ndcg=$MODELS/rl-no-ndcg" --checkpoint "rl-no-recall=$MODELS/rl-no-recall" \
    --checkpoint "rl-no-alignment=$MODELS/rl-no-alignment" --out "$OUT/train_eval.json"
# The shipped default is the best checkpoint by this table (see its MODEL_CARD.md); copy it with
#   cp "$MODELS/<best>"/{grouprank.json,head.safetensors} grouprank/weights/group-encoder-default/

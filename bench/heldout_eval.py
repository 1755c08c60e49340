"""Leave-one-collection-out evaluation of the group-encoder default (issues 19 and 21).

    .venv/bin/python bench/heldout_eval.py prepare --data ../shared/data --work out/heldout
    .venv/bin/python bench/heldout_eval.py agreement --work out/heldout \
        --out bench/results/heldout_agreement.json
    .venv/bin/python bench/heldout_eval.py late --work out/heldout --out bench/results/heldout_late.json
    .venv/bin/python bench/heldout_eval.py loo --work out/heldout --out bench/results/heldout_loo.json
    .venv/bin/python bench/heldout_eval.py fusion --work out/heldout --config feedback \
        --out bench/results/heldout_fusion.json
    .venv/bin/python bench/heldout_eval.py transforms --work out/heldout \
        --configs feedback,feedback-aug --out bench/results/heldout_transforms.json
    .venv/bin/python bench/heldout_eval.py jobs --work out/heldout --out bench/results/heldout_jobs.json
    .venv/bin/python bench/heldout_eval.py ship --work out/heldout --config feedback --output DIR

``prepare`` builds every dev collection's candidate lists once (only the missing ones): BM25,
MiniLM dense and their min-max hybrid top-100 (``grouprank.retrieval``, the code the retrieve job
runs) for Vaswani, CACM and SciFact (BEIR test claims), and the given BM25 and SPLADE++ ED top-100
runs for TREC DL19; each as parquet and as a Delta candidates table, with its qrels. The hybrid
and SPLADE++ lists are the strong first stages (issue 19).

``agreement``: each list's first-stage agreement with MiniLM (the mean over queries of the
correlation of log first-stage and log cosine ranks) and the nDCG@10 of answer-free rules that
give the first stage a fixed or an agreement-set share (``first_stage_share``); no training.

``late``: each list's MaxSim (``grouprank.late_interaction``) alone and in equal-weight log-rank
fusions with the first stage, cosine and feedback cosine; no training, nothing chosen.

``loo``: for each held-out collection, a head per candidate config is trained on answer-free
samples from the *other* collections' lists only (every first stage of theirs), with the
synthesis library the synthesize job runs (``grouprank.synthesis``: pools, fused teacher ranks,
sub-lists); no qrels enter training. Each head scores the held-out lists in this process (groups
of 20, the job's grouping and fusion). The config shown for a held-out collection is the one
with the best mean over the *other* collections' figures, so no collection's judgments choose
its own model. Baselines: the first stage, MiniLM cosine and the log-rank fusion of the two.

``fusion``: each list's held-out head (``loo``'s ``--config``, trained without its collection)
fused with the first stage at fixed weights and at the weight the list's mean agreement gives
by each agreement rule (``grouprank.fusion.FusionRule``: the reliability model, the logistic
step); the fixed weight, each form's best rule and the best rule of all are chosen per
held-out collection on the other collections' lists.

``choose``: per held-out collection, one of several ``fusion`` outputs (``--runs``: e.g. two
recipes, or one recipe's groupings), by the same objective over the other collections' lists.

``transforms``: the held-out heads of ``--configs`` with the first-stage scores they read
changed by order-keeping maps (``TRANSFORMS``: the same ranking as probabilities, exponentials,
a cubic stretch), fused by the rule at ``--reliability``: how far a head's figures hang on the
scores' distribution rather than on the ranking.

``jobs``: the held-out checkpoints (and the old default) through the real ``rerank`` and
``evaluate`` jobs on each held-out table: the headline figures. A held-out head of the config
the last ``fusion`` step measured gets that fold's chosen rule and fallback weight (in a copy).
``ship``: one head trained on every collection with a config.

Pure Python over MiniLM embeddings encoded once per run and kept in memory
(``grouprank.encoding.embed_in_memory``: ~25,000 texts; the trainer called here reuses them).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grouprank import formats
from grouprank import synthesis as syn
from grouprank.backends.group_encoder import (
    expected_scores,
    feedback_order,
    feedback_vector,
    first_stage_agreement,
    load_head,
    pad_groups,
)
from grouprank.encoding import embed_in_memory
from grouprank.fusion import FusionRule, agreement_weight, first_stage_share
from grouprank.training.group_encoder import EncoderTrainConfig, train_sft
# bench/: the job's grouping, fusion and metric
from train_eval import deal_groups, first_stage_prior, ndcg

# Collection -> its first stages. The first is the one the table reranks (BM25).
RUNS = {
    "vaswani": ("bm25", "dense", "hybrid"),
    "cacm": ("bm25", "dense", "hybrid"),
    "scifact": ("bm25", "dense", "hybrid"),
    "dl19": ("bm25", "splade"),
}
GROUP_SIZE = 20
JOB_DATE = "2026-12-01"
# The bench's vectors: fp32 on every CPU, so its figures do not move with the machine's bf16
# support (the job's --precision auto would pick bf16 where the CPU has it).
PRECISION = "fp32"
# The windows a ``late4w`` config's MaxSim reads per document (``_add_late``).
LATE_WINDOWS = 4


@dataclass(frozen=True)
class Config:
    """One candidate training recipe."""

    name: str
    # Teacher column the labels come from (see ``teachers``).
    teacher: str = "fusion"
    rank_features: bool = True
    feedback_top: int = 0
    # Whether the head reads each query's first-stage agreement with MiniLM.
    agreement: bool = False
    # The job's fusion weight for the trained head (1.0: the head alone).
    fusion_weight: float = 1.0
    epochs: int = 4
    # Share of samples whose first-stage scores training shows through a random order-keeping
    # transform (``EncoderTrainConfig.score_augment``).
    score_augment: float = 0.0
    # Seed of the head's initialisation and batch order (other seeds: the spread of a recipe).
    seed: int = 0
    # Whether the head reads each document's MaxSim with its query (``late_interaction``).
    late: bool = False
    # Windows of 256 tokens MaxSim reads per document (``GroupEncoderConfig.late_windows``):
    # 1 = the first 256 tokens, as the pooled vector. The labels' MaxSim teacher reads the same.
    late_windows: int = 1


CONFIGS = {
    c.name: c
    for c in [
        Config("fusion-teacher"),
        Config("feedback", teacher="fusion3", feedback_top=5),
        Config("feedback-w0.8", teacher="fusion3", feedback_top=5, fusion_weight=0.8),
        # The same, trained to read first-stage scores whatever their distribution.
        Config("feedback-aug", teacher="fusion3", feedback_top=5, score_augment=0.5),
        *[Config(f"{name}-s{seed}", teacher="fusion3", feedback_top=5, score_augment=aug,
                 seed=seed)
          for name, aug in (("feedback", 0.0), ("feedback-aug", 0.5)) for seed in (1, 2)],
        Config("feedback-fs", teacher="fusion3fs", feedback_top=5),
        Config("feedback-fs-w0.8", teacher="fusion3fs", feedback_top=5, fusion_weight=0.8),
        # The first stage's share of the labels set by its agreement with MiniLM on each list.
        Config("adaptive", teacher="adaptive", feedback_top=5),
        Config("adaptive-w0.8", teacher="adaptive", feedback_top=5, fusion_weight=0.8),
        # The same labels, and the head reads the agreement the labels' share came from.
        Config("agree", teacher="adaptive", feedback_top=5, agreement=True),
        Config("agree-w0.8", teacher="adaptive", feedback_top=5, agreement=True,
               fusion_weight=0.8),
        # feedback-aug's head also reading MaxSim (grouprank.late_interaction); with today's
        # labels, and with labels that fuse MaxSim in too (a fourth answer-free signal).
        Config("late-aug", teacher="fusion3", feedback_top=5, score_augment=0.5, late=True),
        Config("late4-aug", teacher="fusion4", feedback_top=5, score_augment=0.5, late=True),
        *[Config(f"late4-aug-s{seed}", teacher="fusion4", feedback_top=5, score_augment=0.5,
                 late=True, seed=seed) for seed in (1, 2)],
        # The same head, labels without the feedback teacher (first stage, cosine, MaxSim).
        Config("late3-aug", teacher="fusion3l", feedback_top=5, score_augment=0.5, late=True),
        # late4-aug with MaxSim (feature and teacher) over up to 4 windows of a long document.
        *[Config(f"late4w-aug{suffix}", teacher=f"fusion4w{LATE_WINDOWS}", feedback_top=5,
                 score_augment=0.5, late=True, late_windows=LATE_WINDOWS, seed=seed)
          for suffix, seed in (("", 0), ("-s1", 1), ("-s2", 2))],
    ]
}


# --- prepare -----------------------------------------------------------------------------------


def _top_k(corpus: pd.DataFrame, queries: pd.DataFrame, method: str, k: int = 100) -> pd.DataFrame:
    from grouprank.retrieval import Retriever, build_index

    retriever = Retriever(build_index(list(corpus.docid), list(corpus.text), method))
    text = dict(zip(corpus.docid, corpus.text))
    rows = [
        (queries.qid.iloc[i], queries["query"].iloc[i], docid, text[docid], score, rank)
        for i, docid, score, rank in retriever.top_k(list(queries["query"]), k)
    ]
    return pd.DataFrame(rows, columns=["qid", "query", "docid", "text", "score", "rank"])


def _benchmark(name: str, data: Path) -> formats.Benchmark:
    if name == "scifact":  # BEIR's test claims (Anserini's topics file), not the train claims
        with gzip.open(data / "scifact/topics.beir-v1.0.0-scifact.test.tsv.gz", "rt") as handle:
            topics = [line.rstrip("\n").split("\t", 1) for line in handle if line.strip()]
        return formats.Benchmark(
            formats.read_beir_corpus(data / "scifact/corpus.jsonl.gz"),
            pd.DataFrame(topics, columns=["qid", "query"]),
            formats.read_trec_qrels(data / "scifact/qrels.beir-v1.0.0-scifact.test.txt"),
        )
    return formats.read_benchmark({"vaswani": "trec", "cacm": "cacm"}[name], data / name)


def prepare(data: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for name, runs in RUNS.items():
        runs = [run for run in runs if not (work / f"{name}-{run}.parquet").exists()]
        if not runs:
            continue
        started = time.time()
        if name == "dl19":
            folder = data / "trec-dl19-passage"
            names = {"bm25": "bm25", "splade": "splade_pp_ed"}
            frames = {run: formats.read_rank_llm(
                folder / names[run] / "retrieve_results_dl19_top100.json") for run in runs}
            qrels = formats.read_trec_qrels(folder / "qrels.dl19-passage.txt")
        else:
            bench = _benchmark(name, data)
            qrels = bench.qrels
            queries = bench.queries[bench.queries.qid.isin(set(qrels.qid))].reset_index(drop=True)
            frames = {run: _top_k(bench.corpus, queries, run) for run in runs}
        qrels.to_parquet(work / f"{name}-qrels.parquet")
        for run, frame in frames.items():
            frame.to_parquet(work / f"{name}-{run}.parquet")
        print(f"{name}: {', '.join(f'{r} {len(f):,} rows' for r, f in frames.items())} "
              f"({time.time() - started:.0f} s)", flush=True)
    _write_tables(work)


def _write_tables(work: Path) -> None:
    """Delta candidates and qrels tables of every prepared list, for the real jobs."""
    from jobs.session import get_session
    from jobs.tables import write_delta
    from schemas.candidates import CANDIDATES
    from schemas.qrels import QRELS

    spark = None
    for name, runs in RUNS.items():
        for run in [*runs, "qrels"]:
            target = work / "tables" / f"{name}-{run}"
            if (target / "_delta_log").is_dir():
                continue
            spark = spark or get_session("grouprank-bench-heldout")
            frame = pd.read_parquet(work / f"{name}-{run}.parquet")
            schema = QRELS if run == "qrels" else CANDIDATES
            frame = frame[[f.name for f in schema.fields]]
            write_delta(spark.createDataFrame(frame, schema), str(target))


# --- features, teachers and samples ------------------------------------------------------------


class Lists:
    """One collection's candidate lists for one first stage, with embeddings and teachers."""

    def __init__(self, work: Path, name: str, run: str) -> None:
        frame = pd.read_parquet(work / f"{name}-{run}.parquet")
        frame["rank_fs"] = frame.groupby("qid")["score"].rank(ascending=False, method="first")
        self.frame = frame.sort_values(["qid", "rank_fs"], kind="stable").reset_index(drop=True)
        self.name, self.run = name, run
        self.queries = embed_in_memory("minilm", list(self.frame["query"].astype(str)),
                                       precision=PRECISION)
        self.docs = embed_in_memory("minilm", list(self.frame["text"].astype(str)),
                                    precision=PRECISION)
        self.by_query = {q: np.asarray(i) for q, i in self.frame.groupby("qid").indices.items()}
        self.qrels = pd.read_parquet(work / f"{name}-qrels.parquet")
        self._teachers()

    def _teachers(self) -> None:
        """Answer-free teacher scores (higher is better) over each whole list."""
        f = self.frame
        f["cosine"] = (self.queries * self.docs).sum(-1).numpy()
        f["rank_cos"] = f.groupby("qid")["cosine"].rank(ascending=False, method="first")
        f["fusion"] = -0.5 * np.log(f.rank_fs) - 0.5 * np.log(f.rank_cos)
        feedback = np.zeros(len(f))
        for idx in self.by_query.values():
            context = self.context(idx, 5)
            feedback[idx] = (self.docs[idx].numpy() @ context)
        f["feedback"] = feedback
        f["rank_fb"] = f.groupby("qid")["feedback"].rank(ascending=False, method="first")
        f["fusion3"] = -(np.log(f.rank_fs) + np.log(f.rank_cos) + np.log(f.rank_fb)) / 3
        # The same three, the first stage weighted as the other two together.
        f["fusion3fs"] = -(0.5 * np.log(f.rank_fs) + 0.25 * np.log(f.rank_cos)
                           + 0.25 * np.log(f.rank_fb))
        # How far the first stage agrees with MiniLM over this list (answer-free): the mean over
        # queries of the correlation of their log-ranks.
        self.query_agreement = {
            q: first_stage_agreement(f.rank_fs.values[i], f.cosine.values[i])
            for q, i in self.by_query.items()
        }
        self.agreement = float(np.nanmean(list(self.query_agreement.values())))

    def share_rule(self, share: float) -> np.ndarray:
        """The answer-free rule giving the first stage ``share`` of the labels and cosine and
        feedback cosine half the rest each: ``-(s·log r_fs + (1-s)/2·(log r_cos + log r_fb))``."""
        f = self.frame
        return (-(share * np.log(f.rank_fs)
                  + (1 - share) * 0.5 * (np.log(f.rank_cos) + np.log(f.rank_fb)))).values

    def adaptive(self, reliability: float) -> str:
        """Adds the agreement-weighted teacher for MiniLM ``reliability``; returns its column."""
        column = f"adaptive{reliability}"
        if column not in self.frame:
            self.frame[column] = self.share_rule(first_stage_share(self.agreement, reliability))
        return column

    def context(self, idx: np.ndarray, top: int) -> np.ndarray:
        """The query's feedback vector, as the reranking job computes it over the whole list."""
        return feedback_vector(self.queries[idx[0]].numpy(), self.docs[idx].numpy(),
                               self.frame["rank_fs"].values[idx], top)

    def samples(self, teacher: str, settings: syn.SynthesisSettings,
                late: str = "late") -> list[dict]:
        """Training samples from every query's pool, labelled by ``teacher`` (no qrels), with
        MaxSim from the column ``late``."""
        f, rows = self.frame, []
        for qid, idx in self.by_query.items():
            key = f"{self.name}/{self.run}/{qid}"
            keep = idx[syn.sample_pool(len(idx), key, settings)]
            labels = syn.ranks_from_scores(list(f[teacher].values[keep]), list(range(len(keep))))
            cosine = f["cosine"].values[keep]
            spread = cosine.max() - cosine.min()
            levels = 10 * (cosine - cosine.min()) / spread if spread > 0 else np.full(len(keep), 10.0)
            targets = syn.calibrated_targets(labels, list(levels))
            top = idx[feedback_order(f["rank_fs"].values[idx], f["cosine"].values[idx])[:10]]
            for k, sample in enumerate(syn.cut_samples(labels, targets, key, settings)):
                chosen = keep[sample.positions]
                rows.append({
                    "sample_id": f"{key}#{k}", "qid": key, "query": f["query"].values[chosen[0]],
                    "texts": list(f["text"].values[chosen]),
                    "first_stage_scores": [float(s) for s in f["score"].values[chosen]],
                    "first_stage_ranks": [int(r) for r in f["rank_fs"].values[chosen]],
                    "target_scores": sample.target_scores, "split": "sft",
                    "feedback_texts": list(f["text"].values[top]),
                    "first_stage_agreement": self.query_agreement[qid],
                    **({"late_scores": [float(v) for v in f[late].values[chosen]]}
                       if late in f else {}),
                })
        return rows

    def scores(self, head, fusion_weight: float, seed: int = 0,
               first_stage: np.ndarray | None = None, repeats: int = 1,
               groups: dict | None = None) -> np.ndarray:
        """Each candidate's final score as the job makes it: random groups of 20, the head's
        0-10 score (the mean over ``repeats`` reshufflings, as ``--repeats``), fused with the
        first stage's rank prior at ``fusion_weight``. The head reads ``first_stage`` (default:
        the list's scores), which must keep their order. ``groups`` (qid -> row-index arrays
        of the frame, e.g. a job's own) replaces the random draw. ``head`` may be a list of
        heads (an ensemble): grouping r is scored by head r mod their number."""
        if repeats > 1 or isinstance(head, list):
            members = head if isinstance(head, list) else [head]
            model = np.mean([self.scores(members[r % len(members)], 1.0, seed + r, first_stage,
                                         groups=groups) for r in range(repeats)], axis=0)
            return fusion_weight * model + (1 - fusion_weight) * first_stage_prior(
                self.frame).values
        f, out = self.frame, np.zeros(len(self.frame))
        given = f["score"].values if first_stage is None else first_stage
        rng = np.random.default_rng(seed)
        top = head.config.context_top
        for qid, idx in self.by_query.items():
            dealt = (groups[qid] if groups is not None
                     else [idx[g] for g in deal_groups(len(idx), GROUP_SIZE, rng)])
            count = len(dealt)
            batch = pad_groups(
                torch.stack([self.queries[idx[0]]] * count), [self.docs[g] for g in dealt],
                [given[g].tolist() for g in dealt],
                [f["rank_fs"].values[g].astype(int).tolist() for g in dealt],
            )
            context = (torch.from_numpy(self.context(idx, top)).expand(count, -1)
                       if top else None)
            agreement = torch.full((count,), self.query_agreement[f.qid.values[idx[0]]])
            late = None
            if head.config.late_interaction:
                late = torch.zeros(batch[3].shape)
                for k, g in enumerate(dealt):
                    late[k, : len(g)] = torch.from_numpy(
                        f[late_column(head.config.late_windows)].values[g].astype(np.float32))
            with torch.no_grad():
                model = expected_scores(head(*batch, context=context, agreement=agreement,
                                             late=late))
            for k, g in enumerate(dealt):
                out[g] = model[k, : len(g)].numpy()
        return fusion_weight * out / 10 + (1 - fusion_weight) * first_stage_prior(f).values

    def transformed(self, kind: str) -> np.ndarray:
        """The list's first-stage scores through an order-keeping map per query (``TRANSFORMS``),
        as another kind of first stage would give the same ranking."""
        out = self.frame["score"].values.astype(np.float64).copy()
        for idx in self.by_query.values():
            s = out[idx]
            z = (s - s.mean()) / (s.std() or 1.0)
            out[idx] = TRANSFORMS[kind](z)
        return out

    def ndcg(self, scores: np.ndarray) -> float:
        """Mean nDCG@10 over the judged queries (trec_eval's order: score desc, docid desc)."""
        return ndcg(self.frame.assign(_ranking=scores), "_ranking", self.qrels)


# Order-keeping maps of a query's standardised scores z, for ``transforms``: calibrated
# probabilities, softmax-like exponentials (both inside the family training augments with), and a
# cubic stretch (outside it).
TRANSFORMS = {
    "as given": lambda z: z,
    "probabilities": lambda z: 1 / (1 + np.exp(-4 * z)),
    "exponentials": lambda z: np.exp(3 * (z - z.max())),
    "cubic": lambda z: (z - z.min()) ** 3,
}


def transforms_table(work: Path, configs: list[str], checkpoints: Path,
                     reliability: float) -> dict:
    """Per list and held-out head (``loo``'s checkpoints of ``configs``): nDCG@10 with the
    head reading the first-stage scores as given and through each of ``TRANSFORMS`` (the order,
    so the first stage and the rank prior, unchanged), fused by the rule at ``reliability``."""
    lists, out = load_lists(work), {}
    for (name, run), item in lists.items():
        weight = agreement_weight(item.agreement, reliability)
        for config in configs:
            head = load_head(checkpoints / name / config)
            out.setdefault(f"{name}/{run}", {})[config] = row = {
                kind: item.ndcg(item.scores(head, weight, first_stage=item.transformed(kind)))
                for kind in TRANSFORMS}
            print(f"{name}/{run} {config}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()),
                  flush=True)
    return out


RELIABILITIES = (0.65, 0.7, 0.75, 0.8, 0.85)


def choose_reliability(lists: dict, held: str) -> float:
    """The MiniLM reliability whose adaptive teacher scores best on the other collections'
    lists (the objective of ``select``), never reading ``held``'s judgments."""
    others = {key: item for key, item in lists.items() if key[0] != held}
    bases = baselines(others)

    def objective(reliability: float) -> float:
        return float(np.mean([
            _gain(item.ndcg(item.frame[item.adaptive(reliability)].values),
                  bases[f"{name}/{run}"])
            for (name, run), item in others.items()
        ]))

    return max(RELIABILITIES, key=objective)


def agreement_table(lists: dict) -> dict:
    """Per list: the agreement, and the adaptive teacher's nDCG@10 at each reliability and at
    fixed first-stage shares (answer-free rules, no training)."""
    out = {}
    for (name, run), item in lists.items():
        f = item.frame
        fixed = {str(share): item.ndcg(item.share_rule(share))
                 for share in (0.0, 0.2, 0.33, 0.5, 0.7, 0.85, 1.0)}
        out[f"{name}/{run}"] = {
            "agreement": item.agreement,
            "fixed_share": fixed,
            "adaptive": {str(r): {"share": first_stage_share(item.agreement, r),
                                  "ndcg@10": item.ndcg(f[item.adaptive(r)].values)}
                         for r in RELIABILITIES},
        }
    out["chosen_reliability"] = {held: choose_reliability(lists, held) for held in RUNS}
    return out


def training_split(held_out: str) -> list[tuple[str, str]]:
    """The (collection, first stage) lists a head for ``held_out`` trains on: every other
    collection's, never the held-out one's (its queries and documents stay out)."""
    return [(name, run) for name, runs in RUNS.items() if name != held_out for run in runs]


def train_head(lists: dict, pairs: list[tuple[str, str]], config: Config, output: Path,
               reliability: float | None = None) -> tuple[object, int, dict]:
    """A head trained on the samples of ``pairs`` by ``config``; (head, samples, summary).
    An ``adaptive`` teacher needs the ``reliability`` chosen for this head."""
    settings = syn.SynthesisSettings(samples_per_query=4)

    def column(item) -> str:
        return item.adaptive(reliability) if config.teacher == "adaptive" else config.teacher

    rows = [row for pair in pairs
            for row in lists[pair].samples(column(lists[pair]), settings,
                                           late_column(config.late_windows))]
    trainer = EncoderTrainConfig(epochs=config.epochs, rank_features=config.rank_features,
                                 context_top=config.feedback_top, save_every=0,
                                 seed=config.seed,
                                 agreement_feature=config.agreement,
                                 score_augment=config.score_augment,
                                 late_interaction=config.late,
                                 late_windows=config.late_windows)
    summary = train_sft(pd.DataFrame(rows), "minilm", output, trainer)
    _set_fusion_weight(output, config.fusion_weight)
    return load_head(output), len(rows), summary


def _set_fusion_weight(path: Path, weight: float) -> None:
    """A fixed fusion weight and no agreement rule (``jobs`` adds a fold's rule to a copy)."""
    _set_config(path, fusion_weight=weight, **rule_config(None))


def _set_config(path: Path, **values) -> None:
    config_file = Path(path) / "grouprank.json"
    config = {**json.loads(config_file.read_text()), **values}
    config_file.write_text(json.dumps(config, indent=2) + "\n")


# --- fusion --------------------------------------------------------------------------------------

HEAD_RELIABILITIES = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
LOGISTIC_CENTERS = tuple(round(0.5 + 0.025 * k, 3) for k in range(11))
LOGISTIC_SLOPES = (8.0, 12.0, 16.0, 20.0, 30.0)
# The echo threshold the rules are also tried with, fixed before any figure was seen: a first
# stage agreeing 0.95 or more with the encoder is, to within ties, the encoder's own ranking.
ECHO = 0.95
WEIGHTS = tuple(round(0.1 * k, 1) for k in range(11))


def fusion_rules() -> dict[str, FusionRule]:
    """Every agreement rule the fusion step tries, by label: the reliability model at
    ``HEAD_RELIABILITIES`` and the logistic step over ``LOGISTIC_CENTERS`` x ``LOGISTIC_SLOPES``."""
    rules = {f"reliability {r}": FusionRule(reliability=r) for r in HEAD_RELIABILITIES}
    rules.update({f"logistic {c} {k:g}": FusionRule(center=c, slope=k)
                  for c in LOGISTIC_CENTERS for k in LOGISTIC_SLOPES})
    # Each also with an echo threshold: the encoder's own ranking gets the head alone.
    rules.update({f"{label} echo {ECHO}": replace(rule, echo=ECHO)
                  for label, rule in list(rules.items())})
    return rules


def rule_config(rule: dict | None) -> dict:
    """A rule as ``FusionRule.describe`` gives it -> the checkpoint fields that carry it."""
    rule = rule or {}
    return {"fusion_reliability": rule.get("reliability"), "fusion_center": rule.get("center"),
            "fusion_slope": rule.get("slope"), "fusion_echo": rule.get("echo")}


def fusion_table(work: Path, config: str, checkpoints: Path, repeats: int = 1) -> dict:
    """Per list, its held-out head (``loo``'s ``config`` at weight 1.0, trained without the
    list's collection) fused with the first stage at fixed weights and at the weight each
    agreement rule (``fusion_rules``) gives the list's mean agreement. Per held-out collection
    the fixed weight, the best rule of each form and the best rule of all are chosen on the
    *other* collections' lists (``select``'s objective), never on its own judgments."""
    lists = load_lists(work)
    bases = baselines(lists)
    rules = fusion_rules()
    fixed, ruled, head_agreement = {}, {}, {}
    for (name, run), item in lists.items():
        key = f"{name}/{run}"
        # Its 0-10 score / 10 (the mean over ``repeats`` groupings, as the job's --repeats).
        # A config "a+b+c" is an ensemble: grouping r is scored by member r mod 3.
        members = [load_head(checkpoints / name / c) for c in config.split("+")]
        head = item.scores(members if len(members) > 1 else members[0], 1.0, repeats=repeats)
        first = first_stage_prior(item.frame).values
        # A second view tried for telling strong first stages apart: agreement with the head.
        head_agreement[key] = float(np.nanmean([
            first_stage_agreement(item.frame.rank_fs.values[i], head[i])
            for i in item.by_query.values()]))

        def fused(w: float) -> float:
            return item.ndcg(w * head + (1 - w) * first)

        fixed[key] = {w: fused(w) for w in WEIGHTS}
        ruled[key] = {label: fused(rule.weight(item.agreement)) for label, rule in rules.items()}

    def best(figures: dict, keys: list[str], prefix: str = "") -> float | str:
        """The option (weight or rule label starting with ``prefix``) with the best mean gain
        over ``keys``' lists."""
        options = [o for o in next(iter(figures.values())) if str(o).startswith(prefix)]
        return max(options, key=lambda o: np.mean([_gain(figures[k][o], bases[k]) for k in keys]))

    def choices(keys: list[str]) -> dict:
        reliability, logistic, rule = (best(ruled, keys, prefix)
                                       for prefix in ("reliability", "logistic", ""))
        return {"fixed_weight": best(fixed, keys),
                "head_reliability": rules[reliability].reliability,
                "logistic": rules[logistic].describe(), "rule": rules[rule].describe(),
                "labels": {"reliability": reliability, "logistic": logistic, "rule": rule}}

    out: dict = {"config": config, "repeats": repeats, "baselines": bases, "lists": {},
                 "chosen": {}}
    for held in RUNS:
        out["chosen"][held] = chosen = choices(
            [key for key in fixed if key.split("/")[0] != held])
        labels = chosen["labels"]
        for run in RUNS[held]:
            key, item = f"{held}/{run}", lists[held, run]
            out["lists"][key] = {
                "agreement": item.agreement, "head_agreement": head_agreement[key],
                "fixed": fixed[key], "rule": ruled[key],
                "held_out_fixed": fixed[key][chosen["fixed_weight"]],
                "held_out_rule": ruled[key][labels["reliability"]],
                "held_out_logistic": ruled[key][labels["logistic"]],
                "held_out_chosen": ruled[key][labels["rule"]],
                "rule_weight": rules[labels["reliability"]].weight(item.agreement),
                "logistic_weight": rules[labels["logistic"]].weight(item.agreement),
                "chosen_weight": rules[labels["rule"]].weight(item.agreement),
            }
    out["chosen"]["ship"] = choices(list(fixed))
    return out


def choose_table(files: list[Path]) -> dict:
    """Per held-out collection, one of several ``fusion`` step outputs (recipes, groupings),
    chosen by ``select``'s objective over the *other* collections' lists, each list fused by the
    rule its fold chose there; then every list's held-out figure under its fold's choice."""
    runs = {path.stem: json.loads(path.read_text()) for path in files}
    first = next(iter(runs.values()))
    out: dict = {"runs": [str(p) for p in files], "chosen": {}, "lists": {}}
    for held in RUNS:
        keys = [k for k in first["lists"] if k.split("/")[0] != held]

        def objective(name: str) -> float:
            fig = runs[name]
            label = fig["chosen"][held]["labels"]["rule"]
            return float(np.mean([_gain(fig["lists"][k]["rule"][label], fig["baselines"][k])
                                  for k in keys]))

        out["chosen"][held] = pick = max(runs, key=objective)
        for run in RUNS[held]:
            key = f"{held}/{run}"
            out["lists"][key] = {"chosen": pick, **{
                name: fig["lists"][key]["held_out_chosen"] for name, fig in runs.items()}}
    names = list(runs)
    print("| held-out list | best input | " + " | ".join(names) + " | chosen per fold |")
    print("|---|---:|" + "---:|" * len(names) + "---|")
    for key, row in out["lists"].items():
        base = first["baselines"][key]
        best = max(base["first stage"], base["cosine"], base["fusion"])
        print(f"| {key} | {best:.4f} | " + " | ".join(f"{row[n]:.4f}" for n in names)
              + f" | {row['chosen']}: {row[row['chosen']]:.4f} ({row[row['chosen']] - best:+.4f}) |")
    return out


def print_fusion(figures: dict) -> None:
    print("| held-out list | agreement | with the head | first stage | cosine | fusion | "
          "head, chosen fixed w | reliability rule (w) | logistic rule (w) | chosen rule (w) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, row in figures["lists"].items():
        base = figures["baselines"][key]
        print(f"| {key} | {row['agreement']:.3f} | {row['head_agreement']:.3f} | "
              f"{base['first stage']:.4f} | "
              f"{base['cosine']:.4f} | {base['fusion']:.4f} | {row['held_out_fixed']:.4f} | "
              f"{row['held_out_rule']:.4f} ({row['rule_weight']:.2f}) | "
              f"{row['held_out_logistic']:.4f} ({row['logistic_weight']:.2f}) | "
              f"{row['held_out_chosen']:.4f} ({row['chosen_weight']:.2f}) |")
    print(json.dumps({held: c["labels"] for held, c in figures["chosen"].items()}))


# --- loo -----------------------------------------------------------------------------------------


def load_lists(work: Path) -> dict:
    """Every prepared list. Its texts' vectors are read from, and added to, a bench-only file
    (``work/vectors-fp32.pt``), so a second step does not encode the ~25,000 texts again."""
    from grouprank import encoding

    saved = work / f"vectors-{PRECISION}.pt"
    memory = encoding._VECTORS.setdefault(("minilm", 256, PRECISION), {})
    if saved.is_file():
        memory.update(torch.load(saved))
    before = len(memory)
    lists = {(name, run): Lists(work, name, run) for name, runs in RUNS.items() for run in runs}
    if len(memory) > before:
        torch.save(dict(memory), saved)
    for name in RUNS:
        _add_late(work, {run: lists[name, run] for run in RUNS[name]})
    return lists


def late_column(windows: int) -> str:
    """The lists' MaxSim column over ``windows`` windows per document."""
    return "late" if windows == 1 else f"late_w{windows}"


def _add_late(work: Path, lists: dict) -> None:
    """Each row's MaxSim with its query (``grouprank.late_interaction``, fp32) as the lists'
    ``late`` column, and the four-signal teacher ``fusion4`` (first stage, cosine, feedback,
    MaxSim); the same over ``LATE_WINDOWS`` windows per document as ``late_w4`` and
    ``fusion4w4``. Every distinct text of the collection is encoded once; the scores are kept in
    a bench-only file per list (``work/late-NAME-RUN.npy``, ``late-w4-NAME-RUN.npy``, in the
    list's row order)."""
    for windows in (1, LATE_WINDOWS):
        _add_late_windows(work, lists, windows)


def _add_late_windows(work: Path, lists: dict, windows: int) -> None:
    from grouprank.encoding import loaded_encoder
    from grouprank.late_interaction import maxsim, token_vectors

    prefix = "late" if windows == 1 else f"late-w{windows}"
    column, teacher = late_column(windows), "fusion4" if windows == 1 else f"fusion4w{windows}"
    files = {run: work / f"{prefix}-{item.name}-{run}.npy" for run, item in lists.items()}
    if not all(path.is_file() for path in files.values()):
        started = time.time()
        texts = sorted({str(t) for item in lists.values()
                        for t in [*item.frame["query"], *item.frame["text"]]})
        encoder = loaded_encoder("minilm", 256)
        vectors = {}
        queries = {str(q) for item in lists.values() for q in item.frame["query"]}
        for start in range(0, len(texts), 2048):  # fp16 in memory: 1-2 GB for SciFact
            chunk = texts[start : start + 2048]
            # Documents in up to ``windows`` windows; queries in one, as the scorer reads them.
            read = [1 if t in queries else windows for t in chunk]
            for w in sorted(set(read)):
                part = [t for t, r in zip(chunk, read) if r == w]
                vectors.update(zip(part, (v.half() for v in
                                          token_vectors(encoder, part, PRECISION, windows=w))))
        for run, item in lists.items():
            f = item.frame
            values = [maxsim(vectors[str(q)].float(), vectors[str(t)].float())
                      for q, t in zip(f["query"], f["text"])]
            np.save(files[run], np.asarray(values, dtype=np.float32))
        print(f"MaxSim, {windows} window(s): {len(texts):,} texts of "
              f"{next(iter(lists.values())).name} ({time.time() - started:.0f} s)", flush=True)
    for run, item in lists.items():
        f = item.frame
        f[column] = np.load(files[run])
        rank = f.groupby("qid")[column].rank(ascending=False, method="first")
        f[teacher] = -(np.log(f.rank_fs) + np.log(f.rank_cos) + np.log(f.rank_fb)
                       + np.log(rank)) / 4
        if windows == 1:
            f["rank_late"] = rank
            f["fusion3l"] = -(np.log(f.rank_fs) + np.log(f.rank_cos) + np.log(rank)) / 3


def late_table(work: Path) -> dict:
    """Per list, nDCG@10 of MaxSim alone and of equal-weight log-rank fusions with and without
    it (no training, no weights chosen: every figure is held out by construction)."""
    figures = {}
    for (name, run), item in load_lists(work).items():
        f = item.frame
        row = {"first stage": item.ndcg(f["score"].values), "cosine": item.ndcg(f["cosine"].values),
               "maxsim": item.ndcg(f["late"].values),
               f"maxsim, {LATE_WINDOWS} windows": item.ndcg(f[late_column(LATE_WINDOWS)].values),
               "fusion": item.ndcg(f["fusion"].values),
               "fusion + maxsim": item.ndcg(f["fusion3l"].values),
               "fusion + feedback": item.ndcg(f["fusion3"].values),
               "fusion + feedback + maxsim": item.ndcg(f["fusion4"].values)}
        figures[f"{name}/{run}"] = row
    columns = list(next(iter(figures.values())))
    print("| list | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for key, row in figures.items():
        print(f"| {key} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")
    return figures


def baselines(lists: dict) -> dict:
    out = {}
    for (name, run), item in lists.items():
        f = item.frame
        out[f"{name}/{run}"] = {
            "first stage": item.ndcg(f["score"].values),
            "cosine": item.ndcg(f["cosine"].values),
            "fusion": item.ndcg(f["fusion"].values),
            "fusion + feedback": item.ndcg(f["fusion3"].values),
        }
    return out


def loo(work: Path, configs: list[Config], checkpoints: Path) -> dict:
    lists = load_lists(work)
    figures: dict = {"baselines": baselines(lists), "heads": {}}
    for held in RUNS:
        trained: dict = {}
        for config in configs:
            started = time.time()
            target = checkpoints / held / config.name
            reliability = (choose_reliability(lists, held) if config.teacher == "adaptive"
                           else None)
            recipe = replace(config, name="", fusion_weight=1.0)
            marker = target / "recipe.json"
            # What the head was trained on: an earlier run's head is reused only if all of it
            # matches (the recipe, the lists of the training split, the teacher's reliability).
            # (A recipe at the default late_windows records it as before the field existed.)
            fields = {k: v for k, v in asdict(recipe).items()
                      if (k, v) != ("late_windows", 1)}
            record = {**fields, "training": [list(p) for p in training_split(held)],
                      **({"reliability": reliability} if reliability else {})}
            if recipe in trained:  # the same head, another fusion weight: no need to train again
                shutil.copytree(trained[recipe], target, dirs_exist_ok=True)
                _set_fusion_weight(target, config.fusion_weight)
                head, count = load_head(target), 0
            elif marker.is_file() and json.loads(marker.read_text()) == record:
                _set_fusion_weight(target, config.fusion_weight)  # trained by an earlier run
                head, count = load_head(target), 0
                trained[recipe] = target
            else:
                head, count, _ = train_head(lists, training_split(held), config, target,
                                            reliability=reliability)
                marker.write_text(json.dumps(record) + "\n")
                trained[recipe] = target
            for run in RUNS[held]:
                item = lists[held, run]
                value = item.ndcg(item.scores(head, config.fusion_weight))
                figures["heads"].setdefault(f"{held}/{run}", {})[config.name] = value
            print(f"{held} {config.name}: {count} samples, "
                  + ", ".join(f"{run} {figures['heads'][f'{held}/{run}'][config.name]:.4f}"
                              for run in RUNS[held]) + f" ({time.time() - started:.0f} s)",
                  flush=True)
    figures["selected"] = select(figures["heads"], figures["baselines"])
    return figures


def select(heads: dict, baselines: dict) -> dict:
    """Per held-out collection, the config with the best objective over the *other*
    collections' held-out figures (every first stage), so its own judgments never choose its
    model. The objective is the issues' two goals: the mean gain over the best of the list's
    baselines (first stage, cosine, fusion), with every loss against the first stage counted
    twice more."""
    chosen = {}
    names = list(next(iter(heads.values())))

    def objective(name: str, keys: list[str]) -> float:
        return float(np.mean([_gain(heads[key][name], baselines[key]) for key in keys]))

    for held in RUNS:
        others = [key for key in heads if key.split("/")[0] != held]
        chosen[held] = max(names, key=lambda n: objective(n, others))
    # The shipped head's recipe: the same objective over every list (it is not a held-out
    # figure; the held-out ones above are).
    chosen["ship"] = max(names, key=lambda n: objective(n, list(heads)))
    return chosen


def _gain(value: float, base: dict) -> float:
    """``select``'s objective for one list: the gain over the best of its baselines (first
    stage, cosine, fusion), with a loss against the first stage counted twice more."""
    best = max(base["first stage"], base["cosine"], base["fusion"])
    return value - best + 2 * min(0.0, value - base["first stage"])


def print_table(figures: dict) -> None:
    print("| held-out list | first stage | cosine | fusion | fusion + feedback | "
          + " | ".join(next(iter(figures["heads"].values()))) + " | selected |")
    print("|---|---:|---:|---:|---:|" + "---:|" * (len(next(iter(figures["heads"].values()))) + 1))
    for key, base in figures["baselines"].items():
        heads = figures["heads"].get(key, {})
        pick = figures["selected"].get(key.split("/")[0])
        print(f"| {key} | " + " | ".join(f"{v:.4f}" for v in base.values()) + " | "
              + " | ".join(f"{v:.4f}" for v in heads.values())
              + f" | {pick}: {heads.get(pick, float('nan')):.4f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["prepare", "agreement", "late", "loo", "fusion",
                                         "choose", "transforms",
                                         "jobs", "ship", "cost"])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--work", default="out/heldout")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--config", default="auto",
                        help="ship: the config to train; jobs: the config of every fold's "
                             "head (auto: the one loo selected); fusion: a+b+c scores grouping "
                             "r with config r mod 3 (an ensemble)")
    parser.add_argument("--output", help="ship: the checkpoint directory")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--models", default="old,heldout", help="jobs: old, heldout or both")
    parser.add_argument("--baseline", help="cost: a checkpoint to time against the default")
    parser.add_argument("--lists", default="", help="jobs: e.g. dl19/splade,vaswani/bm25")
    parser.add_argument("--runs", default="",
                        help="choose: the fusion step's JSON files to choose among per fold")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fusion: groupings the head's scores are averaged over")
    parser.add_argument("--reliability", type=float, default=0.85,
                        help="transforms: the fusion rule's reliability")
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.step == "prepare":
        prepare(Path(args.data), work)
        return 0
    if args.step == "agreement":
        figures = agreement_table(load_lists(work))
        for key, row in figures.items():
            print(key, json.dumps(row))
    elif args.step == "late":
        figures = late_table(work)
    elif args.step == "loo":
        figures = loo(work, [CONFIGS[c] for c in args.configs.split(",")], work / "checkpoints")
        print_table(figures)
    elif args.step == "fusion":
        figures = fusion_table(work, args.config if args.config != "auto" else "feedback",
                               work / "checkpoints", args.repeats)
        print_fusion(figures)
    elif args.step == "choose":
        figures = choose_table([Path(p) for p in args.runs.split(",")])
    elif args.step == "transforms":
        figures = transforms_table(work, args.configs.split(","), work / "checkpoints",
                                   args.reliability)
    elif args.step == "cost":
        figures = head_cost(work, args.baseline)
        print(json.dumps(figures, indent=1))
    elif args.step == "ship":
        if args.config == "auto":
            saved = json.loads((work / "loo.json").read_text())
            args.config = select(saved["heads"], saved["baselines"])["ship"]
        lists = load_lists(work)
        pairs = [(name, run) for name, runs in RUNS.items() for run in runs]
        config = CONFIGS[args.config]
        # The shipped head's reliability is chosen on every list (none is held out).
        reliability = choose_reliability(lists, "") if config.teacher == "adaptive" else None
        _, count, summary = train_head(lists, pairs, config, Path(args.output),
                                       reliability=reliability)
        # The fusion rule's reliability, and the fixed weight used where no agreement can be
        # measured, as the fusion step chose them on every list; and the groupings it averaged
        # the head's scores over (its --repeats), as the job's default.
        fusion = work / "fusion.json"
        saved = json.loads(fusion.read_text()) if fusion.is_file() else {}
        chosen = saved.get("chosen", {}).get("ship", {})
        _set_config(Path(args.output), **rule_config(chosen.get("rule")),
                    fusion_weight=chosen.get("fixed_weight", config.fusion_weight),
                    repeats=saved.get("repeats", 1))
        figures = {"config": asdict(config), "reliability": reliability, "samples": count,
                   "fusion_rule": chosen.get("rule"), "summary": summary}
        print(json.dumps(figures, indent=1))
    else:
        if args.config != "auto":  # every fold's head of this config, whatever loo selected
            selected = {held: args.config for held in RUNS}
        elif "old" in args.models.split(",") and not (work / "loo.json").exists():
            selected = {held: "" for held in RUNS}
        else:
            selected = json.loads((work / "loo.json").read_text())["selected"]
        figures = run_jobs(work, selected, set(args.models.split(",")),
                           set(filter(None, args.lists.split(","))))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    if args.step in ("loo", "fusion"):
        (work / f"{args.step}.json").write_text(json.dumps(figures, indent=1) + "\n")
    return 0


def head_cost(work: Path, baseline: str, repeats: int = 3) -> dict:
    """Documents per second of the shipped default's head and ``baseline``'s on Vaswani's BM25
    lists, vectors given (the encoder, the same for both, is left out), runs alternating."""
    from grouprank.models import shipped_default_dir

    item = Lists(work, "vaswani", "bm25")
    heads = {"baseline": load_head(baseline), "default": load_head(shipped_default_dir())}
    rates: dict = {name: [] for name in heads}
    for _ in range(repeats):
        for name, head in heads.items():
            started = time.perf_counter()
            item.scores(head, head.config.fusion_weight)
            rates[name].append(len(item.frame) / (time.perf_counter() - started))
    return {name: {"min": min(v), "median": float(np.median(v)), "max": max(v)}
            for name, v in rates.items()}


def run_jobs(work: Path, selected: dict, models: set[str], lists: set[str]) -> dict:
    """The real rerank and evaluate jobs on each held-out table: old default vs held-out head
    (``models``: "old", "heldout"), on the ``lists`` named like "dl19/splade" (all if empty)."""
    from grouprank.settings import RerankSettings
    from jobs.stages import evaluate as evaluate_job
    from jobs.stages import rerank as rerank_job

    tables, figures = work / "tables", {}
    saved = work / "fusion.json"  # the last fusion step's choices
    fusion = json.loads(saved.read_text()) if saved.is_file() else {}
    for held, config in selected.items():
        if held not in RUNS:
            continue
        for run in RUNS[held]:
            if lists and f"{held}/{run}" not in lists:
                continue
            head, choice, repeats = work / "checkpoints" / held / config, None, 1
            if fusion.get("config") == config and held in fusion.get("chosen", {}):
                # The fold's fusion rule and fallback weight, as the fusion step chose them on
                # the other collections, written into a copy: the head as it would ship; and
                # the groupings the fusion step averaged it over (--repeats).
                chosen = fusion["chosen"][held]
                fields = {**rule_config(chosen["rule"]), "fusion_weight": chosen["fixed_weight"]}
                repeats = fusion.get("repeats", 1)
                choice = {**fields, "repeats": repeats}
                copy = work / "heads" / held / config
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(head, copy)
                _set_config(copy, **fields)
                head = copy
            for label, model in (("old default", "default"), ("held-out head", str(head))):
                if (label == "old default") != ("old" in models) and len(models) == 1:
                    continue
                slug = f"{held}-{run}-{label.replace(' ', '-')}"
                output = str(work / "reranked" / slug)
                record = work / "jobs" / f"{slug}.json"
                fusion_choice = choice if model != "default" else None
                if record.is_file():  # measured by an earlier run of this step, same head?
                    entry = json.loads(record.read_text())
                    same = config if model != "default" else None
                    if entry.get("fusion_choice") == fusion_choice and entry.get("config") == same:
                        figures.setdefault(f"{held}/{run}", {})[label] = entry
                        continue
                started = time.time()
                summary = rerank_job.run(
                    rerank_job.RerankJob(str(tables / f"{held}-{run}"), output, JOB_DATE,
                                         embedding_store=str(work / "embedding-store")),
                    RerankSettings(model=model, repeats=repeats if model != "default" else 1),
                )
                seconds = time.time() - started
                metrics = evaluate_job.run(evaluate_job.EvaluateJob(
                    output, str(tables / f"{held}-qrels"), str(work / "metrics"), JOB_DATE,
                    name=slug, metrics="ndcg@10"))
                value = next(iter(metrics["means"].values()))
                figures.setdefault(f"{held}/{run}", {})[label] = entry = {
                    "ndcg@10": value, "queries": metrics["num_queries"],
                    "rerank_s": round(seconds, 1), "config": config if model != "default" else None,
                    "fusion_choice": fusion_choice,
                    "rerank_summary": summary,
                }
                record.parent.mkdir(parents=True, exist_ok=True)
                record.write_text(json.dumps(entry, indent=1) + "\n")
                print(f"{held} {run} {label}: nDCG@10 {value:.4f} ({seconds:.0f} s)", flush=True)
    return figures


if __name__ == "__main__":
    sys.exit(main())

"""Is a held-out head's job figure off its bench figure by the draw of groups, or by the job?

    PYTHONPATH=bench .venv/bin/python bench/job_groups.py --work out/heldout --list cacm/bm25 \
        --head out/heldout/heads/cacm/late4-aug --weight 0.9939 --draws 6

Reads the job's output of ``heldout_eval.py jobs`` for the list (the latest Delta version of
``reranked/<list>-held-out-head``), scores the list in the bench's process with the *job's*
groups (each row's ``repeat_groups[0]``) and prints the largest difference from the job's model
scores and the nDCG@10 that gives at ``--weight`` (the job summary's fusion weight), then the
bench's nDCG@10 over ``--draws`` of its own random groups.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path
from urllib.parse import unquote

import heldout_eval as H
import numpy as np
import pandas as pd
import torch

from grouprank.backends.group_encoder import expected_scores, load_head, pad_groups


def delta_frame(path: Path) -> pd.DataFrame:
    """The files of a local Delta table's latest version, read with pandas."""
    files: set[str] = set()
    for log in sorted(glob.glob(f"{path}/_delta_log/*.json")):
        for line in open(log):
            action = json.loads(line)
            if "add" in action:
                files.add(action["add"]["path"])
            if "remove" in action:
                files.discard(action["remove"]["path"])
    return pd.concat([pd.read_parquet(path / unquote(p)) for p in sorted(files)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="out/heldout")
    parser.add_argument("--list", default="cacm/bm25")
    parser.add_argument("--head", required=True)
    parser.add_argument("--weight", type=float, required=True)
    parser.add_argument("--draws", type=int, default=6)
    args = parser.parse_args()
    work, (name, run) = Path(args.work), args.list.split("/")
    item = H.load_lists(work)[name, run]  # vectors and MaxSim from the bench's caches
    head = load_head(args.head)
    f = item.frame
    job = delta_frame(work / "reranked" / f"{name}-{run}-held-out-head")
    row = {(str(q), str(d)): i for i, (q, d) in enumerate(zip(f.qid, f.docid))}
    scores, worst = np.zeros(len(f)), 0.0
    for (qid, _), part in job.groupby(["qid", job.repeat_groups.str[0]]):
        idx = np.array([row[str(qid), str(d)] for d in part.docid])
        batch = pad_groups(item.queries[idx[0]][None], [item.docs[idx]],
                           [f["score"].values[idx].tolist()],
                           [f["rank_fs"].values[idx].astype(int).tolist()])
        top = head.config.context_top
        context = (torch.from_numpy(item.context(item.by_query[qid], top))[None] if top else None)
        late = (torch.from_numpy(f["late"].values[idx].astype(np.float32))[None]
                if head.config.late_interaction else None)
        with torch.no_grad():
            model = expected_scores(head(*batch, context=context, late=late))[0].numpy()
        scores[idx] = model
        worst = max(worst, float(np.abs(model - part.model_score.to_numpy()).max()))
    fused = args.weight * scores / 10 + (1 - args.weight) * H.first_stage_prior(f).values
    print(json.dumps({
        "max_model_score_difference": worst,
        "ndcg@10_with_the_jobs_groups": item.ndcg(fused),
        "ndcg@10_bench_draws": [item.ndcg(item.scores(head, args.weight, seed=s))
                                for s in range(args.draws)],
    }, indent=1))


if __name__ == "__main__":
    main()

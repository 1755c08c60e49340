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

from grouprank.backends.group_encoder import load_head


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
    return pd.concat([pd.read_parquet(path / unquote(p)) for p in sorted(files)],
                     ignore_index=True)


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
    rows = np.array([row[str(q), str(d)] for q, d in zip(job.qid, job.docid)])
    groups: dict = {}
    for (qid, _), part in job.groupby(["qid", job.repeat_groups.str[0]]):
        groups.setdefault(f.qid.values[rows[part.index[0]]], []).append(rows[part.index])
    model = 10 * item.scores(head, 1.0, groups=groups)  # the head alone, on the 0-10 scale
    worst = float(np.abs(model[rows] - job.model_score.to_numpy()).max())
    fused = item.scores(head, args.weight, groups=groups)
    print(json.dumps({
        "max_model_score_difference": worst,
        "ndcg@10_with_the_jobs_groups": item.ndcg(fused),
        "ndcg@10_bench_draws": [item.ndcg(item.scores(head, args.weight, seed=s))
                                for s in range(args.draws)],
    }, indent=1))


if __name__ == "__main__":
    main()

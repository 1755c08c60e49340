"""What the Databricks notebooks share: widgets named like the job flags, and showing tables and
plots.

A notebook declares one text widget per job flag (same name, same default as the command line,
both from the stage registry), turns the widget values into the job's argument list and calls
``jobs.stages.main`` - exactly what ``grouprank <job>`` runs. Without ``dbutils`` (a local run) the defaults are used.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pandas as pd


def _dbutils():
    try:
        from pyspark.dbutils import DBUtils  # only on Databricks runtimes

        from jobs.session import get_session

        return DBUtils(get_session())
    except ImportError:
        return None


@dataclasses.dataclass(frozen=True)
class JobArguments:
    """The job's command-line arguments and the widget values they came from."""

    argv: list[str]
    values: dict[str, str]


def job_arguments(
    stage: str, defaults: dict[str, Any] | None = None, fixed: dict[str, str] | None = None
) -> JobArguments:
    """Widgets for every field of the stage's config dataclasses (from the registry,
    ``jobs.stages``), read back as the stage's arguments.

    ``defaults`` fills the fields the command line requires (paths), so the notebook also runs
    as it is outside Databricks. ``fixed`` sets flags without a widget, for values the notebook
    derives (a walkthrough's table paths under one work directory). Databricks shares a widget
    between calls that name it, so flags two jobs have in common (``run_date``) are one widget.

    Example:
        >>> job_arguments("rerank", defaults={"candidates": "c"}).argv[:2]
        ['--candidates', 'c']
    """
    from jobs.stages import config_classes

    defaults, fixed = defaults or {}, fixed or {}
    argv: list[str] = []
    values: dict[str, str] = {}
    for config in config_classes(stage):
        hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            boolean = hints[field.name] is bool
            if field.name in fixed:
                text = fixed[field.name]
            else:
                default = defaults.get(field.name, field.default)
                if default is dataclasses.MISSING:
                    default = ""
                text = widget(field.name, "" if default is None
                              else str(default).lower() if boolean else str(default))
            values[field.name] = text
            argv += _flag(field.name, text, boolean)
    return JobArguments(argv, values)


def widget(name: str, default: str) -> str:
    """A text widget's value on Databricks (declared with ``default`` if new), else ``default``."""
    dbutils = _dbutils()
    if dbutils is None:
        return default
    dbutils.widgets.text(name, default)
    return dbutils.widgets.get(name)


def _flag(name: str, value: str, boolean: bool) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if boolean:
        return [flag] if value.strip().lower() in ("true", "1", "yes") else ["--no-" + flag[2:]]
    return [flag, value] if value != "" else []


def show(df, rows: int = 20) -> None:
    """The notebook's ``display`` on Databricks, ``DataFrame.show`` elsewhere."""
    display = _display()
    if display is not None:
        display(df)
    else:
        df.show(rows, truncate=60)


def show_figure(figure, path: str) -> None:
    """Shows a matplotlib figure with ``display`` on Databricks; elsewhere saves it to ``path``
    (a local file) and prints where."""
    display = _display()
    if display is not None:
        display(figure)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    print(f"figure saved to {path}")


def metrics_figure(means: pd.DataFrame, title: str = ""):
    """A bar chart of metric means, one bar per run name for each metric.

    ``means`` has the metrics table's ``name``, ``metric`` and ``value`` columns (the qid ``all``
    rows). Needs matplotlib (in the ``test`` and ``bench`` extras; on Databricks ML runtimes).

    Example:
        >>> frame = pd.DataFrame({"name": ["bm25", "reranked"], "metric": ["nDCG@10"] * 2,
        ...                       "value": [0.5, 0.7]})
        >>> len(metrics_figure(frame).axes[0].patches)
        2
    """
    table = means.pivot(index="metric", columns="name", values="value").sort_index()
    names = list(table.columns)
    width = 0.8 / max(len(names), 1)
    figure, axes = _figure()
    for i, name in enumerate(names):
        axes.bar([x + i * width for x in range(len(table))], table[name], width, label=name)
    axes.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(table))], table.index)
    axes.set_ylim(0, 1)
    axes.set_ylabel("mean over queries")
    axes.set_title(title)
    axes.legend()
    return figure


def reliability_figure(calibration: pd.DataFrame, bins: int, title: str = ""):
    """A reliability diagram of evaluate's calibration rows: per model-score bin, the share of
    relevant documents (bars, labelled with the documents behind them) against the diagonal a
    calibrated score would follow (score / 10).

    ``calibration`` has the metrics table's ``metric`` and ``value`` columns for one run's qid
    ``all`` rows; ``bins`` is the evaluate job's ``--calibration-bins``.

    Example:
        >>> frame = pd.DataFrame({"metric": ["Calibration@bin0", "Documents@bin0", "ECE"],
        ...                       "value": [0.1, 40.0, 0.05]})
        >>> len(reliability_figure(frame, 2).axes[0].patches)
        1
    """
    values = dict(zip(calibration["metric"], calibration["value"]))
    shown = sorted(int(m.split("@bin")[1]) for m in values if m.startswith("Calibration@bin"))
    width = 10.0 / bins
    figure, axes = _figure()
    bars = axes.bar([(b + 0.5) * width for b in shown],
                    [values[f"Calibration@bin{b}"] for b in shown], width * 0.9,
                    label="share relevant")
    axes.bar_label(bars, [f"{values.get(f'Documents@bin{b}', 0):.0f}" for b in shown],
                   fontsize=7)
    axes.plot([0, 10], [0, 1], linestyle="--", color="grey", label="calibrated (score / 10)")
    axes.set_xlim(0, 10)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("model score bin (documents above each bar)")
    axes.set_ylabel("share of relevant documents")
    ece = values.get("ECE")
    axes.set_title(f"{title} ECE {ece:.3f}" if ece is not None else title)
    axes.legend(loc="upper left")
    return figure


def training_curve(output: str | Path) -> pd.DataFrame:
    """The per-step curve in a train-sft or train-rl output's ``training_summary.json``, either
    backbone: columns ``step`` and ``loss`` (SFT) or ``step`` and ``reward`` (RL, the mean over
    each step's rollouts).

    Example:
        >>> training_curve("ckpt/sft").columns.tolist()  # doctest: +SKIP
        ['step', 'loss']
    """
    from grouprank.training.group_encoder import SUMMARY_FILE

    summary = json.loads((Path(output) / SUMMARY_FILE).read_text())
    value = "loss" if summary["stage"] == "sft" else "reward"
    # The group encoder records every step under "curve"; the LLM trainer keeps TRL's logged
    # steps under "losses" and "rewards".
    points = summary.get("curve") or summary.get("losses" if value == "loss" else "rewards", [])
    return pd.DataFrame([(p["step"], p[value]) for p in points], columns=["step", value])


def curve_figure(curve: pd.DataFrame, title: str = ""):
    """A line plot of a ``training_curve``: its value column against ``step``.

    Example:
        >>> curve = pd.DataFrame({"step": [1, 2, 3], "loss": [2.0, 1.5, 1.2]})
        >>> curve_figure(curve).axes[0].get_ylabel()
        'loss'
    """
    value = curve.columns[1]
    figure, axes = _figure()
    axes.plot(curve["step"], curve[value], marker="." if len(curve) < 50 else None)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("step")
    axes.set_ylabel(value)
    axes.set_title(title)
    return figure


def _figure():
    """A new matplotlib figure and its axes (matplotlib: ``test`` and ``bench`` extras, and
    Databricks ML runtimes)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("the notebook plots need matplotlib: pip install matplotlib") from err
    figure = Figure(figsize=(7, 3.5))
    return figure, figure.subplots()


def _display():
    """The notebook's ``display`` function when running on Databricks, else None."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    display = shell.user_ns.get("display") if shell is not None else None
    return display if display is not None and _dbutils() is not None else None

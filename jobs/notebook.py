"""What the Databricks notebooks share: widgets named like the job flags, and showing a table.

A notebook declares one text widget per job flag (same name, same default as the command line),
turns the widget values into the job's argument list and calls the job's ``main`` - exactly what
``grouprank <job>`` runs. Without ``dbutils`` (a local run) the defaults are used.
"""

from __future__ import annotations

import dataclasses
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
    *configs: type, defaults: dict[str, Any] | None = None, fixed: dict[str, str] | None = None
) -> JobArguments:
    """Widgets for every field of the job's config dataclasses, read back as job arguments.

    ``defaults`` fills the fields the command line requires (paths), so the notebook also runs
    as it is outside Databricks. ``fixed`` sets flags without a widget, for values the notebook
    derives (a walkthrough's table paths under one work directory). Databricks shares a widget
    between calls that name it, so flags two jobs have in common (``run_date``) are one widget.

    Example:
        >>> job_arguments(RerankJob, RerankSettings, defaults={"candidates": "c"}).argv[:2]
        ['--candidates', 'c']
    """
    defaults, fixed = defaults or {}, fixed or {}
    argv: list[str] = []
    values: dict[str, str] = {}
    for config in configs:
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
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("the metrics plot needs matplotlib: pip install matplotlib") from err
    table = means.pivot(index="metric", columns="name", values="value").sort_index()
    names = list(table.columns)
    width = 0.8 / max(len(names), 1)
    figure = Figure(figsize=(7, 3.5))
    axes = figure.subplots()
    for i, name in enumerate(names):
        axes.bar([x + i * width for x in range(len(table))], table[name], width, label=name)
    axes.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(table))], table.index)
    axes.set_ylim(0, 1)
    axes.set_ylabel("mean over queries")
    axes.set_title(title)
    axes.legend()
    return figure


def _display():
    """The notebook's ``display`` function when running on Databricks, else None."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    display = shell.user_ns.get("display") if shell is not None else None
    return display if display is not None and _dbutils() is not None else None

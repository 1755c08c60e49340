"""What the Databricks notebooks share: widgets named like the job flags, and showing a table.

A notebook declares one text widget per job flag (same name, same default as the command line),
turns the widget values into the job's argument list and calls the job's ``main`` - exactly what
``grouprank <job>`` runs. Without ``dbutils`` (a local run) the defaults are used.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


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


def job_arguments(*configs: type, defaults: dict[str, Any] | None = None) -> JobArguments:
    """Widgets for every field of the job's config dataclasses, read back as job arguments.

    ``defaults`` fills the fields the command line requires (paths), so the notebook also runs
    as it is outside Databricks.

    Example:
        >>> job_arguments(RerankJob, RerankSettings, defaults={"candidates": "c"}).argv[:2]
        ['--candidates', 'c']
    """
    dbutils = _dbutils()
    defaults = defaults or {}
    argv: list[str] = []
    values: dict[str, str] = {}
    for config in configs:
        hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            default = defaults.get(field.name, field.default)
            if default is dataclasses.MISSING:
                default = ""
            text = "" if default is None else str(default).lower() if hints[field.name] is bool else str(default)
            if dbutils is not None:
                dbutils.widgets.text(field.name, text)
                text = dbutils.widgets.get(field.name)
            values[field.name] = text
            argv += _flag(field.name, text, hints[field.name] is bool)
    return JobArguments(argv, values)


def _flag(name: str, value: str, boolean: bool) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if boolean:
        return [flag] if value.strip().lower() in ("true", "1", "yes") else ["--no-" + flag[2:]]
    return [flag, value] if value != "" else []


def show(df, rows: int = 20) -> None:
    """The notebook's ``display`` on Databricks, ``DataFrame.show`` elsewhere."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    display = shell.user_ns.get("display") if shell is not None else None
    if display is not None and _dbutils() is not None:
        display(df)
    else:
        df.show(rows, truncate=60)

"""Getting a SparkSession with Delta Lake, locally or on a cluster.

    grouprank setup    # the Delta jars into the jar cache once, then a check (stages/setup.py)

A plain Python process (``grouprank rerank``, a test, a local notebook) launches its own JVM: it
gets Delta's jars from the jar cache (``$GROUPRANK_CACHE/jars/<delta artifact>/``, filled once
by ``grouprank setup``; Ivy never runs in a job) through ``spark.jars``, Spark's log at WARN from
the JVM's first line (INFO with ``--verbose``), and Spark's console progress bar when a person is
watching (stderr is a terminal and ``CI`` is unset). Where the JVM belongs to someone else no
jar, JVM option or local setting is added: under spark-submit (its own ``--packages``/
``--jars``) and on Databricks only Delta's two SQL settings when they are missing, as before;
under Spark Connect (``SPARK_REMOTE``) nothing at all.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

_DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# Small-machine settings for local runs only; clusters keep their own.
_LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "8",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "4g",
}
# Expressions evaluated by Spark's interpreter instead of compiled to Java (whole-stage and
# per-expression code generation off), for sessions whose tables are tiny: the demo's 19 rows,
# the tests' inline tables. Compiling (Janino, then the JIT) costs tens of milliseconds per plan
# and literal (a path, a date, a digest), which a small table never earns back: on this 2-core
# machine a warm 3-row rerank job took 7.3 s against 14.4 s, a first one in a new session 19.0 s
# against 35.2 s (docs/BENCHMARKS.md, "Interpreted expressions"). The results are the same;
# only the evaluation strategy differs. Never for real tables: per row, compiled code is faster.
# (``factoryMode`` is Spark's own switch for running its suites without code generation.)
INTERPRETED_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
# For the same tiny tables, also one shuffle partition and no adaptive execution: adaptive
# execution runs each query as a Spark job per shuffle and plans again between them (a warm
# 24-row rerank: 48 jobs and 149 stages with it, 22 and 78 without), which a few rows never earn
# back (docs/BENCHMARKS.md, stop 43). The demo's session and the tests' shared one; never for real
# tables.
TINY_TABLE_CONF = {
    **INTERPRETED_CONF,
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.shuffle.partitions": "1",
    # PySpark records the Python call site of every DataFrame and Column call for Spark's error
    # messages (a JVM round trip and a stack walk each): building a 24-row rerank job's plan took
    # a median 1.00-1.16 s without it against 1.40-1.56 s with it (bench/plan_build.py,
    # docs/BENCHMARKS.md, stop 44). Spark's errors then lack only that Python file and line.
    "spark.python.sql.dataFrameDebugging.enabled": "false",
}
# The list of jars in a filled cache folder, one file name a line; written last, so a folder
# without it is an interrupted fill.
_MANIFEST = "jars.txt"
_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d[^-]*(?:-.+)?)\.jar$")
# Spark's own defaults (log4j2-defaults.properties) at a chosen root level, plus the warnings a
# local run always prints and nobody can act on.
_LOG4J2 = """\
rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n%ex
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.plans.name = org.apache.spark.util.SparkStringUtils
logger.plans.level = error
logger.nativeio.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativeio.level = error
logger.hostname.name = org.apache.spark.util.Utils
logger.hostname.level = error
logger.parquet.name = org.apache.parquet.CorruptStatistics
logger.parquet.level = error
logger.metastore.name = org.apache.hadoop.hive.metastore.RetryingHMSHandler
logger.metastore.level = fatal
"""


class DeltaJarsMissing(RuntimeError):
    """The jar cache has not been filled (``grouprank setup``)."""


def delta_package() -> str:
    """The Maven coordinate of the Delta jar matching the installed pyspark and delta-spark.

    Example:
        >>> delta_package()  # doctest: +SKIP
        'io.delta:delta-spark_4.2_2.13:4.4.0'
    """
    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{importlib.metadata.version('delta-spark')}"


def jar_cache_dir() -> Path:
    """Where the Delta jars for this pyspark/delta-spark pair live: one folder per artifact."""
    from grouprank.models import cache_dir

    _, artifact, version = delta_package().split(":")
    return cache_dir() / "jars" / f"{artifact}-{version}"


def cached_jars() -> list[Path]:
    """The jars a local session passes with ``spark.jars``; ``DeltaJarsMissing`` when unfilled."""
    folder = jar_cache_dir()
    manifest = folder / _MANIFEST
    jars = [folder / name for name in manifest.read_text().split()] if manifest.is_file() else []
    if not jars or not all(jar.is_file() for jar in jars):
        raise DeltaJarsMissing(
            f"the Delta Lake jars are not in {folder}: run `grouprank setup` "
            "(scripts/install.sh does) once, with access to Maven Central"
        )
    return jars


def get_session(
    app_name: str = "grouprank", master: str | None = None, conf: dict[str, str] | None = None
) -> SparkSession:
    """Returns the active session, or builds one with Delta Lake configured.

    ``conf`` entries are applied last (over the local defaults) when a session is built.

    Example:
        >>> spark = get_session("rerank")  # doctest: +SKIP
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if _is_connect():
        return builder.getOrCreate()
    from pyspark import SparkConf

    overrides, existing = dict(conf or {}), SparkConf()
    settings = {k: v for k, v in _DELTA_CONF.items() if not existing.contains(k)}
    if _jvm_launched_elsewhere():
        for key, value in {**settings, **overrides}.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    if master:
        builder = builder.master(master)
    resolved_master = master or existing.get("spark.master", "local[*]")
    if resolved_master.startswith("local"):
        # Local Python workers must run this interpreter (the project's venv), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        settings.update(_LOCAL_CONF)
    settings["spark.ui.showConsoleProgress"] = "true" if _interactive() else "false"
    settings = {k: v for k, v in settings.items() if not existing.contains(k)}
    settings.update(overrides)
    if not _delta_given(existing, overrides):
        given = overrides.get("spark.jars", existing.get("spark.jars", ""))
        settings["spark.jars"] = ",".join([*map(str, cached_jars()), *filter(None, [given])])
    log_file = _log4j2_file(_spark_log_level())
    java_options = " ".join(filter(None, [f"-Dlog4j2.configurationFile={log_file}",
                                          jvm_archive_options(), quick_jit_options()]))
    key = "spark.driver.extraJavaOptions"
    settings[key] = " ".join(filter(None, [java_options, overrides.get(key, existing.get(key, ""))]))
    for key, value in settings.items():
        builder = builder.config(key, value)
    global _BUILT_LOCAL
    _BUILT_LOCAL = builder.getOrCreate()
    return _BUILT_LOCAL


# The local session this process built (get_session) while no job has run in it yet: its JVM
# and Python workers are new, so that first job may warm a worker while it validates its input.
_BUILT_LOCAL: SparkSession | None = None


def first_job_in_new_local_session(spark: SparkSession) -> bool:
    """True once: for the first job to ask in a local-mode session this process built (new JVM,
    no Python worker yet); False for a session it was handed (a notebook's, spark-submit's,
    Connect) and for every later job."""
    global _BUILT_LOCAL
    fresh = spark is _BUILT_LOCAL and spark.conf.get("spark.master", "").startswith("local")
    _BUILT_LOCAL = None
    return fresh


def jvm_archive() -> Path:
    """The driver JVM's class-data-sharing archive for this Java, pyspark and Delta jar set.

    A Spark session with Delta loads ~20,000 classes; from the archive (written once by
    ``grouprank setup``, ``write_jvm_archive``) the JVM maps them already parsed and verified
    instead of reading them from the jars. The JVM checks the archive itself and ignores one
    that does not match it; the name changes with what it depends on, so a new Java, pyspark or
    Delta, or a reinstalled venv, gets a new archive.
    """
    import pyspark

    from grouprank.models import cache_dir

    home = os.environ.get("JAVA_HOME") or str(Path(shutil.which("java") or "java").resolve())
    # The JVM refuses an archive when a class-path jar is not the file it was written from (a
    # reinstalled venv): the jars' names, sizes and times are part of the name.
    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    stats = [f"{jar}:{jar.stat().st_size}:{jar.stat().st_mtime_ns}" for jar in jars]
    key = "|".join([home, pyspark.__version__, delta_package(), *stats])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "jvm" / f"spark-{pyspark.__version__}-{digest}.jsa"


def jvm_archive_options() -> str:
    """The driver JVM's options to use the class archive, when there is one (else none: a
    missing archive file would turn off the JDK's own sharing too)."""
    if os.environ.get("GROUPRANK_JVM_ARCHIVE", "1") == "0":
        return ""
    path = jvm_archive()
    return f"-XX:SharedArchiveFile={path} -Xlog:cds*=off" if path.is_file() else ""


QUICK_JIT = "-XX:TieredStopAtLevel=1"


def quick_jit_options() -> str:
    """The JVM option that keeps a locally launched driver on the JIT's first tier (C1), when
    ``GROUPRANK_QUICK_JIT=1``; nothing otherwise.

    A JVM that starts, runs one small job and exits spends its life starting up and committing
    to Delta; the second tier's compiler (C2) pays back only on code that stays hot for minutes,
    and until then it takes cores from the job. On this project's 2-core machine a session that
    makes three small Delta commits ran in 18-24 s on C1 against 28-30 s, and the demo 52-64 s
    against 64-72 s; but a session that runs many jobs (the tests' shared session, 22 publish
    tests) took 364 s on C1 against 244 s (docs/BENCHMARKS.md, "The JIT's first tier"). So it is
    opt-in: the demo turns it on for itself, the tests for their one-job processes. Clusters,
    spark-submit and Databricks never get it (their JVMs are not launched here).

    Example:
        >>> os.environ["GROUPRANK_QUICK_JIT"] = "1"
        >>> quick_jit_options()
        '-XX:TieredStopAtLevel=1'
        >>> del os.environ["GROUPRANK_QUICK_JIT"]
    """
    return QUICK_JIT if os.environ.get("GROUPRANK_QUICK_JIT", "0") == "1" else ""


def write_jvm_archive() -> Path:
    """Runs a representative local session (Delta write, MERGE, read, a pandas UDF, a join) in
    a child process whose JVM writes the classes it loaded to ``jvm_archive()`` at exit."""
    target = jvm_archive()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    options = f"-XX:ArchiveClassesAtExit={staging} -Xlog:cds*=off"
    code = (
        "import sys, jobs.session as s; "
        "spark = s.get_session('grouprank-archive', master='local[1]', conf={"
        "'spark.ui.enabled': 'false', 'spark.driver.extraJavaOptions': sys.argv[1]}); "
        "s._archive_workload(spark); spark.stop()"
    )
    result = _child_python(code, options, GROUPRANK_JVM_ARCHIVE="0")
    if result.returncode != 0 or not staging.is_file():
        staging.unlink(missing_ok=True)
        raise RuntimeError(f"writing the JVM class archive failed:\n{result.stderr[-3000:]}")
    os.replace(staging, target)
    # Keep the newest few (one per venv in use), not one ~200 MB file per reinstall.
    archives = sorted(target.parent.glob("spark-*.jsa"), key=lambda f: f.stat().st_mtime)
    for old in archives[:-_ARCHIVES_KEPT]:
        old.unlink(missing_ok=True)
    return target


# Class archives kept in the cache folder (each ~200 MB): the newest.
_ARCHIVES_KEPT = 3


def _archive_workload(spark: SparkSession) -> None:
    """What a job's driver does, in small: the classes the archive should hold."""
    from delta.tables import DeltaTable

    with tempfile.TemporaryDirectory() as tmp:
        path = tmp + "/t"
        rows = spark.range(64).select(
            F.col("id").cast("string").alias("qid"), (F.col("id") % 7).alias("rank"),
            F.array(F.rand(0).cast("float")).alias("vector"), F.current_date().alias("run_date"))
        rows.write.format("delta").partitionBy("run_date").save(path)
        table = DeltaTable.forPath(spark, path)
        table.alias("t").merge(rows.alias("s"), "t.qid = s.qid").whenNotMatchedInsertAll().execute()
        scored = spark.read.format("delta").load(path).mapInPandas(
            lambda batches: batches, rows.schema)
        joined = scored.join(rows.select("qid", F.sha2("qid", 256).alias("d")), "qid")
        joined.groupBy("rank").agg(F.count("*"), F.max("d")).collect()
        rows.write.format("delta").mode("overwrite").option(
            "replaceWhere", "run_date = current_date()").save(path)
        table.history(1).collect()


def _is_connect() -> bool:
    """A Spark Connect client: the server owns its configuration and its jars."""
    return "SPARK_REMOTE" in os.environ or "SPARK_CONNECT_MODE_ENABLED" in os.environ


def _jvm_launched_elsewhere() -> bool:
    """spark-submit launched the JVM (with its own --packages/--jars), or Databricks did."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "DATABRICKS_RUNTIME_VERSION" in os.environ


def _delta_given(existing, overrides: dict[str, str]) -> bool:
    """True when the caller already names Delta's jars (conf, or PYSPARK_SUBMIT_ARGS)."""
    given = " ".join(
        [
            os.environ.get("PYSPARK_SUBMIT_ARGS", ""),
            *(existing.get(key, "") or "" for key in ("spark.jars", "spark.jars.packages")),
            *(overrides.get(key, "") for key in ("spark.jars", "spark.jars.packages")),
        ]
    )
    return "delta-spark" in given


def _interactive() -> bool:
    """A person is watching: stderr is a terminal and this is not a CI run."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def _spark_log_level() -> str:
    """Spark follows the project's loggers: INFO when they are at DEBUG (``--verbose``)."""
    return "info" if logging.getLogger("jobs").isEnabledFor(logging.DEBUG) else "warn"


def _log4j2_file(level: str) -> Path:
    """The JVM's log configuration at ``level``, written once (atomically: jobs start at once)."""
    from grouprank.models import cache_dir

    path = cache_dir() / f"log4j2-{level}.properties"
    text = _LOG4J2.format(level=level)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
            tmp.write(text)
        os.replace(tmp.name, path)
    return path


def _artifact(jar: str, ivy: bool = False) -> str:
    """The artifact name of a jar file: pyspark's are ``artifact-version.jar``, Ivy's
    ``organisation_artifact-version.jar``.

    Example:
        >>> _artifact("zstd-jni-1.5.7-7.jar"), _artifact("com.github.luben_zstd-jni-1.5.7-3.jar", ivy=True)
        ('zstd-jni', 'zstd-jni')
    """
    match = _JAR_NAME.match(jar)
    name = match.group("artifact") if match else jar
    return name.split("_", 1)[1] if ivy else name


def _version(jar: str) -> tuple[int, ...]:
    """The numbers of a jar's version, for ordering: ``x-1.5.7-3.jar`` -> (1, 5, 7, 3)."""
    match = _JAR_NAME.match(jar)
    return tuple(int(n) for n in re.findall(r"\d+", match.group("version"))) if match else ()


def _classes(jar: Path) -> set[str]:
    with zipfile.ZipFile(jar) as archive:
        return {n for n in archive.namelist() if n.endswith(".class")}


def _needed_jars(resolved: list[Path]) -> list[Path]:
    """The resolved jars pyspark does not ship already.

    Jars given with ``spark.jars`` load in a child of the class loader that holds pyspark's own
    jars, and a parent is asked first: a second copy of an artifact pyspark ships (an older
    hadoop-client, parquet, jackson, log4j) is never used, whatever its version, and so is a jar
    whose every class pyspark has (RoaringBitmap's shims, merged into RoaringBitmap 1.x).
    """
    import pyspark

    shipped = sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    by_artifact = {_artifact(jar.name): jar for jar in shipped}
    shipped_classes: set[str] = set().union(*(_classes(jar) for jar in shipped))
    needed = []
    for jar in resolved:
        twin = by_artifact.get(_artifact(jar.name, ivy=True))
        if twin is not None:
            older = _version(twin.name) < _version(jar.name)
            log.info("not cached: %s (pyspark ships %s%s)", jar.name, twin.name,
                     ", older, and its classes load first either way" if older else "")
        elif _classes(jar) <= shipped_classes:
            log.info("not cached: %s (pyspark ships every class in it)", jar.name)
        else:
            needed.append(jar)
    return needed


def fill_jar_cache() -> Path:
    """Resolves Delta with Spark's Ivy (from Maven Central, through ``~/.ivy2.5.2``) in a child
    process and copies the jars pyspark lacks into ``jar_cache_dir()``; returns the folder."""
    code = (
        "from pyspark.sql import SparkSession; import jobs.session as s; "
        "spark = SparkSession.builder.master('local[1]')"
        ".config('spark.jars.packages', s.delta_package()).getOrCreate(); "
        "print('JARS=' + spark.sparkContext.getConf().get('spark.jars')); spark.stop()"
    )
    result = _child_python(code)
    line = next((l for l in result.stdout.splitlines() if l.startswith("JARS=")), None)
    if result.returncode != 0 or line is None:
        raise DeltaJarsMissing(
            f"resolving {delta_package()} with Ivy failed:\n{result.stderr[-3000:]}"
        )
    resolved = [Path(uri.removeprefix("file:")) for uri in line[len("JARS="):].split(",") if uri]
    folder = jar_cache_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".filling-", dir=folder.parent))
    needed = _needed_jars(resolved)
    for jar in needed:
        shutil.copy2(jar, staging / jar.name)
    (staging / _MANIFEST).write_text("".join(f"{jar.name}\n" for jar in needed))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return folder


def _child_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a child of this interpreter that launches its own local JVM: no
    spark-submit arguments of ours, ``env`` added; output captured, never raises."""
    child_env = {k: v for k, v in os.environ.items() if k != "PYSPARK_SUBMIT_ARGS"}
    child_env.update(env)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=child_env, check=False)


def check_delta(spark: SparkSession) -> None:
    """Writes and reads back a one-row Delta table, so a jar the cache lacks shows here."""
    with tempfile.TemporaryDirectory() as tmp:
        spark.range(1).write.format("delta").save(tmp + "/t")
        if spark.read.format("delta").load(tmp + "/t").count() != 1:
            raise RuntimeError("a Delta table written from the jar cache did not read back")


def default_parallelism(spark) -> int:
    """Spark's default parallelism, also over Spark Connect, which has no SparkContext.

    Example:
        >>> default_parallelism(get_session())  # doctest: +SKIP
        2
    """
    value = spark.conf.get("spark.default.parallelism", None)
    if value:
        return int(value)
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect (PySparkAttributeError), or a cluster that hides it
        # A range given no partition count is split into the server's leaf-node parallelism
        # (spark.sql.leafNodeDefaultParallelism, else its default parallelism); a million rows
        # leave no split empty. One tiny query: 0.4 s on a warm local server.
        ids = spark.range(1 << 20).select(F.spark_partition_id().alias("p"))
        return int(ids.agg(F.max("p")).first()[0]) + 1


# Rows (or texts) a task should have before a job splits its model work further: each task's
# Python worker loads the model (for the shipped encoder: torch's import and MiniLM, 3-10 s on a
# small CPU), which costs more than encoding a few hundred texts.
ROWS_PER_MODEL_TASK = 1000


def model_partitions(spark, rows: int) -> int:
    """Partitions for ``rows`` rows of model work: one per ``ROWS_PER_MODEL_TASK`` rows, at most
    one per core (``default_parallelism``), at least one. A small table then loads the model in
    one worker instead of in every core's.

    Example:
        >>> [model_partitions(get_session(), n) for n in (19, 1500, 10**6)]  # doctest: +SKIP
        [1, 2, 2]
    """
    wanted = math.ceil(max(rows, 1) / ROWS_PER_MODEL_TASK)
    return max(1, min(default_parallelism(spark), wanted))

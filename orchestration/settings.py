"""The one configuration object: every THREAD_* variable is read here, and every path derived here.

Nothing reads the environment at import time. Dagster resolves the `dg.EnvVar` fields when a run
starts (the UI shows the variable's name, never its value); the optional tuning knobs fall back
to their variable, then to a default, when they are read during a run. The `thread` command calls
`configure()` once: it fills in the defaults for itself and the processes it starts; the commands
that run Dagster create its home with `dagster_home()`.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import field_validator

from . import lake, paths
from .lake import validated_limit

DEFAULT_DBT_THREADS = 2
# dbt's --log-level-file values.
DBT_LOG_LEVELS = ("debug", "info", "warn", "error", "none")
# The engines dbt builds the thread on: embedded DuckDB, or Apache Spark (dbt-spark, session).
ENGINES = ("duckdb", "spark")

DAGSTER_YAML_HEADER = "# Written by `thread`"

DAGSTER_YAML = DAGSTER_YAML_HEADER + """; Dagster's runs, events and schedules live {where}.
telemetry:
  enabled: false
# No first-visit pop-up over the asset graph in a fresh home.
nux:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    # Launch queued runs within a second: a change should reach the twins in under a minute.
    dequeue_interval_seconds: 1
    dequeue_use_threads: true
# Sensors evaluated side by side, each as soon as its interval is up (orchestration/services.py:
# one after the other, a sensor's tick started up to 0.7 s into the loop and often missed the next).
sensors:
  use_threads: true
  num_workers: 4
# Runs that write take the writer lock (resources.WriterLock) for their whole duration, so they
# serialize with each other and with `thread build`; a killed run's lock dies with its process.
concurrency:
  runs:
    max_concurrent_runs: 3
"""

# A team's instance: every webserver, daemon, run and Celery worker shares it, on any machine.
DAGSTER_YAML_POSTGRES = """\
storage:
  postgres:
    postgres_url:
      env: THREAD_DAGSTER_PG_URL
"""


def sqlalchemy_pg_url(url: str) -> str:
    """A PostgreSQL URL with the driver Dagster's storage needs: its event watcher LISTENs through
    psycopg2, and with psycopg 3 picked by SQLAlchemy `NOTIFY run_events, $1` fails."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgres", "postgresql"):
        raise ValueError(f"THREAD_DAGSTER_PG_URL must be a PostgreSQL URL (postgresql://user@host:5432/db), "
                         f"not {scheme + sep if sep else 'this'}…")
    return f"postgresql+psycopg2://{rest}"


# How the product runs Dagster, in every process that creates runs (`thread build`, `thread
# serve`'s daemon and webserver): a run over a range of unit partitions writes one planned event
# naming the range, not one per partition (Dagster's own switch; 8,368 of them took 89 s with the
# SQLite storage). A failed twin run then leaves its partitions unmarked; its units stay in the
# change set, published as stale, until a run refreshes them. A run's per-partition materializations
# are written in batches where the storage can (PostgreSQL: 1,000 unit partitions in 0.95 s against
# 17.6 s one by one; SQLite writes them one by one either way).
DAGSTER_ENV = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true", "DAGSTER_EVENT_BATCH_SIZE": "500"}


def valid_partition_size(value: int | str) -> int:
    """A twin partition size: 0 (chosen per Dagster instance; also empty or `auto`) or a power of ten."""
    text = str(value).strip().lower()
    number = 0 if text in ("", "auto") else int(text) if text.lstrip("-").isdigit() else None
    if number is None or (number != 0 and (number < 0 or 10 ** (len(str(number)) - 1) != number)):
        raise ValueError(f"THREAD_TWIN_UNITS_PER_PARTITION must be unset, auto, 0, 1, 10, 100, ...: got {value!r}")
    return number


def _one_of(value: str | None, variable: str, choices: tuple[str, ...], default: str | None = None) -> str:
    """A setting naming one of `choices` (any case): the field, else the variable, else the default
    (the first choice)."""
    chosen = (value or os.environ.get(variable) or default or choices[0]).strip().lower()
    if chosen not in choices:
        raise ValueError(f"{variable} must be one of {', '.join(choices)}, not {chosen!r}")
    return chosen


class ThreadSettings(dg.ConfigurableResource):
    """Where the sources are, where everything a run writes goes (all under data_dir), and how
    hard the build may work."""

    sources_dir: str
    data_dir: str
    mes_database_url: str = ""
    # Empty: a secret salt generated once and kept owner-only in <data>/secrets/pii_salt.
    pii_salt: str = ""
    # Consecutive serials per twin partition: 1 (a partition per unit), 10, 100, ... 0 = chosen
    # per Dagster instance: kept as its partitions are, else by fleet size (twins.units_per_partition).
    # None: THREAD_TWIN_UNITS_PER_PARTITION (unset or `auto`: 0), read when used, so a Dagster
    # process started by hand needs no such variable.
    twin_units_per_partition: int | None = None
    # None: THREAD_DUCKDB_MEMORY_LIMIT, else 4GB.
    duckdb_memory_limit: str | None = None
    # None: THREAD_DBT_THREADS, else 2 (dbt models built at once; 1 when memory is the limit).
    dbt_threads: int | None = None
    # None: THREAD_DBT_LOG_LEVEL, else info: what dbt writes to <data>/logs/dbt/dbt.log. `debug`
    # adds every SQL statement dbt sends (half a second more per refresh at 10,000 units).
    dbt_log_level: str | None = None
    # None: THREAD_SNAPSHOT_SHRINK_LIMIT, else 0.5 (a snapshot below half the last one is refused).
    snapshot_shrink_limit: float | None = None
    # None: THREAD_ALLOW_EMPTY_SNAPSHOTS, comma-separated `system.entity` names (or `*`) whose
    # snapshot may be empty although it had rows.
    allow_empty_snapshots: str | None = None
    # None: THREAD_RESTRICTED_GROUP; tables with personal data are owner-only, or for this group.
    restricted_group: str | None = None
    # None: THREAD_RETENTION_DAYS, else 7 (table versions kept by the daily retention).
    retention_days: float | None = None
    # None: THREAD_SHARD_DIGITS, else 3: unit shards of 10**3 consecutive serial numbers.
    shard_digits: int | None = None
    # None: THREAD_BUILD_BATCH_UNITS, else 10,000: a first build (or a rebuild from scratch) builds
    # the sharded models this many units at a time, so that its memory follows a batch, not the fleet.
    build_batch_units: int | None = None
    # None: THREAD_TELEMETRY_SILENCE_HOURS, else 72: a unit whose last reading is older than this
    # (at publish) has health `unknown` and a stale twin; `72,HX200=24` sets a limit per product.
    telemetry_silence_hours: str | None = None
    # None: THREAD_ENGINE, else duckdb. `spark`: dbt builds every model on Apache Spark
    # (THREAD_SPARK_MASTER, else local[2]; or spark://host:7077).
    engine_name: str | None = None
    spark_master: str | None = None
    # Empty: Dagster's instance in SQLite under the data directory (one machine). A PostgreSQL URL:
    # the instance of a team (runs, events, schedules shared by every machine), and the writer
    # lock a PostgreSQL advisory lock instead of a file, so it holds across machines.
    # (None: THREAD_DAGSTER_PG_URL, read when a run starts: its password never shows in the UI.)
    dagster_postgres_url: str | None = None
    # Empty: a run's steps execute in the run's process. A Celery broker URL (redis://host:6379/0):
    # the steps of the runs Dagster launches go to `thread worker` processes, on any machine.
    # (None: THREAD_CELERY_BROKER_URL.)
    celery_broker: str | None = None
    # None: THREAD_LAKE_URI, else <data_dir>/lake. A folder, or an object-store prefix
    # (s3://bucket/prefix; credentials and endpoint from the standard AWS_* variables).
    lake_uri: str | None = None

    @field_validator("twin_units_per_partition")
    @classmethod
    def _valid_partition_size(cls, value: int | None) -> int | None:
        return None if value is None else valid_partition_size(value)

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _valid_limit(cls, value: str | None) -> str | None:
        return None if value is None else validated_limit(value)

    # -- tuning, resolved during a run --------------------------------------------------------------

    @property
    def units_per_partition(self) -> int:
        """Consecutive serials per twin partition; 0: chosen per Dagster instance."""
        if self.twin_units_per_partition is not None:
            return self.twin_units_per_partition
        return valid_partition_size(os.environ.get("THREAD_TWIN_UNITS_PER_PARTITION", ""))

    @property
    def memory_limit(self) -> str:
        return validated_limit(self.duckdb_memory_limit or os.environ.get("THREAD_DUCKDB_MEMORY_LIMIT"))

    @property
    def engine(self) -> str:
        return _one_of(self.engine_name, "THREAD_ENGINE", ENGINES)

    @property
    def spark_master_url(self) -> str:
        return self.spark_master or os.environ.get("THREAD_SPARK_MASTER") or "local[2]"

    @property
    def threads(self) -> int:
        return int(self.dbt_threads or os.environ.get("THREAD_DBT_THREADS") or DEFAULT_DBT_THREADS)

    @property
    def dbt_file_log_level(self) -> str:
        return _one_of(self.dbt_log_level, "THREAD_DBT_LOG_LEVEL", DBT_LOG_LEVELS, default="info")

    @property
    def shard_size_digits(self) -> int:
        return int(self.shard_digits or os.environ.get("THREAD_SHARD_DIGITS") or 3)

    @property
    def units_per_build_batch(self) -> int:
        return int(self.build_batch_units or os.environ.get("THREAD_BUILD_BATCH_UNITS") or 10_000)

    @property
    def retention_hours(self) -> int:
        days = self.retention_days if self.retention_days is not None else float(
            os.environ.get("THREAD_RETENTION_DAYS") or 7)
        return int(days * 24)

    @property
    def telemetry_silence(self):
        from .publish import Silence

        return Silence.parse(self.telemetry_silence_hours or os.environ.get("THREAD_TELEMETRY_SILENCE_HOURS") or "72")

    def guards(self):
        """What an extraction refuses besides broken rows, and how it protects personal data."""
        from .ingest.landing import Guards

        limit = self.snapshot_shrink_limit
        if limit is None:
            limit = float(os.environ.get("THREAD_SNAPSHOT_SHRINK_LIMIT") or 0.5)
        allowed = self.allow_empty_snapshots
        if allowed is None:
            allowed = os.environ.get("THREAD_ALLOW_EMPTY_SNAPSHOTS") or ""
        group = self.restricted_group or os.environ.get("THREAD_RESTRICTED_GROUP") or None
        return Guards(shrink_limit=limit, allow_empty=frozenset(n.strip() for n in allowed.split(",") if n.strip()),
                      restricted_group=group)

    # -- the masking salt -------------------------------------------------------------------------

    @property
    def generated_salt_file(self) -> Path:
        return self.data_root / "secrets" / "pii_salt"

    @property
    def salt_is_generated(self) -> bool:
        return not self.pii_salt

    def salt(self) -> str:
        """THREAD_PII_SALT; without it, a random secret kept owner-only beside the data (never in
        the lake, the warehouse or a log), so that nobody can recompute the masks from a known salt."""
        if self.pii_salt:
            return self.pii_salt
        path = self.generated_salt_file
        if not path.exists():
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            path.parent.chmod(0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip()

    # -- sources ------------------------------------------------------------------------------------

    @property
    def sources_root(self) -> Path:
        return Path(self.sources_dir).resolve()

    @property
    def mes_url(self) -> str:
        return self.mes_database_url or f"sqlite:///{self.sources_root / 'mes' / 'mes.sqlite'}"

    def sources(self):
        from .ingest import Sources

        return Sources(self.sources_root, self.mes_url)

    # -- everything a run writes --------------------------------------------------------------------

    @property
    def data_root(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def lake_dir(self) -> Path:
        """The lake: a local folder (a `Path`), or an object-store prefix (a `UPath`)."""
        uri = self.lake_uri or os.environ.get("THREAD_LAKE_URI")
        if not uri:
            return self.data_root / "lake"
        where = lake.location(uri)
        return where if lake.is_remote(where) else Path(where).resolve()

    @property
    def lake_cache(self) -> Path:
        """Local copies of an object-store lake's current raw files, for DuckDB and Spark (unused
        for a local lake: they read its files in place)."""
        return self.data_root / "build" / "lake_cache"

    @property
    def build_db(self) -> Path:
        # Not named after a schema: DuckDB could not tell the catalog `thread` from the schema.
        return self.data_root / "build" / "build.duckdb"

    @property
    def spark_dir(self) -> Path:
        """Spark's side of the build: its metastore, its warehouse (the models' Parquet tables) and
        `raw/`, each raw Delta table's current files as a Parquet table."""
        return self.data_root / "build" / "spark"

    @property
    def warehouse(self) -> Path:
        return paths.warehouse(self.data_root)

    @property
    def lake_catalog(self) -> Path:
        return paths.lake_catalog(self.data_root)

    @property
    def dbt_target_dir(self) -> Path:
        return self.data_root / "build" / "dbt_target"

    @property
    def dbt_docs_target_dir(self) -> Path:
        return self.data_root / "build" / "dbt_docs_target"

    @property
    def logs_dir(self) -> Path:
        return self.data_root / "logs"

    @property
    def dbt_log_dir(self) -> Path:
        return self.logs_dir / "dbt"

    @property
    def dbt_log_args(self) -> list[str]:
        """Where every dbt invocation of the product logs, and how much."""
        return ["--log-path", str(self.dbt_log_dir), "--log-level-file", self.dbt_file_log_level]

    @property
    def lineage_file(self) -> Path:
        """Where OpenLineage events go when the OpenLineage client is not configured otherwise."""
        return self.logs_dir / "openlineage.jsonl"

    def lineage(self):
        from . import lineage

        return lineage.client(self.lineage_file)

    @property
    def report_dir(self) -> Path:
        return self.data_root / "report"

    @property
    def docs_dir(self) -> Path:
        return self.data_root / "docs"

    @property
    def writer_lock(self) -> Path:
        return self.data_root / ".writer.lock"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.data_root / "dagster_home").resolve()

    @property
    def dagster_pg_url(self) -> str:
        return self.dagster_postgres_url or os.environ.get("THREAD_DAGSTER_PG_URL") or ""

    @property
    def celery_broker_url(self) -> str:
        return self.celery_broker or os.environ.get("THREAD_CELERY_BROKER_URL") or ""

    @property
    def dagster_storage_url(self) -> str:
        return sqlalchemy_pg_url(self.dagster_pg_url) if self.dagster_pg_url else ""

    @property
    def celery_backend_url(self) -> str:
        """Where Celery keeps step results: the broker itself (Redis), since Celery's default RPC
        backend needs an AMQP broker."""
        return self.celery_broker_url

    def dbt_vars(self) -> dict:
        """What dbt's profile takes from us (profiles.yml reads no environment of its own)."""
        out = {"build_db": str(self.build_db), "memory_limit": self.memory_limit,
               "shard_digits": self.shard_size_digits, "units_per_build_batch": self.units_per_build_batch}
        if self.engine == "spark":
            out.update(engine="spark", spark_master=self.spark_master_url, spark_dir=str(self.spark_dir))
        return out

    # -- the process ------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None, sources_dir: str | Path | None = None) -> ThreadSettings:
        """Settings for this process: arguments first, then THREAD_* variables, then defaults."""
        data = paths.data_root(data_dir)
        sources = Path(sources_dir or os.environ.get("THREAD_SOURCES_DIR") or data / "sources").resolve()
        return cls(sources_dir=str(sources), data_dir=str(data),
                   mes_database_url=os.environ.get("MES_DATABASE_URL") or "",
                   pii_salt=os.environ.get("THREAD_PII_SALT") or "",
                   dagster_postgres_url=os.environ.get("THREAD_DAGSTER_PG_URL") or "",
                   celery_broker=os.environ.get("THREAD_CELERY_BROKER_URL") or "",
                   lake_uri=os.environ.get("THREAD_LAKE_URI") or "")

    def export_env(self) -> None:
        """Make these settings what Dagster's `dg.EnvVar`s resolve to, here and in child processes
        (`thread build` in-process, `thread serve`'s webserver and daemon)."""
        os.environ.update({
            "THREAD_DATA_DIR": str(self.data_root), "THREAD_SOURCES_DIR": str(self.sources_root),
            "MES_DATABASE_URL": self.mes_database_url, "THREAD_PII_SALT": self.pii_salt,
            "THREAD_DAGSTER_PG_URL": self.dagster_storage_url,
            "THREAD_CELERY_BROKER_URL": self.celery_broker_url,
            "DAGSTER_HOME": str(self.dagster_home),
        })
        if self.twin_units_per_partition is not None:
            os.environ["THREAD_TWIN_UNITS_PER_PARTITION"] = str(self.twin_units_per_partition)
        for name, value in DAGSTER_ENV.items():
            os.environ.setdefault(name, value)


def settings_resource() -> ThreadSettings:
    """The settings as the code location's resource: resolved from the environment at run start."""
    return ThreadSettings(
        sources_dir=dg.EnvVar("THREAD_SOURCES_DIR"),
        data_dir=dg.EnvVar("THREAD_DATA_DIR"),
        mes_database_url=dg.EnvVar("MES_DATABASE_URL"),
        pii_salt=dg.EnvVar("THREAD_PII_SALT"),
    )


def configure(data_dir: str | Path | None = None, sources_dir: str | Path | None = None) -> ThreadSettings:
    """The `thread` command's settings, exported to the environment (nothing is written: a
    question or a status check must not create directories)."""
    settings = ThreadSettings.from_env(data_dir, sources_dir)
    settings.export_env()
    return settings


def dagster_yaml(settings: ThreadSettings) -> str:
    if settings.dagster_pg_url:
        return DAGSTER_YAML.format(where="in PostgreSQL (THREAD_DAGSTER_PG_URL)") + DAGSTER_YAML_POSTGRES
    return DAGSTER_YAML.format(where="under THREAD_DATA_DIR")


def dagster_home(settings: ThreadSettings) -> Path:
    """The Dagster home the commands that run Dagster use, with the project's instance
    configuration (rewritten when THREAD_DAGSTER_PG_URL comes or goes; a dagster.yaml of your own,
    without our first line, is left alone)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = dagster_yaml(settings)
    if not config.exists() or (config.read_text().startswith(DAGSTER_YAML_HEADER) and config.read_text() != wanted):
        config.write_text(wanted)
    return home

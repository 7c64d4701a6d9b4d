"""OpenLineage events for every step that moves data, so a lineage tool (Marquez, DataHub, a
catalog) can follow a PLM export to a twin table without reading our code.

Each step is one OpenLineage run, a child of the Dagster run that executed it: the extraction of
an export into its raw Delta table, the build database's view of the raw tables, each dbt model
(from dbt's own run results), the twin refresh, and the publish of the warehouse. Events go where
the OpenLineage client is configured to send them (`OPENLINEAGE_URL`, `OPENLINEAGE_CONFIG`,
`OPENLINEAGE__TRANSPORT__*`, `OPENLINEAGE_DISABLED`: the client's own settings); without any, to
one JSON line per event in `$THREAD_DATA_DIR/logs/openlineage.jsonl`. Lineage never stops a run:
an event that cannot be sent is logged and dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

NAMESPACE = "digital-thread"
PRODUCER = "https://github.com/digital-thread/digital-thread"
_CONFIGURED = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED")


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str
    columns: tuple[tuple[str, str], ...] = ()


def file(path: Path | str) -> Dataset:
    """A file or folder on a local disk (OpenLineage naming: namespace `file`, the absolute path)."""
    return Dataset("file", str(Path(path).resolve()))


def sql_table(url: str, table: str) -> Dataset:
    """A table of the database at a SQLAlchemy URL (the password never leaves it)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return Dataset(f"sqlite://{Path(u.database or '').resolve()}", table)
    return Dataset(f"{'postgres' if backend == 'postgresql' else backend}://{u.host}:{u.port or ''}",
                   f"{u.database}.{table}")


def duckdb(database: Path, relation: str) -> Dataset:
    """A relation of a DuckDB file, named as dbt's OpenLineage integration names them."""
    database = Path(database).resolve()
    return Dataset(f"duckdb://{database}", f"{database.stem}.{relation}")


def export(c, src) -> Dataset:
    """The export a contract entity is read from (a file, a folder of files, or an MES table)."""
    if c.medium == "table":
        return sql_table(src.mes_url, c.location)
    path = Path(src.root) / c.location
    return file(path.parent if "*" in c.location else path)


def delta(path: Path, columns: dict[str, str] | None = None) -> Dataset:
    """A Delta table of the lake (its folder), with its columns when known. On an object store,
    named as OpenLineage's naming spec says: namespace `s3://<bucket>`, name the key prefix."""
    from . import lake

    fields = tuple((columns or {}).items())
    if lake.is_remote(path):
        where = lake.location(path)
        bucket, _, key = where.path.partition("/")
        return Dataset(f"{where.protocol}://{bucket}", key, fields)
    return Dataset("file", str(Path(path).resolve()), fields)


@lru_cache(maxsize=8)
def client(default_file: Path):
    from openlineage.client import OpenLineageClient

    configured = any(k in os.environ for k in _CONFIGURED) or any(
        k.startswith("OPENLINEAGE__") for k in os.environ) or any(
        p.exists() for p in (Path.cwd() / "openlineage.yml", Path.home() / ".openlineage" / "openlineage.yml"))
    if configured:
        return OpenLineageClient()
    from openlineage.client.transport.file import FileConfig, FileTransport

    default_file.parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(default_file), append=True)))


@dataclass
class Parent:
    """The Dagster run a step belongs to."""
    run_id: str
    job: str


@dataclass
class Step:
    job: str
    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)
    rows: dict[Dataset, int] = field(default_factory=dict)


def _datasets(kind, items: Iterable[Dataset], rows: dict[Dataset, int] | None = None) -> list:
    from openlineage.client.facet_v2 import output_statistics_output_dataset, schema_dataset

    out = []
    for d in dict.fromkeys(items):  # once each, in order
        facets = {}
        if d.columns:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in d.columns])
        extra = {}
        if rows and d in rows:
            extra["outputFacets"] = {"outputStatistics": output_statistics_output_dataset
                                     .OutputStatisticsOutputDatasetFacet(rowCount=rows[d])}
        out.append(kind(namespace=d.namespace, name=d.name, facets=facets, **extra))
    return out


def emit(lineage_client, state: str, run_id: str, step: Step, parent: Parent | None, when: datetime | None = None,
         error: str | None = None, job_type: str = "STEP") -> None:
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import error_message_run, job_type_job, parent_run

    run_facets = {}
    if parent is not None:
        run_facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent.run_id), job=parent_run.Job(namespace=NAMESPACE, name=parent.job))
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(message=error[:4000],
                                                                            programmingLanguage="python")
    event = RunEvent(
        eventType=RunState[state],
        eventTime=(when or datetime.now(timezone.utc)).isoformat(),
        run=Run(runId=run_id, facets=run_facets),
        job=Job(namespace=NAMESPACE, name=step.job, facets={"jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="DBT" if job_type == "MODEL" else "DAGSTER", jobType=job_type)}),
        inputs=_datasets(InputDataset, step.inputs),
        outputs=_datasets(OutputDataset, step.outputs, step.rows if state == "COMPLETE" else None),
        producer=PRODUCER,
    )
    try:
        lineage_client.emit(event)
    except Exception as e:  # noqa: BLE001 - lineage must never fail the run it describes
        log.warning("OpenLineage event for %s not sent: %s", step.job, e)


def _new_run_id() -> str:
    from openlineage.client.uuid import generate_new_uuid

    return str(generate_new_uuid())


@contextmanager
def step(lineage_client, job: str, parent: Parent | None, inputs: Iterable[Dataset] = (),
         outputs: Iterable[Dataset] = ()) -> Iterator[Step]:
    """One run of `job`: START now, then COMPLETE, or FAIL with the error; the body may add the
    datasets it only learns while working (and the rows it wrote)."""
    current = Step(job, list(inputs), list(outputs))
    run_id = _new_run_id()
    emit(lineage_client, "START", run_id, current, parent)
    try:
        yield current
    except BaseException as e:
        emit(lineage_client, "FAIL", run_id, current, parent, error=f"{type(e).__name__}: {e}")
        raise
    emit(lineage_client, "COMPLETE", run_id, current, parent)


def dbt_models(lineage_client, run_results: Path, manifest: dict, build_db: Path, parent: Parent | None) -> int:
    """One run per model dbt built (from its run_results.json): inputs are the relations the model
    selects from (dbt's `depends_on`), the output its own relation. Returns the events sent."""
    if not run_results.exists():
        return 0
    results = json.loads(run_results.read_text())["results"]
    nodes, sources = manifest["nodes"], manifest["sources"]

    def relation(unique_id: str) -> Dataset | None:
        node = nodes.get(unique_id) or sources.get(unique_id)
        if node is None or node["resource_type"] not in ("model", "source", "seed", "snapshot"):
            return None
        name = node.get("identifier") or node.get("alias") or node["name"]
        return duckdb(build_db, f"{node['schema']}.{name}")

    sent = 0
    for r in results:
        node = nodes.get(r["unique_id"])
        if node is None or node["resource_type"] != "model" or r["status"] not in ("success", "error"):
            continue
        timing = {t["name"]: t for t in r.get("timing", [])}.get("execute", {})
        started = timing.get("started_at")
        done = timing.get("completed_at")
        current = Step(f"dbt.{node['schema']}.{node['name']}",
                       [d for d in map(relation, node["depends_on"]["nodes"]) if d is not None],
                       [duckdb(build_db, f"{node['schema']}.{node.get('alias') or node['name']}")])
        run_id = _new_run_id()
        emit(lineage_client, "START", run_id, current, parent, when=_time(started), job_type="MODEL")
        if r["status"] == "success":
            emit(lineage_client, "COMPLETE", run_id, current, parent, when=_time(done), job_type="MODEL")
        else:
            emit(lineage_client, "FAIL", run_id, current, parent, when=_time(done), error=r.get("message") or "",
                 job_type="MODEL")
        sent += 2
    return sent


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)

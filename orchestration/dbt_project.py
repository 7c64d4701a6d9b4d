"""The dbt project, and its input: schema `raw` of the private build database.

dagster-dbt's `DbtProject` knows where the project and its manifest are and how to prepare them
(`dbt parse`); `thread` prepares it when the manifest is missing or older than the project's
files (`thread serve` before it starts the webserver and daemon). `prepare_build_db` is the first step of
every dbt run: it points dbt's sources at the current version of every raw Delta table.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from .paths import DBT_DIR

DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
PROJECT = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)
MANIFEST = PROJECT.manifest_path


def project_files() -> list[Path]:
    """The files dbt parses the project from."""
    files = [p for d in ("models", "macros", "tests", "analyses") for p in (DBT_DIR / d).rglob("*") if p.is_file()]
    return [*files, DBT_DIR / "dbt_project.yml", DBT_DIR / "profiles.yml"]


def _project_mtime() -> float:
    return max(p.stat().st_mtime for p in project_files())


def dbt_on_path() -> None:
    """dagster-dbt's preparer calls `dbt` by name: make this environment's dbt the one it finds
    (here and in the processes `thread serve` starts)."""
    bin_dir = str(Path(DBT_EXECUTABLE).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def prepare(force: bool = False) -> Path:
    """`dbt parse` through dagster-dbt's preparer when the manifest is missing or stale."""
    dbt_on_path()
    if force or not MANIFEST.exists() or MANIFEST.stat().st_mtime < _project_mtime():
        PROJECT.preparer.prepare(PROJECT)
    return MANIFEST


# The manifest as last parsed in this process, and the file's state then (a publish asks it
# about seven questions, each a parse of 1.2 MB before).
_PARSED: tuple[tuple[int, int], dict] | None = None


def manifest() -> dict:
    """The parsed manifest (read-only: shared by every caller until the file changes). dbt writes
    manifest.json in place, so a process re-parsing the project (`thread` after a model changed,
    another build) can be caught half way: read again shortly."""
    import time

    global _PARSED
    for attempt in range(20):
        stat = MANIFEST.stat()
        state = (stat.st_mtime_ns, stat.st_size)
        if _PARSED is not None and _PARSED[0] == state:
            return _PARSED[1]
        try:
            _PARSED = (state, json.loads(MANIFEST.read_text()))
            return _PARSED[1]
        except json.JSONDecodeError:
            if attempt == 19:
                raise
            time.sleep(0.5)
    return {}


def model_descriptions(schemas: dict[str, str]) -> dict[str, dict[str, str]]:
    """Table and column descriptions of the models in `schemas` (dbt schema -> published schema),
    from the manifest, keyed "<published schema>.<table>"; the table's own under ""."""
    out = {}
    for node in manifest()["nodes"].values():
        if node["resource_type"] == "model" and node["schema"] in schemas:
            cols = {name: c["description"] for name, c in node.get("columns", {}).items() if c.get("description")}
            if node.get("description"):
                cols[""] = node["description"]
            out[f"{schemas[node['schema']]}.{node['name']}"] = cols
    return out


def not_null_columns(schemas: dict[str, str]) -> dict[str, set[str]]:
    """The columns the models in `schemas` guarantee are never null (a not_null test or
    constraint), keyed "<published schema>.<table>" like model_descriptions."""
    nodes = manifest()["nodes"]
    out: dict[str, set[str]] = {}

    def add(node: dict, column: str) -> None:
        if node["resource_type"] == "model" and node["schema"] in schemas:
            out.setdefault(f"{schemas[node['schema']]}.{node['name']}", set()).add(column)

    for node in nodes.values():
        if node["resource_type"] == "test" and node.get("test_metadata", {}).get("name") == "not_null" \
                and node.get("attached_node") in nodes and node.get("column_name"):
            add(nodes[node["attached_node"]], node["column_name"])
        elif node["resource_type"] == "model":
            for name, column in node.get("columns", {}).items():
                if any(c.get("type") == "not_null" for c in column.get("constraints", [])):
                    add(node, name)
    return out


def models(schemas) -> dict[str, list[str]]:
    """The models of each of these dbt schemas."""
    out: dict[str, list[str]] = {}
    for n in manifest()["nodes"].values():
        if n["resource_type"] == "model" and n["schema"] in schemas:
            out.setdefault(n["schema"], []).append(n["name"])
    return out


def tagged(tag: str, schema: str) -> frozenset[str]:
    """The models of a dbt schema that carry a tag (`sharded`: stored per unit shard)."""
    return frozenset(n["name"] for n in manifest()["nodes"].values()
                     if n["resource_type"] == "model" and n["schema"] == schema and tag in n.get("tags", []))


def with_meta(key: str, schema: str | None = None) -> dict[str, str]:
    """The models of a dbt schema (None: of any) that set meta `key`, with its value."""
    return {n["name"]: n["config"]["meta"][key] for n in manifest()["nodes"].values()
            if n["resource_type"] == "model" and schema in (None, n["schema"])
            and n.get("config", {}).get("meta", {}).get(key)}


def shard_aspects(schema: str | None = None) -> dict[str, str]:
    """The sharded models of a dbt schema (None: of any) that belong to a family (meta
    `shard_aspect`): they rebuild, and are republished for, the shards whose digest of what that
    family reads changed (int_shards_digested); the other sharded models, the shards where
    anything changed."""
    return with_meta("shard_aspect", schema)


def eco_columns(schema: str) -> dict[str, str]:
    """The sharded models of a dbt schema that also recompute, for every unit, the rows of the
    ECOs that changed (int_ecos_changed), with the column naming the ECO (meta `eco_column`)."""
    return with_meta("eco_column", schema)


def shard_families() -> set[str]:
    """The families of sharded models (meta `shard_aspect`), in any schema."""
    return set(shard_aspects().values())


def upstream_sources(model: str) -> set[str]:
    """The dbt sources (`mes.units`, ...) a model reads, directly or through other models."""
    return {f"{n['source_name']}.{n['name']}" for n in _upstream(model) if n["resource_type"] == "source"}


def upstream_models(model: str) -> set[str]:
    """The models a model reads, directly or through other models."""
    return {n["name"] for n in _upstream(model) if n["resource_type"] == "model" and n["name"] != model}


def _downstream(sources: set[str], models: set[str]) -> set[str]:
    """The unique ids of what reads these sources (`mes.units`) or models, directly or not, and of
    the models themselves."""
    m = manifest()
    todo = [uid for uid, n in {**m["nodes"], **m["sources"]}.items()
            if (n["resource_type"] == "source" and f"{n['source_name']}.{n['name']}" in sources)
            or (n["resource_type"] == "model" and n["name"] in models)]
    reached: set[str] = set()
    while todo:
        uid = todo.pop()
        if uid not in reached:
            reached.add(uid)
            todo.extend(m["child_map"].get(uid, []))
    return reached


def _models(uids) -> dict[str, dict]:
    nodes = manifest()["nodes"]
    return {uid: nodes[uid] for uid in uids if uid in nodes and nodes[uid]["resource_type"] == "model"}


def views_left_in_place(sources: set[str], models: set[str]) -> set[str]:
    """The views an incremental build of what reads these sources (`mes.units`) and models need not
    create again: their SQL is as the last complete build created it (a change of the project
    rebuilds everything), and a view reads its inputs as they are when it is read. Not those a data
    test reads: their tests run on their rows as they are now."""
    tested = {parent for n in manifest()["nodes"].values() if n["resource_type"] == "test"
              for parent in n.get("depends_on", {}).get("nodes", [])}
    return {n["name"] for uid, n in _models(_downstream(sources, models)).items()
            if uid not in tested and n["config"].get("materialized") == "view"}


def selected_by(sources: set[str], models: set[str]) -> set[str]:
    """The models an incremental build of what reads these sources and models builds."""
    return {n["name"] for n in _models(_downstream(sources, models)).values()}


def read_by(sources: set[str], models: set[str], readers: set[str]) -> set[str]:
    """Of the models an incremental build of what reads these sources and models builds, those the
    `readers` read (and those of them it builds)."""
    wanted = {name for r in readers for name in upstream_models(r)} | set(readers)
    return selected_by(sources, models) & wanted


def unchanged_by(sources: set[str], models: set[str], built: set[str], families: set[str],
                 ecos: bool) -> set[str]:
    """Of the models an incremental build of what reads these sources and models builds, after
    `built`, those it need not build: a per-unit model whose family (meta `shard_aspect`) rebuilds
    no shard, and that recomputes no ECO for every unit (meta `eco_column`, when `ecos` changed),
    builds nothing; and a model none of whose inputs changed in this build is as it was."""
    m = manifest()
    selected = _models(_downstream(sources, models))
    changed = {uid for uid, n in {**m["sources"], **m["nodes"]}.items()
               if (n["resource_type"] == "source" and f"{n['source_name']}.{n['name']}" in sources)
               or (n["resource_type"] == "model" and n["name"] in built)}
    unchanged = set()
    # In the graph's order: a model reads more models than any model it reads.
    for uid, n in sorted(selected.items(), key=lambda item: len(upstream_models(item[1]["name"]))):
        if n["name"] in built:
            continue
        meta = n["config"].get("meta", {})
        if meta.get("shard_aspect"):
            builds = meta["shard_aspect"] in families or (bool(meta.get("eco_column")) and ecos)
        else:
            builds = any(parent in changed for parent in m["parent_map"].get(uid, []))
        if builds:
            changed.add(uid)
        else:
            unchanged.add(n["name"])
    return unchanged


def _upstream(model: str) -> list[dict]:
    m = manifest()
    nodes = {**m["nodes"], **m["sources"]}
    found: list[dict] = []
    seen: set[str] = set()
    todo = [uid for uid, n in m["nodes"].items() if n["resource_type"] == "model" and n["name"] == model]
    while todo:
        uid = todo.pop()
        if uid in seen or uid not in nodes:
            continue
        seen.add(uid)
        found.append(nodes[uid])
        todo.extend(nodes[uid].get("depends_on", {}).get("nodes", []))
    return found


def published_order(schema: str) -> dict[str, str]:
    """The models of a dbt schema stored in the warehouse in another order than by unit (meta
    `published_order`): a table that analyses filter by part is kept sorted by part, so DuckDB's
    zone maps skip the rest of it."""
    return with_meta("published_order", schema)


# -- dbt's input: schema `raw` of the build database --------------------------------------------

class BuildDatabaseLocked(RuntimeError):
    """Someone holds the private build database open; dbt cannot write it."""


def _view_sql(con, path: Path, schema, cache: Path | None, used: set[str] | None = None) -> str:
    """A view over the table's current Parquet files (local copies if the lake is on an object
    store: `cache`), or an empty relation of its columns."""
    from . import lake

    uris = lake.local_files(path, cache)
    if used is not None:
        used.update(uris)
    if uris:
        return f"SELECT * FROM read_parquet([{', '.join(lake.sql_literal(u) for u in uris)}], union_by_name = true)"
    types = con.from_arrow(schema.empty_table()).types
    cols = ", ".join(f'CAST(NULL AS {t}) AS "{f.name}"' for f, t in zip(schema, types))
    return f"SELECT {cols} WHERE false"


def _raw_views(con, lake_dir: Path, views: dict[str, str] | None = None, cache: Path | None = None,
               used: set[str] | None = None) -> dict[str, str]:
    """Schema `raw`: one view per contract entity over its Delta table's current version. Returns
    the views' SQL, so a second database can get the same views without reading the logs again."""
    import contracts

    from . import lake
    from .ingest.audit import raw_schema

    if views is None:
        views = {}
        for c in contracts.ENTITIES.values():
            p = lake.raw_table(lake_dir, c.system, c.entity)
            views[c.raw_relation] = _view_sql(con, p, lake.schema(p) or raw_schema(c), cache, used)
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for relation, sql in views.items():
        con.execute(f"CREATE OR REPLACE VIEW raw.{relation} AS {sql}")
    return views


def write_lake_catalog(catalog: Path, lake_dir: Path, views: dict[str, str] | None = None,
                       cache: Path | None = None) -> None:
    """The lake's catalog for DuckDB readers: a small database of views (schema `raw`, one per
    landed entity) over the raw Delta tables' current versions, readable without DuckDB's Delta
    extension. The ODCS contracts name it as their server, so `datacontract test` checks what
    landed. Written beside and swapped in whole: an open reader keeps the catalog it opened."""
    import duckdb

    catalog.parent.mkdir(parents=True, exist_ok=True)
    tmp = catalog.with_name(f".{catalog.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        _raw_views(con, lake_dir, views, cache)
    finally:
        con.close()
    os.replace(tmp, catalog)


def prepare_build_db(build_db: Path, lake_dir: Path, pii_salt: str, cache: Path | None = None) -> dict[str, str]:
    """Point schema `raw` of the build database at the current version of every raw Delta table,
    the audit tables, the source systems' contracts and the customers' masks. Returns the raw
    tables' view SQL (for the lake catalog). A lake on an object store is read through local
    copies in `cache`, of which only the current files are kept."""
    import duckdb

    import contracts

    from . import lake
    from .ingest.audit import AUDIT_TABLES

    build_db.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(build_db))
    except duckdb.IOException as e:
        if "lock" not in str(e).lower():
            raise
        holder = re.search(r"PID (\d+)", str(e))
        raise BuildDatabaseLocked(
            f"The build database {build_db} is open in another process"
            + (f" (PID {holder.group(1)})" if holder else "")
            + ": close it and rerun (analysts read warehouse.duckdb, which never blocks a refresh).") from None
    try:
        used: set[str] = set()
        views = _raw_views(con, lake_dir, cache=cache, used=used)
        for name, sch in AUDIT_TABLES.items():
            sql = _view_sql(con, lake.audit_table(lake_dir, name), sch, cache, used)
            con.execute(f"CREATE OR REPLACE VIEW raw.audit__{name} AS {sql}")
        con.execute(
            "CREATE OR REPLACE TABLE raw.audit__source_systems (system VARCHAR, title VARCHAR, "
            "owner_team VARCHAR, contract_version VARCHAR, freshness_limit_hours DOUBLE)"
        )
        con.executemany(
            "INSERT INTO raw.audit__source_systems VALUES (?, ?, ?, ?, ?)",
            [(s.system, s.title, s.owner_team, s.contract_version, s.freshness_limit.total_seconds() / 3600)
             for s in contracts.SYSTEMS.values()],
        )
        # The salt is bound as a parameter and only its hashes are stored: it never reaches a file,
        # compiled SQL or a log. dbt joins these masks instead of hashing personal data itself.
        con.execute(
            "CREATE OR REPLACE TABLE raw.audit__pii_masks AS SELECT customer_id, "
            "left(sha256(?::VARCHAR || '|name|' || name), 16) AS name_masked, "
            "left(sha256(?::VARCHAR || '|email|' || lower(trim(email))), 16) AS email_masked "
            "FROM raw.service__customers",
            [pii_salt, pii_salt],
        )
    finally:
        con.close()
    if cache is not None and lake.is_remote(lake_dir):
        lake.prune_cache(cache, used)
    return views

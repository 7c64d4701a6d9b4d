"""The lake on object storage: THREAD_LAKE_URI=s3://bucket/prefix against an S3 server (moto) on
127.0.0.1, started and stopped here. Raw, quarantine, audit, thread and twin tables live in the
bucket; the published thread equals a build with a local lake; nothing of the lake is left on the
local disk but the read cache DuckDB needs."""

from __future__ import annotations

import json
import shutil

import pytest
from deltalake import DeltaTable

from orchestration.ingest.recovery import SPILL_DIR
from tests.helpers import build, published, start_s3, stop_group

BUCKET = "thread-lake"
LAKE = f"s3://{BUCKET}/plant-a"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    env, proc = start_s3(tmp_path_factory.mktemp("s3"), BUCKET)
    yield env
    stop_group(proc)


def _rows(uri: str, s3: dict) -> list[dict]:
    """A table of the bucket read by a plain `deltalake` reader, not ours."""
    options = {"AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"], "AWS_ALLOW_HTTP": "true", "AWS_REGION": s3["AWS_REGION"],
               "AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"]}
    return DeltaTable(uri, storage_options=options).to_pyarrow_table().to_pylist()


def test_the_lake_on_s3_builds_the_same_thread(small_sources, built_small, s3, tmp_path):
    sources, data = tmp_path / "sources", tmp_path / "data"
    shutil.copytree(small_sources, sources)
    env = {"THREAD_LAKE_URI": LAKE, **s3}

    result = build(sources, data, **env)
    assert result.ok, result.failed
    assert not (data / "lake").exists() and not (data / SPILL_DIR).exists()
    # DuckDB's local copies of the raw files include customers' personal data: owner-only.
    cache = data / "build" / "lake_cache"
    assert (cache / BUCKET / "plant-a" / "raw" / "service" / "customers").is_dir()
    assert cache.stat().st_mode & 0o777 == 0o700
    # The same thread as with a local lake, table for table.
    assert published(data / "warehouse.duckdb") == published(built_small / "warehouse.duckdb")
    # Every layer is in the bucket, readable by anyone's Delta reader.
    parts = _rows(f"{LAKE}/raw/plm/parts", s3)
    assert len(parts) == sum(1 for _ in (sources / "plm" / "parts.csv").open()) - 1
    twins = _rows(f"{LAKE}/twin/unit_twin", s3)
    units = _rows(f"{LAKE}/thread/units", s3)
    assert {t["serial_number"] for t in twins} == {u["serial_number"] for u in units} and len(units) > 20
    assert _rows(f"{LAKE}/_state/twin/units/unit_twin", s3)
    assert _rows(f"{LAKE}/audit/extractions", s3)

    # A bad row lands in the bucket's quarantine with its reason; the rest of its export in raw;
    # the unchanged rest of the lake is not rebuilt.
    bom = sources / "plm" / "bom_lines.csv"
    good_lines = sum(1 for _ in bom.open()) - 1
    with bom.open("a") as f:
        f.write("A-1001,A,990,S-2001,two\n")
    again = build(sources, data, **env)
    assert again.ok, again.failed
    rejected = _rows(f"{LAKE}/quarantine/plm/bom_lines", s3)
    # Its line in the file: after the header and the good lines.
    assert [(r["column"], r["source_row"]) for r in rejected] == [("quantity", good_lines + 2)], rejected
    assert "'two' is not a number" in rejected[0]["reason"]
    assert len(_rows(f"{LAKE}/raw/plm/bom_lines", s3)) == good_lines
    now, before = published(data / "warehouse.duckdb"), published(built_small / "warehouse.duckdb")
    assert [v[3] for v in now.pop("thread.contract_violations")] == ["A-1001/A/990"]
    before.pop("thread.contract_violations")
    assert now == before

    # Lineage names the tables where they are: namespace s3://<bucket>, the key as the name.
    events = [json.loads(line) for line in (data / "logs" / "openlineage.jsonl").read_text().splitlines()]
    names = {(d["namespace"], d["name"]) for e in events for d in e.get("outputs", [])}
    assert (f"s3://{BUCKET}", "plant-a/raw/plm/parts") in names

"""The lake does not grow without bound: the retention job keeps N days of table versions."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from orchestration import lake, twins
from orchestration.defs.maintenance import lake_retention
from orchestration.resources import WriterLock
from orchestration.settings import ThreadSettings


def _files(lake_dir) -> int:
    return sum(1 for p in lake_dir.rglob("*.parquet") if "_delta_log" not in p.parts)


def test_retention_removes_old_versions_and_keeps_every_table_readable(built_small_copy):
    sources, data = built_small_copy
    lake_dir = data / "lake"
    # More versions of one table: three rewrites of the twin inputs, as refreshes do.
    inputs = twins.state_dir(lake_dir) / "inputs"
    current = lake.read(inputs)
    for i in range(3):
        lake.write(inputs, current, "overwrite", batch_id=f"again-{i}")
    reader = DeltaTable(str(inputs))  # someone's open table, at the current version
    rows_before = {p: lake.read(p).num_rows for p in lake.tables(lake_dir)}
    files_before = _files(lake_dir)

    settings = ThreadSettings(sources_dir=str(sources), data_dir=str(data), retention_days=0)
    result = lake_retention.execute_in_process(resources={"thread": settings, "writer": WriterLock(thread=settings)})

    assert result.success
    assert _files(lake_dir) < files_before
    assert {p: lake.read(p).num_rows for p in lake.tables(lake_dir)} == rows_before
    # The open reader still reads its version; versions past the retention are gone.
    assert sum(pq.read_table(u).num_rows for u in reader.file_uris()) == current.num_rows
    with pytest.raises(Exception):  # noqa: B017 - deltalake and pyarrow raise their own error types
        [pq.read_table(u) for u in DeltaTable(str(inputs), version=0).file_uris()]

"""Pure helpers of the twin refresh."""

import pytest

from orchestration.twins import partition_ranges


def test_ranges_cover_wanted_keys_and_bridge_short_gaps():
    keys = [f"U-{i:03d}" for i in range(100)]
    wanted = {"U-001", "U-003", "U-050", "U-051", "U-099"}
    assert partition_ranges(keys, wanted, max_gap=2) == [("U-001", "U-003"), ("U-050", "U-051"), ("U-099", "U-099")]
    assert partition_ranges(keys, wanted, max_gap=100) == [("U-001", "U-099")]
    assert partition_ranges(keys, set()) == []


def test_every_wanted_key_is_inside_a_range():
    keys = [f"K{i}" for i in range(500)]
    wanted = {keys[i] for i in range(0, 500, 37)}
    ranges = partition_ranges(keys, wanted, max_gap=10)
    position = {k: i for i, k in enumerate(keys)}
    for w in wanted:
        assert any(position[a] <= position[w] <= position[b] for a, b in ranges)


def test_partition_keys_are_serials_or_shards_of_consecutive_serials():
    from orchestration.twins import partition_key

    assert partition_key("HX200-000123") == "HX200-000123"
    assert partition_key("HX200-000123", 100) == "HX200-0001xx"
    assert partition_key("HX200-000199", 100) == partition_key("HX200-000100", 100)
    assert partition_key("HX200-000200", 100) != partition_key("HX200-000199", 100)
    assert partition_key("A-B-0042", 10) == "A-B-004x"
    import pytest

    with pytest.raises(ValueError):
        partition_key("HX200-000123", 50)


def test_the_partition_size_is_configured_kept_or_chosen_by_fleet_size():
    from orchestration.twins import (
        PER_UNIT_MAX,
        SHARDED_MAX_PARTITIONS,
        key_size,
        units_per_partition,
    )

    assert key_size("HX200-000123") == 1 and key_size("HX200-0001xx") == 100 and key_size("A-B-004x") == 10
    # Configured: as configured, whatever the instance has.
    assert units_per_partition(10, ["HX200-000123"], 50_000) == 10
    # An instance with twin partitions keeps its newest key's size, whatever the fleet grew to.
    assert units_per_partition(0, ["HX200-000001", "HX200-000002"], 50_000) == 1
    assert units_per_partition(0, ["HX200-000001", "HX200-00001x"], 300) == 10
    # A new instance: a partition per unit up to PER_UNIT_MAX units, then shards of the smallest
    # power of ten that keeps the fleet within SHARDED_MAX_PARTITIONS partitions.
    assert units_per_partition(0, [], 300) == 1
    assert units_per_partition(0, [], PER_UNIT_MAX) == 1
    assert units_per_partition(0, [], PER_UNIT_MAX + 1) == 10
    assert units_per_partition(0, [], 10 * SHARDED_MAX_PARTITIONS) == 10
    assert units_per_partition(0, [], 10 * SHARDED_MAX_PARTITIONS + 1) == 100
    assert units_per_partition(0, [], 9_850) == 100  # M: 99 partitions, not 985 of 10 units
    assert units_per_partition(0, [], 98_544) == 1_000  # L
    assert units_per_partition(0, [], 1_000 * SHARDED_MAX_PARTITIONS + 1) == 10_000


def test_a_run_over_mixed_partitions_finds_units_of_either_size():
    """An instance whose partition size was changed has serial keys and shard keys."""
    from orchestration.twins import in_partitions

    keys = {"HX200-000007", "HX200-00002x"}
    serials = ["HX200-000007", "HX200-000008", "HX200-000020", "HX200-000029", "HX200-000030"]
    assert in_partitions(serials, keys) == ["HX200-000007", "HX200-000020", "HX200-000029"]


def test_a_partition_size_that_is_not_a_power_of_ten_is_refused(monkeypatch):
    from orchestration.settings import ThreadSettings

    for value in ("", "auto", "0"):
        monkeypatch.setenv("THREAD_TWIN_UNITS_PER_PARTITION", value)
        assert ThreadSettings.from_env(".").units_per_partition == 0
    monkeypatch.delenv("THREAD_TWIN_UNITS_PER_PARTITION")
    assert ThreadSettings.from_env(".").units_per_partition == 0, "a Dagster process started by hand needs no such variable"
    monkeypatch.setenv("THREAD_TWIN_UNITS_PER_PARTITION", "100")
    assert ThreadSettings.from_env(".").units_per_partition == 100
    for value in ("50", "ten"):
        monkeypatch.setenv("THREAD_TWIN_UNITS_PER_PARTITION", value)
        with pytest.raises(ValueError, match="THREAD_TWIN_UNITS_PER_PARTITION"):
            ThreadSettings.from_env(".").units_per_partition  # noqa: B018 - the read is what fails
    with pytest.raises(ValueError, match="THREAD_TWIN_UNITS_PER_PARTITION"):
        ThreadSettings(sources_dir=".", data_dir=".", twin_units_per_partition=50)


@pytest.mark.parametrize("value", ["1GB'; DROP TABLE x; --", "lots", "4GB OR 1=1"])
def test_a_memory_limit_that_is_not_a_size_is_refused_before_sql(monkeypatch, value):
    from orchestration import lake
    from orchestration.settings import ThreadSettings

    with pytest.raises(ValueError, match="THREAD_DUCKDB_MEMORY_LIMIT"):
        lake.duck(memory_limit=value)
    with pytest.raises(ValueError, match="THREAD_DUCKDB_MEMORY_LIMIT"):
        ThreadSettings(sources_dir=".", data_dir=".", duckdb_memory_limit=value)
    monkeypatch.setenv("THREAD_DUCKDB_MEMORY_LIMIT", value)
    with pytest.raises(ValueError, match="THREAD_DUCKDB_MEMORY_LIMIT"):
        ThreadSettings(sources_dir=".", data_dir=".").dbt_vars()  # what dbt-duckdb would paste into SET


def test_a_memory_limit_that_is_a_size_applies(monkeypatch):
    from orchestration import lake
    from orchestration.settings import ThreadSettings

    monkeypatch.setenv("THREAD_DUCKDB_MEMORY_LIMIT", "512MiB")
    limit = ThreadSettings(sources_dir=".", data_dir=".").memory_limit
    con = lake.duck(memory_limit=limit)
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0].startswith("512")


def test_a_shard_filter_selects_exactly_its_shards_serials():
    import duckdb

    from orchestration import shards

    serials = ["HX200-000001", "HX200-000999", "HX200-001000", "HX200-0001234", "HX200-002500",
               "VX80-000007", "VX80-001000", "A", "HX200-003000"]
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?) AS serial_number", [serials])
    for wanted in (["HX200-000"], ["HX200-000", "HX200-002"], ["HX200-002", "VX80-000"], ["VX80-001", "HX200-000"]):
        got = {s for (s,) in con.execute(f"SELECT serial_number FROM t WHERE {shards.sql_where(wanted)}").fetchall()}
        assert got == {s for s in serials if shards.shard_of(s) in wanted}, wanted
    assert con.execute(f"SELECT count(*) FROM t WHERE {shards.sql_where([])}").fetchone()[0] == 0


def test_the_change_sets_ranges_cover_exactly_the_selected_units_in_runs():
    """The ranges the change set evaluates the twin views in: one per run of consecutive selected
    units (cut at `size`), together selecting every selected unit and no other unit of the fleet."""
    import duckdb

    from orchestration import shards
    from orchestration.twins import _selected_ranges

    serials = [f"HX200-{i:06d}" for i in range(0, 6000, 7)] + [f"VX80-{i:06d}" for i in range(0, 3000, 5)]
    con = duckdb.connect()
    con.execute("CREATE SCHEMA thread")
    con.execute("CREATE TABLE thread.units AS SELECT unnest(?) AS serial_number", [serials])
    for wanted, size in ((["HX200-000", "HX200-002", "HX200-003", "VX80-002"], 10_000),
                         (["HX200-000", "HX200-001", "HX200-005", "VX80-000"], 50),
                         (["HX200-000"], 10_000), (["VX80-002"], 10_000), ([], 10)):
        where = shards.sql_where(wanted)
        ranges = _selected_ranges(con, where, size)
        selected = {s for s in serials if shards.shard_of(s) in wanted}
        got = [{s for (s,) in con.execute(f"SELECT serial_number FROM thread.units WHERE {r}").fetchall()}
               for r in ranges]
        assert set().union(*got) == selected, wanted
        assert all(0 < len(g) <= size for g in got)
        runs = sum(1 for a, b in zip([None, *serials], serials) if shards.shard_of(b) in wanted
                   and (a is None or shards.shard_of(a) not in wanted))
        if size >= len(serials):  # runs of consecutive shards, never cut
            assert len(ranges) == runs, wanted

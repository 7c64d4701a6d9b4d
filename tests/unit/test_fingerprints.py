"""What decides how much of the thread an incremental run rebuilds."""

from orchestration.fingerprints import changed_sources


def test_only_sources_whose_token_moved_are_rebuilt_from():
    last = {"code": "c1", "sources": {"plm.ecos": 3, "mes.units": 7, "audit.extractions": "a"}}
    now = {"plm.ecos": 4, "mes.units": 7, "audit.extractions": "b", "service.telemetry": 0}
    # A source the last build did not know counts as changed.
    assert changed_sources(last, "c1", now) == ["audit.extractions", "plm.ecos", "service.telemetry"]
    assert changed_sources(last, "c1", last["sources"]) == []


def test_without_a_comparable_last_build_everything_is_rebuilt():
    now = {"plm.ecos": 4}
    assert changed_sources(None, "c1", now) is None
    assert changed_sources({"code": "c0", "sources": now}, "c1", now) is None


def test_a_big_mes_tables_rows_are_fingerprinted_by_value_not_by_memory_layout():
    from datetime import date

    from orchestration.ingest.mes import _as_bytes

    shared = "HX200-000001"
    rows = [(shared, 1.0, None, 2), (shared, 1.0, None, 2)]  # one string object, used twice
    fresh = [("".join(["HX200-", "000001"]), 1.0, None, 2) for _ in range(2)]  # equal values, new objects
    assert _as_bytes(rows) == _as_bytes(fresh)
    assert _as_bytes([(1,)]) != _as_bytes([(1.0,)])  # SQLite's integer 1 and real 1.0 are different exports
    assert _as_bytes([("1",)]) != _as_bytes([(b"1",)])
    # Values only another driver returns (dates, decimals) still fingerprint, through their text.
    assert _as_bytes([(date(2026, 1, 2),)]) != _as_bytes([(date(2026, 1, 3),)])

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

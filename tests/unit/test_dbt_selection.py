"""What an incremental dbt run builds, read from the project's manifest: the views it leaves in
place, what it builds first (the digests), and what it then need not build."""

from orchestration import dbt_project, shards

ECO = {"plm.ecos", "plm.eco_affected_items", "plm.part_revisions"}
DIGESTS = {shards.DIGESTS_MODEL, shards.ECO_DIGESTS_MODEL}
PER_UNIT = dbt_project.shard_aspects()


def test_views_left_in_place_are_untested_views_the_change_reaches():
    views = dbt_project.views_left_in_place({"service.service_events"}, set())
    assert {"stg_service__service_events", "unit_twin"} <= views
    # service_events has data tests: it is created again, and they run on its rows now.
    assert "service_events" not in views
    assert not views & {"stg_plm__ecos", "units"}  # not reached by a service event


def test_an_eco_builds_the_digests_first_then_only_what_changes():
    first = dbt_project.read_by(ECO, DIGESTS, set(shards.CHANGED_MODELS))
    assert set(shards.CHANGED_MODELS) | DIGESTS <= first
    assert not first & set(PER_UNIT) and "eco_propagation" not in first
    # No family rebuilds a shard; the ECO itself is recomputed for every unit.
    unchanged = dbt_project.unchanged_by(ECO, DIGESTS, first, families=set(), ecos=True)
    assert set(PER_UNIT) - {"eco_impact"} <= unchanged
    assert "part_field_reliability" in unchanged  # reads only a per-unit model that builds nothing
    assert not unchanged & {"eco_impact", "eco_propagation", "parts", "part_revisions", "ecos"}
    assert unchanged < dbt_project.selected_by(ECO, DIGESTS) - first


def test_a_family_that_rebuilds_shards_is_built_with_what_reads_it():
    sources = {"service.service_events"}
    first = dbt_project.read_by(sources, DIGESTS, set(shards.CHANGED_MODELS))
    unchanged = dbt_project.unchanged_by(sources, DIGESTS, first, families={"configuration", "impact"}, ecos=False)
    configuration = {m for m, family in PER_UNIT.items() if family == "configuration"}
    assert configuration and not unchanged & (configuration | {"eco_impact", "part_field_reliability"})
    assert {m for m, family in PER_UNIT.items() if family in ("built", "designed", "deviations")} <= unchanged

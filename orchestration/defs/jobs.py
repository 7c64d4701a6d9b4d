"""The stages of `thread build` as named jobs: the UI lists each build's runs under the stage
they belong to (anonymous in-process runs would leave the Overview saying "No runs")."""

from __future__ import annotations

import dagster as dg

import contracts

from .keys import TWIN_KEY, WAREHOUSE_KEY

STAGES = ("sources", "thread", "twins", "publish")

_WHAT = {"sources": "extract every export of every system into the lake",
         "thread": "the thread: dbt models and tests, remaining-useful-life estimates, the twin change set",
         "twins": "the twins whose inputs changed (a partition range per run)",
         "publish": "the warehouse and its Delta copies"}


def selections() -> list[tuple[str, dg.AssetSelection]]:
    """What `thread build` runs, in order: every system's extraction (one run: a failed export
    fails its own step, the other systems' steps still run, and a run less costs about 0.6 s of
    Dagster's bookkeeping), the thread, the twins, the publish."""
    sources = dg.AssetSelection.groups(*contracts.SYSTEMS)
    twins, publish = dg.AssetSelection.assets(TWIN_KEY), dg.AssetSelection.assets(WAREHOUSE_KEY)
    return [("sources", sources), ("thread", dg.AssetSelection.all() - sources - twins - publish),
            ("twins", twins), ("publish", publish)]


def job_name(stage: str) -> str:
    return f"build_{stage}"


BUILD_JOBS = [
    dg.define_asset_job(job_name(stage), selection=selection, tags={"thread/stage": stage},
                        description=f"`thread build`, stage {stage}: {_WHAT[stage]}")
    for stage, selection in selections()
] + [
    # One system's extraction on its own, to launch from the UI or on a team's workers.
    dg.define_asset_job(job_name(system), selection=dg.AssetSelection.groups(system), tags={"thread/stage": "sources"},
                        description=f"Extract every {system.upper()} export into the lake (`thread build` "
                                    "extracts every system's in one run, `build_sources`)")
    for system in contracts.SYSTEMS
]

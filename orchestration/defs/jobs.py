"""The stages of `thread build` as named jobs: the UI lists each build's runs under the stage
they belong to (anonymous in-process runs would leave the Overview saying "No runs")."""

from __future__ import annotations

import dagster as dg

import contracts

from .keys import TWIN_KEY, WAREHOUSE_KEY

STAGES = (*contracts.SYSTEMS, "thread", "twins", "publish")

_WHAT = {"thread": "the thread: dbt models and tests, remaining-useful-life estimates, the twin change set",
         "twins": "the twins whose inputs changed (a partition range per run)",
         "publish": "the warehouse and its Delta copies"}


def selections() -> list[tuple[str, dg.AssetSelection]]:
    """What `thread build` runs, in order: each system's extraction on its own (a failed export
    leaves the others proceeding), the thread, the twins, the publish."""
    sources = dg.AssetSelection.groups(*contracts.SYSTEMS)
    twins, publish = dg.AssetSelection.assets(TWIN_KEY), dg.AssetSelection.assets(WAREHOUSE_KEY)
    return [*((system, dg.AssetSelection.groups(system)) for system in contracts.SYSTEMS),
            ("thread", dg.AssetSelection.all() - sources - twins - publish), ("twins", twins), ("publish", publish)]


def job_name(stage: str) -> str:
    return f"build_{stage}"


BUILD_JOBS = [
    dg.define_asset_job(job_name(stage), selection=selection, tags={"thread/stage": stage},
                        description=f"`thread build`, stage {stage}: "
                                    + _WHAT.get(stage, f"extract every {stage.upper()} export into the lake"))
    for stage, selection in selections()
]

"""Runs queued or in progress that a step or a sensor takes into account (one place for the
queries), and how often the sensors that request runs look."""

import dagster as dg

# Every sensor's minimum interval. `thread serve`'s daemon loops every 1.25 s
# (services.SENSOR_LOOP_SECONDS) and evaluates the sensors side by side, so each ticks every 1.25 s
# and a change waits about 0.6 s for the sensor that sees it. An idle `thread serve` at
# 10,000 units used about 8 CPU-seconds per 30 s at a 1.1 s loop (158 ticks, 52 ms each).
SENSOR_SECONDS = 1

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def active(instance: dg.DagsterInstance, *keys: dg.AssetKey) -> list[dg.DagsterRun]:
    """Runs queued or in progress that materialize any of `keys`."""
    return materializing(instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE), limit=100), *keys)


def materializing(found: list[dg.DagsterRun], *keys: dg.AssetKey) -> list[dg.DagsterRun]:
    """Of these runs, those that materialize any of `keys`."""
    return [run for run in found if set(keys) & (run.asset_selection or set())]


def step_started(instance: dg.DagsterInstance, run_id: str, step_key: str) -> bool:
    return any(e.dagster_event is not None and e.dagster_event.step_key == step_key
               for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START))

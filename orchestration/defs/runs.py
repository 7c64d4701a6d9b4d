"""Runs queued or in progress that a step or a sensor takes into account (one place for the
queries), and how often the sensors that request runs look."""

import dagster as dg

# Every sensor's minimum interval. `thread serve`'s daemon loops every second too
# (services.SENSOR_LOOP_SECONDS), in a random order of sensors, so a change waits half a second to
# a second for the sensor that sees it. At 2 s an idle `thread serve` at 10,000 units used 7.8
# CPU-seconds per 30 s; at 1 s, 9.3-10.4.
SENSOR_SECONDS = 1

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def active(instance: dg.DagsterInstance, *keys: dg.AssetKey) -> list[dg.DagsterRun]:
    """Runs queued or in progress that materialize any of `keys`."""
    return [run for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE), limit=100)
            if set(keys) & (run.asset_selection or set())]


def step_started(instance: dg.DagsterInstance, run_id: str, step_key: str) -> bool:
    return any(e.dagster_event is not None and e.dagster_event.step_key == step_key
               for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START))

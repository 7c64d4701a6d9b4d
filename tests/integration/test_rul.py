"""Remaining useful life from the thread's own failure history, on a slice of real C-MAPSS data.

A few engines of FD001 go through the whole pipeline: no failures yet means no model and null
estimates; recorded failures train a model whose estimates reach every live twin; one more
failure retrains it without anyone asking.
"""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from orchestration import lake, rul
from orchestration.simulate import cmapss
from tests.helpers import build, query

pytestmark = pytest.mark.slow
ENGINES = 12


def test_phm08_score_punishes_late_predictions_more_than_early_ones():
    assert rul.phm08_score(np.array([10.0]), np.array([10.0])) == 0
    early, late = rul.phm08_score(np.array([0.0]), np.array([10.0])), rul.phm08_score(np.array([20.0]), np.array([10.0]))
    assert late > early > 0
    assert early == pytest.approx(np.exp(10 / 13) - 1) and late == pytest.approx(np.e - 1)


def test_labels_are_hours_to_the_next_failure():
    ts = pd.to_datetime(["2026-01-01T00:00Z", "2026-01-01T05:00Z", "2026-01-02T00:00Z"], utc=True)
    wide = pd.DataFrame({"serial_number": ["A", "A", "A"], "ts": ts})
    fails = pd.DataFrame({"serial_number": ["A"], "failed_at": [pd.Timestamp("2026-01-01T10:00Z")]})
    assert rul.label(wide, fails).tolist()[:2] == [10.0, 5.0]
    assert np.isnan(rul.label(wide, fails).iloc[2])  # after the last failure: no label


def _failure(serial: str, at) -> str:
    return json.dumps({"event_id": f"SE-{serial}-FAIL", "serial_number": serial, "event_type": "failure",
                       "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "closed_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "failed_part_number": cmapss.FAILED_MODULE, "symptom_code": "HPC-DEGRADATION"}) + "\n"


def test_failures_in_model_out_estimates_on_live_twins_and_retraining_by_itself(tmp_path):
    frame = cmapss.read(cmapss.DEFAULT_FILE)
    frame = frame[frame["engine"] <= ENGINES]
    life = frame.groupby("engine")["cycle"].max()
    # The last two engines are still flying: their telemetry stops at half their life.
    running = frame["engine"] > ENGINES - 2
    frame = frame[~running | (frame["cycle"] <= frame["engine"].map(life) // 2)]
    part = tmp_path / "slice.txt.gz"
    with gzip.open(part, "wt") as f:
        frame.to_csv(f, sep=" ", header=False, index=False)
    sources, data = tmp_path / "sources", tmp_path / "data"
    cmapss.write(sources, part, live=True)
    wh = data / "warehouse.duckdb"

    # No failure recorded yet: no model, and the twins say so with nulls.
    assert build(sources, data).ok
    assert query(wh, "select count(*), count(rul_hours), count(rul_model_version) from twin.unit_twin") == [(ENGINES, 0, 0)]

    # Service records that ten of the engines failed: a model is trained from them.
    events = sources / "service" / "service_events.jsonl"
    with events.open("a") as f:
        for e in range(1, 11):
            f.write(_failure(f"TF1-{e:06d}", cmapss.ORIGIN + timedelta(days=e - 1, hours=int(life[e]))))
    assert build(sources, data).ok
    versions = rul.latest_versions(data / "lake")
    assert versions["TF-1"]["version"] == "TF-1/v1" and versions["TF-1"]["training_units"] > 0
    assert versions["TF-1"]["rmse_hours"] is not None
    twins = dict(query(wh, "select serial_number, rul_hours from twin.unit_twin"))
    assert all(v is not None and v >= 0 for v in twins.values()), twins
    # The two still running, read at half their life, have far more left than those read at failure.
    assert min(twins["TF1-000011"], twins["TF1-000012"]) > max(twins[f"TF1-{e:06d}"] for e in range(1, 11))
    assert query(wh, "select distinct rul_model_version from twin.unit_twin") == [("TF-1/v1",)]

    # One more failure arrives: retrained, and the twins carry the new version.
    with events.open("a") as f:
        f.write(_failure("TF1-000011", cmapss.ORIGIN + timedelta(days=10, hours=int(life[11]))))
    assert build(sources, data).ok
    assert rul.latest_versions(data / "lake")["TF-1"]["version"] == "TF-1/v2"
    assert query(wh, "select distinct rul_model_version from twin.unit_twin") == [("TF-1/v2",)]

    # Nothing new: the stored model is reused, not retrained.
    from datetime import datetime, timezone

    again = rul.refresh(data / "build" / "build.duckdb", data / "lake", datetime.now(timezone.utc), "again")
    assert not again["trained"] and [r["version"] for r in again["kept"]] == ["TF-1/v2"]
    assert again["estimated_units"] == ENGINES

    # An inspection is no failure and no reading: neither a model nor an estimate changes, and
    # the stored estimates are kept, not computed again.
    stored = lake.table(rul.models_dir(data / "lake") / "rul_estimates").version()
    with events.open("a") as f:
        f.write(_failure("TF1-000012", cmapss.ORIGIN + timedelta(days=11)).replace("failure", "inspection")
                .replace("-FAIL", "-INSP"))
    assert build(sources, data).ok
    assert lake.table(rul.models_dir(data / "lake") / "rul_estimates").version() == stored
    assert query(wh, "select distinct rul_model_version from twin.unit_twin") == [("TF-1/v2",)]
    assert query(wh, "select count(*) from thread.service_events where event_type = 'inspection'") == [(1,)]

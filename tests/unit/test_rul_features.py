"""The estimate's features at each unit's last reading are those of every reading, taken there."""

import numpy as np
import pandas as pd

from orchestration import rul


def test_features_at_the_last_reading_equal_those_rolled_along_every_reading():
    rng = np.random.default_rng(3)
    lengths = [1, 2, 19, 20, 21, 35, 80, 140]
    wide = pd.DataFrame({
        "serial_number": np.repeat([f"U-{i:03d}" for i in range(len(lengths))], lengths),
        "ts": np.concatenate([pd.date_range("2026-01-01", periods=n, freq="6h").to_numpy() for n in lengths]),
        "t2": rng.normal(640, 2, sum(lengths)),
        "p30": rng.normal(1580, 5, sum(lengths)),
    })
    # Missing readings: scattered, a unit's first ones, a whole short unit's.
    wide.loc[rng.random(len(wide)) < 0.15, "t2"] = np.nan
    wide.loc[wide.index[:3], "p30"] = np.nan
    wide.loc[wide["serial_number"] == "U-001", "t2"] = np.nan
    every = rul.features(wide, ["t2", "p30"])
    last = rul.last_features(wide, ["t2", "p30"])
    at_last = every.loc[wide.groupby("serial_number")["ts"].idxmax().to_numpy()]
    assert list(last.columns) == list(every.columns) and list(last.index) == list(at_last.index)
    assert len(last) == len(lengths)
    np.testing.assert_allclose(last.to_numpy(), at_last.to_numpy(), rtol=1e-9, atol=1e-9)
    assert last["t2_mean10"].isna().tolist() == at_last["t2_mean10"].isna().tolist() and last["t2_mean10"].isna().any()

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


def test_models_train_and_estimate_on_one_openmp_thread(monkeypatch):
    """Many threads thrash when another process holds a core (rul._one_openmp_thread)."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime, so that `before` sees it)
    from threadpoolctl import threadpool_info

    def openmp_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"]

    seen = []
    real = rul._regressor

    class Recording:
        def __init__(self):
            self.model = real()

        def fit(self, X, y):
            seen.append(openmp_threads())
            self.model.fit(X, y)
            return self

        def predict(self, X):
            seen.append(openmp_threads())
            return self.model.predict(X)

    monkeypatch.setattr(rul, "_regressor", Recording)
    rng = np.random.default_rng(5)
    units, n = 10, 60
    ts = pd.date_range("2026-01-01", periods=n, freq="6h")
    wide = pd.DataFrame({"serial_number": np.repeat([f"U-{i:02d}" for i in range(units)], n),
                         "ts": np.tile(ts.to_numpy(), units),
                         "t2": np.tile(np.linspace(640, 650, n), units) + rng.normal(0, 0.2, units * n)})
    wide["ts"] = wide["ts"].dt.tz_localize("UTC")
    fails = pd.DataFrame({"serial_number": [f"U-{i:02d}" for i in range(units)],
                          "failed_at": ts[-1].tz_localize("UTC") + pd.Timedelta(hours=6)})
    before = openmp_threads()
    trained = rul.train(wide, fails, "P-1")
    assert rul.estimate(trained, wide)["rul_hours"].notna().all()
    assert len(seen) >= 3 and all(threads == [1] for threads in seen)  # fit, held-out evaluation, estimate
    assert openmp_threads() == before  # the limit is lifted afterwards

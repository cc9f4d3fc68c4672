#!/usr/bin/env python
"""The peers' verdicts on bench_detection's real shifts: alibi-detect and Evidently, defaults.

Run by ``bench_detection.py --peers PYTHON`` with the Python of a throwaway virtual environment
that has the peers (they are not raymlops dependencies)::

    python -m venv /tmp/peers && /tmp/peers/bin/pip install alibi-detect evidently scikit-learn
    python benchmarks/bench_detection.py --peers /tmp/peers/bin/python

Each peer gets the same two pandas DataFrames our check gets and runs with its defaults:

- alibi-detect ``TabularDrift(x_ref, p_val=0.05)``: a K-S test per feature, Bonferroni across the
  features, drift when any corrected p-value is below 0.05;
- Evidently ``DataDriftPreset()``: per column a test chosen by its type and size (K-S for
  numeric columns of more than 1,000 rows, chi-square for few values, Wasserstein distance and
  Jensen-Shannon for larger sets), drift when at least half of the columns drift.

Prints one JSON line: ``{case: {"alibi_detect": {...}, "evidently": {...}}}`` with each peer's
number of flagged features, its dataset verdict, its version and its seconds.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd


def load(name: str) -> tuple[pd.DataFrame, pd.Series]:
    import sklearn.datasets as ds

    frame = getattr(ds, f"load_{name}")(as_frame=True).frame
    return frame.drop(columns="target"), frame["target"]


def cases() -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    out = []
    x, y = load("digits")
    out.append(("digits 0-4 vs 5-9", x[y < 5], x[y >= 5]))
    x, y = load("wine")
    out.append(("wine cultivar 1 vs 2+3", x[y == 0], x[y != 0]))
    x, y = load("breast_cancer")
    out.append(("breast_cancer malignant vs benign", x[y == 0], x[y == 1]))
    return out


def alibi(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    import alibi_detect
    from alibi_detect.cd import TabularDrift

    t = time.perf_counter()
    detector = TabularDrift(ref.to_numpy(dtype=np.float64), p_val=0.05)
    data = detector.predict(cur.to_numpy(dtype=np.float64))["data"]
    seconds = time.perf_counter() - t
    flagged = int(np.sum(np.asarray(data["p_val"]) < data["threshold"]))
    return {"flagged": flagged, "drift": bool(data["is_drift"]), "version": alibi_detect.__version__,
            "seconds": round(seconds, 3)}


def evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    import evidently as ev

    t = time.perf_counter()
    try:  # Evidently >= 0.7
        from evidently import Report
        from evidently.presets import DataDriftPreset

        snap = Report([DataDriftPreset()]).run(reference_data=ref, current_data=cur)
        result = snap.dict()
        count = share = None
        for m in result["metrics"]:
            if str(m.get("metric_name", m.get("metric_id", ""))).startswith("DriftedColumnsCount"):
                count, share = int(m["value"]["count"]), float(m["value"]["share"])
        assert count is not None, "no DriftedColumnsCount in Evidently's report"
        # the preset's own rule: dataset drift when at least half of the columns drift
        drift = bool(share >= 0.5)
    except ImportError:  # Evidently 0.4 - 0.6
        from evidently.metric_preset import DataDriftPreset as LegacyPreset
        from evidently.report import Report as LegacyReport

        report = LegacyReport(metrics=[LegacyPreset()])
        report.run(reference_data=ref, current_data=cur)
        res = report.as_dict()["metrics"][0]["result"]
        count, drift = int(res["number_of_drifted_columns"]), bool(res["dataset_drift"])
    return {"flagged": count, "drift": drift, "version": ev.__version__,
            "seconds": round(time.perf_counter() - t, 3)}


def main() -> int:
    warnings.filterwarnings("ignore")  # the peers' own deprecation noise; stdout is the JSON line
    out: dict[str, Any] = {}
    for name, ref, cur in cases():
        row: dict[str, Any] = {}
        for peer, fn in (("alibi_detect", alibi), ("evidently", evidently)):
            try:
                row[peer] = fn(ref.reset_index(drop=True), cur.reset_index(drop=True))
            except Exception as exc:  # a peer that fails is reported, not hidden
                row[peer] = {"error": f"{type(exc).__name__}: {exc}"}
        out[name] = row
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

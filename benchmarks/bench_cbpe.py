#!/usr/bin/env python
"""Performance estimated before labels (CBPE): error of the estimated accuracy under covariate shift.

Each dataset is split at random into train (40 %), reference (20 %: the holdout, where the
probabilities are calibrated) and analysis (40 %). The analysis rows are **sorted by one
feature** and cut into ``--chunks`` equal chunks: each chunk sees a different part of the input
space while P(y|x) stays what it was (covariate shift only), so the model's accuracy moves from
chunk to chunk. Per chunk, the realised accuracy (and ROC AUC) against:

- ours: :func:`raymlops.train.evaluate.calibration_of` on the reference (isotonic, what the
  pipeline stores in the model's lineage), then :func:`raymlops.stats.cbpe.estimate`;
- NannyML's ``CBPE`` (its own isotonic calibration on the same reference, chunks of the same
  rows), run in a separate virtual environment (``--nannyml-python``; NannyML is not a
  dependency: ``python -m venv /tmp/nannyvenv && /tmp/nannyvenv/bin/pip install nannyml``);
  skipped, and said so, when that interpreter is missing;
- the constant reference: the reference's realised accuracy (what a monitor without labels
  would assume).

Datasets: scikit-learn's ``breast_cancer`` (logistic regression) and a ``make_classification``
set of 30,000 rows (histogram gradient boosting), each sorted by each of its three features most
correlated with the target, over ``--seeds`` splits. Reported: the mean absolute error (MAE) of
each estimate against the realised value over all chunks. The claim: ours at most NannyML's.

    python benchmarks/bench_cbpe.py [--nannyml-python /tmp/nannyvenv/bin/python] [--seeds 5] [--chunks 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import facts  # noqa: E402

from raymlops.stats.cbpe import Calibration, estimate  # noqa: E402
from raymlops.train.evaluate import calibration_of  # noqa: E402

NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"

NANNYML_SCRIPT = r"""
import json, sys, warnings
import numpy as np, pandas as pd, nannyml as nml
warnings.filterwarnings("ignore")
d = np.load(sys.argv[1])
out = []
for k in range(int(d["cases"])):
    ref = pd.DataFrame({"p": d[f"ref_p{k}"], "y_pred": d[f"ref_pred{k}"], "y_true": d[f"ref_y{k}"]})
    ana = pd.DataFrame({"p": d[f"ana_p{k}"], "y_pred": d[f"ana_pred{k}"]})
    est = nml.CBPE(y_pred_proba="p", y_pred="y_pred", y_true="y_true", problem_type="classification_binary",
                   metrics=["accuracy", "roc_auc"], chunk_size=int(d[f"chunk{k}"]))
    est.fit(ref)
    r = est.estimate(ana).filter(period="analysis").to_df()
    out.append({"accuracy": r[("accuracy", "value")].tolist(), "roc_auc": r[("roc_auc", "value")].tolist()})
print(json.dumps({"version": nml.__version__, "cases": out}))
"""


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray, Any]]:
    from sklearn.datasets import load_breast_cancer, make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bc = load_breast_cancer()
    X, y = make_classification(30_000, n_features=10, n_informative=5, n_redundant=2, flip_y=0.05, class_sep=0.8,
                               random_state=0)
    return {
        "breast_cancer": (bc.data, bc.target, lambda s: make_pipeline(StandardScaler(), LogisticRegression(C=0.1))),
        "make_classification": (X, y, lambda s: HistGradientBoostingClassifier(max_iter=100, random_state=s)),
    }


def cases(seeds: int, chunks: int) -> list[dict[str, Any]]:
    out = []
    for name, (X, y, make) in datasets().items():
        corr = np.abs([np.corrcoef(X[:, j], y)[0, 1] for j in range(X.shape[1])])
        features = [int(j) for j in np.argsort(-corr)[:3]]
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(y))
            n_train, n_ref = int(0.4 * len(y)), int(0.2 * len(y))
            tr, ref, ana = order[:n_train], order[n_train:n_train + n_ref], order[n_train + n_ref:]
            model = make(seed).fit(X[tr], y[tr])
            cal = calibration_of(model, X[ref], y[ref])
            assert cal is not None
            for j in features:
                a = ana[np.argsort(X[ana, j], kind="stable")]
                size = len(a) // chunks
                a = a[: size * chunks]
                out.append({"dataset": name, "seed": seed, "feature": j, "chunk": size, "model": model, "cal": cal,
                            "ref": ref, "ana": a, "X": X, "y": y})
    return out


def ours(case: dict[str, Any], chunks: int) -> dict[str, list[float]]:
    X, y, model, a, size = case["X"], case["y"], case["model"], case["ana"], case["chunk"]
    cal = Calibration.from_dict(case["cal"])
    p = model.predict_proba(X[a])[:, 1]
    pred = model.predict(X[a])
    res: dict[str, list[float]] = {"realised_accuracy": [], "realised_roc_auc": [], "accuracy": [], "roc_auc": [],
                                   "reference_accuracy": [], "reference_roc_auc": []}
    for k in range(chunks):
        part = slice(k * size, (k + 1) * size)
        yk = y[a][part]
        res["realised_accuracy"].append(float(np.mean(pred[part] == yk)))
        res["realised_roc_auc"].append(float(roc_auc_score(yk, p[part])) if 0 < yk.mean() < 1 else float("nan"))
        est = estimate(cal.apply(p[part]), pred[part] == 1)
        res["accuracy"].append(est["accuracy"])
        res["roc_auc"].append(est["roc_auc"])
        res["reference_accuracy"].append(case["cal"]["reference"]["accuracy"])
        res["reference_roc_auc"].append(case["cal"]["reference"]["roc_auc"])
    return res


Estimates = list[dict[str, list[float]]]


def nannyml(all_cases: list[dict[str, Any]], python: str) -> tuple[str | None, Estimates | None, str]:
    if not Path(python).exists():
        return None, None, f"NannyML skipped: no interpreter at {python}"
    arrays: dict[str, Any] = {"cases": len(all_cases)}
    for k, c in enumerate(all_cases):
        X, y, model = c["X"], c["y"], c["model"]
        arrays[f"ref_p{k}"] = model.predict_proba(X[c["ref"]])[:, 1]
        arrays[f"ref_pred{k}"] = model.predict(X[c["ref"]])
        arrays[f"ref_y{k}"] = y[c["ref"]]
        arrays[f"ana_p{k}"] = model.predict_proba(X[c["ana"]])[:, 1]
        arrays[f"ana_pred{k}"] = model.predict(X[c["ana"]])
        arrays[f"chunk{k}"] = c["chunk"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cases.npz"
        np.savez(data, **arrays)
        done = subprocess.run([python, "-c", NANNYML_SCRIPT, str(data)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return None, None, "NannyML failed: " + done.stderr.strip().splitlines()[-1]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return got["version"], got["cases"], ""


def mae(est: list[float], real: list[float]) -> float:
    e, r = np.asarray(est, dtype=float), np.asarray(real, dtype=float)
    ok = np.isfinite(e) & np.isfinite(r)
    return float(np.mean(np.abs(e[ok] - r[ok])))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nannyml-python", default="/tmp/nannyvenv/bin/python")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    t0 = time.perf_counter()
    all_cases = cases(args.seeds, args.chunks)
    mine = [ours(c, args.chunks) for c in all_cases]
    version, theirs, note = nannyml(all_cases, args.nannyml_python)
    if note:
        print(note)
    res: dict[str, Any] = {"benchmark": NAME, "machine": facts(), "nannyml": version, "note": note or None,
                           "seeds": args.seeds, "chunks": args.chunks, "datasets": {}}
    print(f"\nMAE against the realised value per chunk ({args.chunks} chunks sorted by one feature; "
          f"{args.seeds} splits x 3 features per dataset; NannyML {version or 'not run'})")
    print(f"{'dataset':<20} {'chunk rows':>10} {'realised acc range':>19} {'ours':>7} {'NannyML':>8} "
          f"{'constant':>8} | {'AUC ours':>8} {'NannyML':>8} {'constant':>8}")
    for name in dict.fromkeys(c["dataset"] for c in all_cases):
        idx = [k for k, c in enumerate(all_cases) if c["dataset"] == name]

        def pooled(key: str, source: list[dict[str, list[float]]], idx: list[int] = idx) -> list[float]:
            return [v for k in idx for v in source[k][key]]

        real_acc, real_auc = pooled("realised_accuracy", mine), pooled("realised_roc_auc", mine)
        row = {
            "chunk_rows": all_cases[idx[0]]["chunk"], "chunks": len(real_acc),
            "realised_accuracy_min": float(np.min(real_acc)), "realised_accuracy_max": float(np.max(real_acc)),
            "mae_accuracy_ours": mae(pooled("accuracy", mine), real_acc),
            "mae_accuracy_constant": mae(pooled("reference_accuracy", mine), real_acc),
            "mae_roc_auc_ours": mae(pooled("roc_auc", mine), real_auc),
            "mae_roc_auc_constant": mae(pooled("reference_roc_auc", mine), real_auc),
        }
        if theirs is not None:
            row["mae_accuracy_nannyml"] = mae(pooled("accuracy", theirs), real_acc)
            row["mae_roc_auc_nannyml"] = mae(pooled("roc_auc", theirs), real_auc)
        res["datasets"][name] = row
        nm, nma = row.get("mae_accuracy_nannyml"), row.get("mae_roc_auc_nannyml")
        lo, hi = row["realised_accuracy_min"], row["realised_accuracy_max"]
        print(f"{name:<20} {row['chunk_rows']:>10} {lo:>9.3f}-{hi:<9.3f}"
              f" {row['mae_accuracy_ours']:>7.4f} {'-' if nm is None else f'{nm:.4f}':>8} "
              f"{row['mae_accuracy_constant']:>8.4f} | {row['mae_roc_auc_ours']:>8.4f} "
              f"{'-' if nma is None else f'{nma:.4f}':>8} {row['mae_roc_auc_constant']:>8.4f}")
    rows = res["datasets"].values()
    res["claims"] = {
        "ours_beats_constant_accuracy": all(r["mae_accuracy_ours"] < r["mae_accuracy_constant"] for r in rows),
        "ours_at_most_nannyml_accuracy": None if theirs is None else all(
            r["mae_accuracy_ours"] <= r["mae_accuracy_nannyml"] + 1e-9 for r in rows),  # equal up to rounding
    }
    print("claims: " + ", ".join(f"{k}={v}" for k, v in res["claims"].items()))
    res["per_case"] = [{"dataset": c["dataset"], "seed": c["seed"], "feature": c["feature"], "ours": m,
                        "nannyml": None if theirs is None else theirs[k]}
                       for k, (c, m) in enumerate(zip(all_cases, mine, strict=True))]
    res["wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str))
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

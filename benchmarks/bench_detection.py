#!/usr/bin/env python
"""Detection quality of the offline check: calibration, power, and real shifts.

Claims measured, all through :func:`raymlops.monitor.offline.check` (what ``raymlops monitor
check`` runs) with default settings (alpha 0.05, Bonferroni, dataset rule ``any``):

- **calibration**: ``--splits`` random halvings of each of scikit-learn's shipped datasets
  (digits, wine, breast_cancer, diabetes, iris): no drift by construction. The dataset-level
  false-alarm rate should be at most alpha; the per-feature p-values, pooled per column kind
  (continuous: KS, exact given the ties; discrete: chi-square on the support), are tested for
  uniformity with a KS test. Columns constant in their dataset (3 digits pixels) are left out
  and counted: their p-value is 1 under any test. Discrete columns are also shown in two groups:
  those that meet Cochran's rule (at most 20 % of the expected counts of a half below 5) and the
  sparse ones (where the check uses the table's permutation law). The p-values users get are
  randomised within the statistic's atom (``raymlops.stats.randomised``: exactly uniform under
  the null a random halving draws from); the rows "P(T >= t)" pool ``p_value_upper``, the
  non-randomised p-value beside it (KS on n + m values takes at most n m values, so even its
  exact p-values sit on atoms: their mean is above 0.5 and fewer than alpha of them fall below
  alpha). The columns of one split are correlated (breast
  cancer's radius, perimeter and area), so pooled p-values are not independent and their KS
  p-value is too small; the check is also made per column (independent splits): one KS test
  each, then those p-values against uniform; and one column drawn at random from each split
  (independent p-values, pooled per kind). The dataset false-alarm rate comes with its 95 %
  interval and an exact one-sided binomial test of "rate <= alpha": with exact tests and
  Bonferroni over nearly independent columns the rate is just below alpha, so 200 splits land
  above it about half the time;
- **power**: known shifts (mean; the same on values rounded to a 0.25 sd grid, i.e. tied; scale;
  category mix; a low-cardinality integer feature) at several sample sizes, ``--trials`` each:
  our per-feature detection rate (p < alpha) against exact ``scipy.stats.ks_2samp`` and
  ``scipy.stats.chi2_contingency`` (``correction=False``) on the same data; target ratio >= 0.98;
- **a shift in one slice only**: four equal segments, the current rows of one segment moved by
  0.5 sd; ours checks with ``slice_columns=["segment"]`` and counts a detection when the whole
  table or any slice drifts (Bonferroni over every (slice, feature) test); the baseline is exact
  ``ks_2samp`` on the whole column (what a check without slices sees), and ``ks_2samp`` on the
  shifted segment alone is shown as the oracle that knows where to look;
- **real shifts**: populations that differ (digits classes 0-4 vs 5-9, wine cultivar 1 vs 2+3,
  breast cancer malignant vs benign) must be flagged at dataset level; the flags of the previous
  rule (KS on every column, Bonferroni, then >= 50 % of the flags) are shown for comparison, and
  with ``--peers PYTHON`` the verdicts of alibi-detect and Evidently with their defaults, run by
  ``peers_detection.py`` in that Python (a throwaway virtual environment: they are not
  dependencies).

    python benchmarks/bench_detection.py [--splits 200] [--trials 200] [--peers PYTHON] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import facts  # noqa: E402
from peers_detection import cases as real_cases  # noqa: E402
from peers_detection import load  # noqa: E402

from raymlops.config import MonitorConfig  # noqa: E402
from raymlops.monitor.offline import check  # noqa: E402

NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
ALPHA = 0.05
DATASETS = ("digits", "wine", "breast_cancer", "diabetes", "iris")


def _uniformity(ps: list[float]) -> dict[str, float]:
    arr = np.asarray(ps)
    ks = stats.kstest(arr, "uniform")
    return {"p_values": arr.size, "mean": float(arr.mean()), "share_below_alpha": float(np.mean(arr < ALPHA)),
            "ks_statistic": float(ks.statistic), "ks_p_value": float(ks.pvalue)}


def calibration(splits: int, cfg: MonitorConfig) -> dict[str, Any]:
    """Columns constant in a dataset (digits: 3 pixels always 0) are constant in both halves of
    every split: their p-value is 1 under any test, so they are counted but left out of the
    uniformity test."""
    out: dict[str, Any] = {}
    pooled: dict[str, list[float]] = {}
    by_column: dict[tuple[str, str], list[float]] = {}
    constant_tests = 0
    for name in DATASETS:
        x, _ = load(name)
        constant = {c for c in x.columns if x[c].nunique() <= 1}
        sparse = {c for c in x.columns if np.mean(x[c].value_counts().to_numpy() / 2 < 5) > 0.2}
        rng = np.random.default_rng(0)
        pick = np.random.default_rng(2)
        alarms, feature_alarms, tests = 0, 0, 0
        kinds: dict[str, int] = {}
        for _ in range(splits):
            half = rng.permutation(len(x)) < len(x) // 2
            res = check(x[half], x[~half], cfg, threads=1)
            alarms += bool(res["drift"])
            for col, f in res["features"].items():
                kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
                feature_alarms += f["p_value"] < ALPHA
                tests += 1
                if col in constant:
                    constant_tests += 1
                    continue
                pooled.setdefault(f["kind"], []).append(f["p_value"])
                if f["kind"] == "discrete":
                    pooled.setdefault(f"discrete, {'sparse' if col in sparse else 'Cochran met'}", []).append(
                        f["p_value"])
                pooled.setdefault(f"{f['kind']}, P(T >= t) (p_value_upper)", []).append(f["p_value_upper"])
                by_column.setdefault((name, col), []).append(f["p_value"])
            # one column of each split, drawn at random: independent p-values (a split's columns are not)
            col = str(pick.choice(sorted(set(res["features"]) - constant)))
            pooled.setdefault(f"{res['features'][col]['kind']}, one column a split", []).append(
                res["features"][col]["p_value"])
        low, high = stats.binomtest(alarms, splits).proportion_ci(0.95)
        out[name] = {"splits": splits, "rows": len(x), "features": x.shape[1], "constant_features": len(constant),
                     "dataset_false_alarm_rate": alarms / splits, "raw_feature_alarm_rate": feature_alarms / tests,
                     "false_alarm_ci95": [float(low), float(high)],
                     # one-sided exact binomial test of "rate <= alpha": small means the rate exceeds alpha
                     "p_rate_above_alpha": float(stats.binomtest(alarms, splits, ALPHA, alternative="greater").pvalue),
                     "kinds": {k: v // splits for k, v in kinds.items()}}
    uniform = {kind: _uniformity(ps) for kind, ps in pooled.items()}
    # the pooled values are not independent (the columns of one split are correlated): one KS test
    # per column (its splits are independent), then those p-values against uniform
    col_p = np.array([stats.kstest(us, "uniform").pvalue for us in by_column.values()])
    per_column = {"columns": int(col_p.size), "share_ks_p_below_alpha": float(np.mean(col_p < ALPHA)),
                  "ks_p_of_their_ks_p_values": float(stats.kstest(col_p, "uniform").pvalue)}
    return {"datasets": out, "uniformity": uniform, "constant_feature_tests_left_out": constant_tests,
            "per_column": per_column}


def _scenario(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "mean shift 0.3 sd":
        return rng.normal(size=n), rng.normal(0.3, 1.0, n)
    if kind == "0.3 sd, 0.25 grid":  # rounded values: continuous kind, heavily tied
        return np.round(rng.normal(size=n) * 4) / 4, np.round(rng.normal(0.3, 1.0, n) * 4) / 4
    if kind == "scale x1.3":
        return rng.normal(size=n), rng.normal(0.0, 1.3, n)
    if kind == "category mix":
        cats = np.array(["a", "b", "c", "d"], dtype=object)
        return rng.choice(cats, n, p=[0.4, 0.3, 0.2, 0.1]), rng.choice(cats, n, p=[0.3, 0.3, 0.25, 0.15])
    if kind == "integer 0-4 shift":
        return rng.binomial(4, 0.5, n).astype(np.float64), rng.binomial(4, 0.58, n).astype(np.float64)
    raise AssertionError(kind)


def _exact_p(kind: str, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    out = {}
    values = np.unique(np.concatenate([a, b]))
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    if kind in ("category mix", "integer 0-4 shift"):
        out["chi2_contingency"] = float(stats.chi2_contingency(table, correction=False).pvalue)
    if kind != "category mix":
        out["ks_2samp"] = float(stats.ks_2samp(a, b).pvalue)
    return out


def power(trials: int, sizes: list[int], cfg: MonitorConfig) -> list[dict[str, Any]]:
    rows = []
    for kind in ("mean shift 0.3 sd", "0.3 sd, 0.25 grid", "scale x1.3", "category mix", "integer 0-4 shift"):
        for n in sizes:
            rng = np.random.default_rng(n)
            ours, theirs = 0, {}
            test = None
            for _ in range(trials):
                a, b = _scenario(kind, n, rng)
                res = check(pd.DataFrame({"x": a}), pd.DataFrame({"x": b}), cfg, threads=1)
                f = res["features"]["x"]
                test = f"{f['p_value_test']} ({f['kind']})"
                ours += f["p_value"] < ALPHA
                for k, p in _exact_p(kind, a, b).items():
                    theirs[k] = theirs.get(k, 0) + (p < ALPHA)
            best = max(theirs.values())
            rows.append({"scenario": kind, "n": n, "trials": trials, "our_test": test, "ours": ours / trials,
                         **{k: v / trials for k, v in theirs.items()},
                         "ratio_to_best_exact": (ours / best) if best else None})
    return rows


def slice_power(trials: int, sizes: list[int], cfg: MonitorConfig) -> list[dict[str, Any]]:
    """One of four segments shifted by 0.5 sd in the current rows; n rows per side in all."""
    rows = []
    segments = np.array(["a", "b", "c", "d"], dtype=object)
    for n in sizes:
        rng = np.random.default_rng(10_000 + n)
        ours = whole = oracle = 0
        for _ in range(trials):
            seg_a, seg_b = rng.choice(segments, n), rng.choice(segments, n)
            a, b = rng.normal(size=n), rng.normal(size=n)
            b = b + 0.5 * (seg_b == "d")
            res = check(pd.DataFrame({"x": a, "segment": seg_a}), pd.DataFrame({"x": b, "segment": seg_b}), cfg,
                        slice_columns=["segment"], threads=1)
            ours += bool(res["drift"]) or any(sl["drift"] for sl in res["slices"].values())
            whole += stats.ks_2samp(a, b).pvalue < ALPHA
            oracle += stats.ks_2samp(a[seg_a == "d"], b[seg_b == "d"]).pvalue < ALPHA
        rows.append({"scenario": "one slice +0.5 sd", "n": n, "trials": trials, "ours": ours / trials,
                     "ks_2samp_whole_column": whole / trials, "ks_2samp_shifted_slice_only": oracle / trials,
                     "ratio_to_whole_column": (ours / whole) if whole else None})
    return rows


def peers(python: str) -> dict[str, Any]:
    script = Path(__file__).resolve().parent / "peers_detection.py"
    proc = subprocess.run([python, str(script)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"peers_detection.py failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def real_shifts(cfg: MonitorConfig) -> list[dict[str, Any]]:
    out = []
    for name, a, b in real_cases():  # the same cases the peers get
        res = check(a, b, cfg)
        ks_p = np.array([stats.ks_2samp(a[c], b[c]).pvalue for c in a.columns])
        old_flags = int(np.sum(np.minimum(ks_p * len(ks_p), 1.0) < ALPHA))
        out.append({"case": name, "features": a.shape[1], "flagged": len(res["drifted_features"]),
                    "dataset_drift": res["drift"], "kinds": sorted({f["kind"] for f in res["features"].values()}),
                    "old_rule_flags_ks_bonferroni": old_flags,
                    "old_rule_dataset_drift": bool(old_flags / len(ks_p) >= 0.5)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--sizes", default="50,200,1000")
    ap.add_argument("--peers", help="Python of a virtual environment with alibi-detect and evidently")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    cfg = MonitorConfig()
    res: dict[str, Any] = {"benchmark": NAME, "machine": facts(), "args": {k: str(v) for k, v in vars(args).items()}}
    t = time.perf_counter()
    cal = calibration(args.splits, cfg)
    res["calibration"] = cal
    print(f"calibration: {args.splits} random halvings per dataset (no drift), alpha {ALPHA}, Bonferroni, rule 'any'")
    print(f"{'dataset':<15} {'rows':>5} {'features':>8} {'constant':>8} {'kinds':<16} {'false alarms':>12} "
          f"{'95% CI':>13} {'p(> alpha)':>10} {'raw feature p<a':>16}")
    for name, d in cal["datasets"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in d["kinds"].items())
        ci = "{:.3f}-{:.3f}".format(*d["false_alarm_ci95"])
        print(f"{name:<15} {d['rows']:>5} {d['features']:>8} {d['constant_features']:>8} {kinds:<16} "
              f"{d['dataset_false_alarm_rate']:>12.3f} {ci:>13} {d['p_rate_above_alpha']:>10.2f} "
              f"{d['raw_feature_alarm_rate']:>16.3f}")
    print(f"\nper-feature p-values by kind ({cal['constant_feature_tests_left_out']} tests of columns constant in "
          "their dataset left out: p = 1 under any test)")
    print(f"{'kind':<34} {'n':>7} {'mean':>6} {'share < alpha':>14} {'KS vs uniform':>14} {'KS p':>9}")
    for kind, u in cal["uniformity"].items():
        print(f"{kind:<34} {u['p_values']:>7} {u['mean']:>6.3f} {u['share_below_alpha']:>14.3f} "
              f"{u['ks_statistic']:>14.3f} {u['ks_p_value']:>9.2g}")
    pc = cal["per_column"]
    print(f"  p_value, one KS test per column ({pc['columns']} non-constant columns, independent splits): "
          f"{pc['share_ks_p_below_alpha']:.3f} of them p < alpha; their p-values vs uniform: KS p "
          f"{pc['ks_p_of_their_ks_p_values']:.2g}")
    pw = power(args.trials, [int(s) for s in args.sizes.split(",")], cfg)
    res["power"] = pw
    print(f"\npower: detection rate (p < {ALPHA}) over {args.trials} trials, n rows per side")
    print(f"{'scenario':<20} {'n':>5} {'our test':<22} {'ours':>6} {'ks_2samp':>9} {'chi2_cont.':>10} {'ratio':>6}")
    for r in pw:
        ks = r.get("ks_2samp")
        chi = r.get("chi2_contingency")
        print(f"{r['scenario']:<20} {r['n']:>5} {r['our_test']:<22} {r['ours']:>6.3f} "
              f"{'-' if ks is None else f'{ks:.3f}':>9} {'-' if chi is None else f'{chi:.3f}':>10} "
              f"{'-' if r['ratio_to_best_exact'] is None else format(r['ratio_to_best_exact'], '.3f'):>6}")
    sp = slice_power(args.trials, [int(s) for s in args.sizes.split(",")], cfg)
    res["slice_power"] = sp
    print(f"\nshift in one slice only: detection rate over {args.trials} trials, n rows per side")
    print(f"{'scenario':<20} {'n':>5} {'ours (sliced)':>13} {'ks whole col':>12} {'ks that slice':>13} {'ratio':>6}")
    for r in sp:
        ratio = r["ratio_to_whole_column"]
        print(f"{r['scenario']:<20} {r['n']:>5} {r['ours']:>13.3f} {r['ks_2samp_whole_column']:>12.3f} "
              f"{r['ks_2samp_shifted_slice_only']:>13.3f} {'-' if ratio is None else format(ratio, '.3f'):>6}")
    real = real_shifts(cfg)
    res["real_shifts"] = real
    peer = peers(args.peers) if args.peers else {}
    res["peers"] = peer

    def verdict(p: dict[str, Any] | None) -> str:
        if not p:
            return "-"
        return "error" if "error" in p else f"{p['flagged']} {p['drift']}"

    print("\nreal shifts (dataset level; peers: flagged features and dataset verdict, their defaults)")
    print(f"{'case':<36} {'features':>8} {'flagged':>8} {'drift':>6} {'old: KS+Bonf. flags':>20} {'old drift':>10} "
          f"{'alibi-detect':>13} {'Evidently':>11}")
    for r in real:
        p = peer.get(r["case"], {})
        print(f"{r['case']:<36} {r['features']:>8} {r['flagged']:>8} {str(r['dataset_drift']):>6} "
              f"{r['old_rule_flags_ks_bonferroni']:>20} {str(r['old_rule_dataset_drift']):>10} "
              f"{verdict(p.get('alibi_detect')):>13} {verdict(p.get('evidently')):>11}")
    for name, p in peer.items():
        for who, v in p.items():
            if "error" in v:
                print(f"  {who} on {name}: {v['error']}")
    if peer:
        versions = {who: v.get("version") for p in peer.values() for who, v in p.items() if "version" in v}
        print(f"  peers: {versions}")
    res["wall_s"] = time.perf_counter() - t
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str))
    print(f"\nwrote {args.out} ({res['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

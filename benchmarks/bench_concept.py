#!/usr/bin/env python
"""Concept drift from the error stream: how fast and how cleanly the change detectors fire.

Streams with known change points from river's synthetic generators (river is *not* a
dependency: install it where only this script sees it, ``pip install --target /tmp/riverlib
river``, and pass ``--river /tmp/riverlib``; it is appended to ``sys.path`` so the project's own
numpy and scikit-learn stay first):

- ``agrawal``: Agrawal function 0, then function 2 (inputs unchanged, the labelling rule changes);
- ``sea``: SEA variant 0 (threshold 8), then variant 3 (threshold 9.5), with 10 % label noise;

each **abrupt** (the two generators joined) and **gradual** (``ConceptDriftStream`` width 1,000), change at row
10,000 of 20,000, ``--seeds`` streams each. A scikit-learn ``HistGradientBoostingClassifier`` is
fitted on 5,000 rows of the pre-change concept; each streamed row's error (1 - correct) goes to:

- ours: :class:`raymlops.stats.change.ADWIN` (delta 0.002) and ``PageHinkley`` (the monitor's
  defaults), counting rises of the error only (what the monitor alerts on);
- river's ``drift.ADWIN`` (delta 0.002; it has no direction: every detection counts) and river's
  ``drift.PageHinkley`` (mode ``up``);
- a trivial detector that alarms every ``--every`` labels.

Scores: a change is detected when an alarm falls in ``[start, start + max delay]`` (start: the
change position, minus half the width for gradual ones; max delay 1,000 abrupt / 2,000 gradual);
other alarms on those streams are false; precision, recall and F1 over all drift streams; the
mean detection delay (and, against river's ADWIN, over the streams both detected); and false
alarms per 10,000 labels on the same generators without a change. The claims: our F1 above the
trivial detector's, our ADWIN's delay within 10 % of river's.

    python benchmarks/bench_concept.py --river /tmp/riverlib [--seeds 8] [--every 1000] [--out PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import facts  # noqa: E402

from raymlops.stats.change import ADWIN, PageHinkley  # noqa: E402

NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
LENGTH, POSITION, TRAIN_ROWS = 20_000, 10_000, 5_000
SCENARIOS = {  # name: (generator, pre-change, post-change, width, max delay)
    "agrawal-abrupt": ("agrawal", 0, 2, 1, 1_000),
    "agrawal-gradual": ("agrawal", 0, 2, 1_000, 2_000),
    "sea-abrupt": ("sea", 0, 3, 1, 1_000),
    "sea-gradual": ("sea", 0, 3, 1_000, 2_000),
}


def generator(kind: str, concept: int, seed: int) -> Any:
    from river.datasets import synth

    if kind == "agrawal":
        return synth.Agrawal(classification_function=concept, seed=seed)
    return synth.SEA(variant=concept, noise=0.1, seed=seed)


def rows(stream: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*itertools.islice(stream, n), strict=True)
    return np.array([list(x.values()) for x in xs], dtype=np.float64), np.array(ys).astype(int)


class Every:
    """Alarms every ``n`` labels, whatever they are."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def update(self, _: float) -> bool:
        self.seen += 1
        return self.seen % self.n == 0


def detectors(every: int) -> dict[str, Any]:
    from river import drift

    ours_adwin, ours_ph = ADWIN(delta=0.002), PageHinkley()
    river_adwin, river_ph = drift.ADWIN(delta=0.002), drift.PageHinkley(mode="up")
    trivial = Every(every)

    def river_update(det: Any) -> Any:
        def update(x: float) -> bool:
            det.update(x)
            return bool(det.drift_detected)
        return update

    return {
        "ours ADWIN": lambda x: ours_adwin.update(x) and ours_adwin.last_increase,
        "ours Page-Hinkley": lambda x: ours_ph.update(x) and ours_ph.last_increase,
        "river ADWIN": river_update(river_adwin),
        "river Page-Hinkley": river_update(river_ph),
        f"every {every} labels": trivial.update,
    }


def alarms_of(errors: np.ndarray, every: int) -> tuple[dict[str, list[int]], dict[str, float]]:
    out: dict[str, list[int]] = {}
    secs: dict[str, float] = {}
    for name, update in detectors(every).items():
        t = time.perf_counter()
        out[name] = [i for i, e in enumerate(errors.tolist()) if update(e)]
        secs[name] = time.perf_counter() - t
    return out, secs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--river", default="/tmp/riverlib", help="a folder holding river (appended to sys.path)")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--every", type=int, default=1_000, help="the trivial detector's period")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    sys.path.append(args.river)
    try:
        import river
        from river.datasets import synth
    except ImportError:
        print(f"river is not importable from {args.river}: pip install --target {args.river} river", file=sys.stderr)
        return 2
    from sklearn.ensemble import HistGradientBoostingClassifier

    t0 = time.perf_counter()
    res: dict[str, Any] = {"benchmark": NAME, "machine": facts(), "river": river.__version__, "seeds": args.seeds,
                           "length": LENGTH, "position": POSITION, "train_rows": TRAIN_ROWS, "every": args.every}
    names = list(detectors(args.every))
    per: dict[str, dict[str, Any]] = {n: {"tp": 0, "fn": 0, "fp": 0, "delays": [], "stationary_alarms": 0,
                                          "stationary_labels": 0, "update_s": 0.0, "labels": 0} for n in names}
    streams: list[dict[str, Any]] = []
    models: dict[tuple[str, int], Any] = {}
    for scenario, (kind, pre, post, width, max_delay) in SCENARIOS.items():
        for seed in range(args.seeds):
            key = (kind, seed)
            if key not in models:
                X, y = rows(generator(kind, pre, 1_000 + seed), TRAIN_ROWS)
                models[key] = HistGradientBoostingClassifier(random_state=seed).fit(X, y)
                Xs, ys = rows(generator(kind, pre, 2_000 + seed), LENGTH)  # the same concept: no change
                errors = (models[key].predict(Xs) != ys).astype(np.float64)
                found, secs = alarms_of(errors, args.every)
                for n in names:
                    per[n]["stationary_alarms"] += len(found[n])
                    per[n]["stationary_labels"] += LENGTH
                streams.append({"scenario": f"{kind}-none", "seed": seed, "error_rate": float(errors.mean()),
                                "alarms": {n: len(found[n]) for n in names}})
            if width > 1:
                drifting = synth.ConceptDriftStream(stream=generator(kind, pre, seed), drift_stream=generator(
                    kind, post, 500 + seed), position=POSITION, width=width, seed=seed)
                Xs, ys = rows(drifting, LENGTH)
            else:  # abrupt: river's sigmoid overflows at width 1, so the two streams are joined
                Xa, ya = rows(generator(kind, pre, seed), POSITION)
                Xb, yb = rows(generator(kind, post, 500 + seed), LENGTH - POSITION)
                Xs, ys = np.vstack([Xa, Xb]), np.concatenate([ya, yb])
            errors = (models[key].predict(Xs) != ys).astype(np.float64)
            found, secs = alarms_of(errors, args.every)
            start = POSITION - width // 2
            record: dict[str, Any] = {"scenario": scenario, "seed": seed, "error_before": float(errors[:start].mean()),
                                      "error_after": float(errors[start + max_delay:].mean()), "delay": {}}
            for n in names:
                hits = [i for i in found[n] if start <= i <= start + max_delay]
                per[n]["fp"] += len(found[n]) - len(hits)
                per[n]["update_s"] += secs[n]
                per[n]["labels"] += LENGTH
                if hits:
                    per[n]["tp"] += 1
                    per[n]["delays"].append(hits[0] - start)
                    record["delay"][n] = hits[0] - start
                else:
                    per[n]["fn"] += 1
                    record["delay"][n] = None
            streams.append(record)
            print(f"  {scenario:<16} seed {seed}: error {record['error_before']:.3f} -> {record['error_after']:.3f}, "
                  f"delays " + ", ".join(f"{n.split()[0][0]}{n.split()[1][0]}={record['delay'][n]}" for n in names),
                  flush=True)
    summary: dict[str, dict[str, Any]] = {}
    for n in names:
        p = per[n]
        precision = p["tp"] / (p["tp"] + p["fp"]) if p["tp"] + p["fp"] else 0.0
        recall = p["tp"] / (p["tp"] + p["fn"])
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        summary[n] = {"detected": p["tp"], "changes": p["tp"] + p["fn"], "false_alarms": p["fp"],
                      "precision": precision, "recall": recall, "f1": f1,
                      "mean_delay": float(np.mean(p["delays"])) if p["delays"] else None,
                      "median_delay": float(np.median(p["delays"])) if p["delays"] else None,
                      "false_alarms_per_10k_stationary": 1e4 * p["stationary_alarms"] / max(p["stationary_labels"], 1),
                      "us_per_label": 1e6 * p["update_s"] / max(p["labels"], 1)}
    # delay against river's ADWIN on the streams both detected
    drift_streams = [s for s in streams if "delay" in s]
    for n in ("ours ADWIN", "ours Page-Hinkley"):
        both = [(s["delay"][n], s["delay"]["river ADWIN"]) for s in drift_streams
                if s["delay"][n] is not None and s["delay"]["river ADWIN"] is not None]
        ours_d, river_d = (float(np.mean([a for a, _ in both])), float(np.mean([b for _, b in both]))) if both else \
            (float("nan"), float("nan"))
        summary[n]["common_streams_with_river_adwin"] = len(both)
        summary[n]["delay_vs_river_adwin"] = ours_d / river_d if both and river_d > 0 else None
    res["summary"] = summary
    res["streams"] = streams
    trivial = summary[f"every {args.every} labels"]["f1"]
    ours = summary["ours ADWIN"]
    res["claims"] = {
        "ours_adwin_f1_beats_trivial": ours["f1"] > trivial,
        "ours_page_hinkley_f1_beats_trivial": summary["ours Page-Hinkley"]["f1"] > trivial,
        "ours_adwin_delay_within_10pct_of_river": ours["delay_vs_river_adwin"] is not None
        and abs(ours["delay_vs_river_adwin"] - 1.0) <= 0.10,
    }
    print(f"\n{len(drift_streams)} drift streams ({', '.join(SCENARIOS)}; {args.seeds} seeds each), "
          f"{per[names[0]]['stationary_labels']:,} labels without a change")
    print(f"{'detector':<20} {'found':>7} {'false':>6} {'prec.':>6} {'recall':>6} {'F1':>6} {'delay':>7} {'median':>7} "
          f"{'FA/10k':>7} {'vs river':>8} {'us/label':>9}")
    for n, s in summary.items():
        ratio = s.get("delay_vs_river_adwin")
        print(f"{n:<20} {s['detected']:>3}/{s['changes']:<3} {s['false_alarms']:>6} {s['precision']:>6.3f} "
              f"{s['recall']:>6.3f} {s['f1']:>6.3f} {_f(s['mean_delay']):>7} {_f(s['median_delay']):>7} "
              f"{s['false_alarms_per_10k_stationary']:>7.2f} {'-' if ratio is None else f'{ratio:.3f}':>8} "
              f"{s['us_per_label']:>9.2f}")
    print("claims: " + ", ".join(f"{k}={v}" for k, v in res["claims"].items()))
    res["wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str))
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)")
    return 0


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


if __name__ == "__main__":
    raise SystemExit(main())

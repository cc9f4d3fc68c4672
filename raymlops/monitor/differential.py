"""Differential monitoring: champion vs challenger on the same requests (shadow or canary).

Each version's predictions are counted per label (prediction distribution), and rows that
carry request ids are paired across versions in a bounded pending map; a pair counts towards
agreement overall and in the champion row's slice. At the end of each window the prediction
distributions are compared (Jensen-Shannon distance), as are the agreement rate and each
slice's agreement against the overall one; beyond the configured bounds, an alert.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from typing import Any

import numpy as np

from raymlops.config import MonitorDifferentialConfig
from raymlops.monitor.alerts import Alert
from raymlops.monitor.reference import labels_of
from raymlops.stats.counts import js_counts

__all__ = ["DifferentialTracker"]

_MAX_LABELS = 100  # distinct prediction labels counted per version; the rest is "(other)"


class DifferentialTracker:
    def __init__(self, cfg: MonitorDifferentialConfig, slices: tuple[str, ...]) -> None:
        self.cfg = cfg
        self.slices = slices
        self.champion: str | None = cfg.champion
        self.pending: OrderedDict[str, tuple[str, str, int]] = OrderedDict()  # rid -> (version, label, slice)
        self.reset()
        self.last: dict[str, Any] | None = None

    def reset(self) -> None:
        self.dist: dict[str, Counter[str]] = {}
        self.pairs = np.zeros(len(self.slices), dtype=np.int64)
        self.agree = np.zeros(len(self.slices), dtype=np.int64)

    def is_champion(self, version: str | None) -> bool:
        if version is None:
            return True
        if self.champion is None:
            self.champion = version
        return version == self.champion

    def add(self, version: str, predictions: Any, request_ids: list[str] | None, slices: Any) -> None:
        labels, _ = labels_of(np.asarray(predictions).ravel())
        counter = self.dist.setdefault(version, Counter())
        for lab, c in zip(*np.unique(labels.astype(str), return_counts=True), strict=True):
            key = str(lab) if (str(lab) in counter or len(counter) < _MAX_LABELS) else "(other)"
            counter[key] += int(c)
        if request_ids is None or (version == self.champion and len(self.dist) < 2):
            return  # nothing to pair with until a challenger shows up
        slice_list = np.asarray(slices).tolist()
        for rid, lab, s in zip(request_ids, labels.tolist(), slice_list, strict=True):
            other = self.pending.pop(rid, None)
            if other is None:
                self.pending[rid] = (version, lab, int(s))
                continue
            if other[0] == version:  # the same version twice: keep the newer row waiting
                self.pending[rid] = (version, lab, int(s))
                continue
            champ_slice = int(s) if version == self.champion else other[2]
            self.pairs[champ_slice] += 1
            self.agree[champ_slice] += int(lab == other[1])
        while len(self.pending) > self.cfg.pending_size:
            self.pending.popitem(last=False)

    def evaluate(self, ts: float, window: int) -> list[Alert]:
        """Judge the window's pairs and distributions, then start afresh."""
        cfg = self.cfg
        champ = self.champion
        others = [v for v in self.dist if v != champ]
        report: dict[str, Any] = {"champion": champ, "challengers": {}}
        alerts: list[Alert] = []
        total_pairs = int(self.pairs.sum())
        agreement = float(self.agree.sum() / total_pairs) if total_pairs else math.nan
        for v in others:
            distance = math.nan
            if champ in self.dist:
                labels = sorted(set(self.dist[champ]) | set(self.dist[v]))
                a = np.array([self.dist[champ][lab] for lab in labels], dtype=np.float64)
                b = np.array([self.dist[v][lab] for lab in labels], dtype=np.float64)
                if a.sum() > 0 and b.sum() > 0:
                    distance = js_counts(a, b)
            report["challengers"][v] = {"prediction_distance": distance, "rows": int(sum(self.dist[v].values()))}
            if math.isfinite(distance) and distance > cfg.max_prediction_distance \
                    and sum(self.dist[v].values()) >= cfg.min_pairs:
                alerts.append(Alert(
                    kind="differential", key=f"differential:distance:{v}", severity="warning",
                    message=f"challenger {v} predicts differently from champion {champ}: Jensen-Shannon "
                            f"distance {distance:.3f} > {cfg.max_prediction_distance}",
                    value=distance, threshold=cfg.max_prediction_distance, ts=ts, window=window))
        report["pairs"] = total_pairs
        report["agreement"] = agreement
        slice_agreement = {}
        if total_pairs >= cfg.min_pairs:
            if agreement < cfg.min_agreement:
                alerts.append(Alert(
                    kind="differential", key="differential:agreement", severity="warning",
                    message=f"champion and challenger agree on {agreement:.1%} of {total_pairs} requests "
                            f"(< {cfg.min_agreement:.1%})",
                    value=agreement, threshold=cfg.min_agreement, ts=ts, window=window))
            for s, name in enumerate(self.slices):
                if len(self.slices) == 1 or self.pairs[s] == 0:
                    continue
                rate = float(self.agree[s] / self.pairs[s])
                slice_agreement[name] = rate
                if self.pairs[s] >= max(cfg.min_pairs // 4, 1) and agreement - rate > cfg.max_slice_agreement_gap:
                    alerts.append(Alert(
                        kind="differential", key=f"differential:slice:{name}", severity="warning",
                        message=f"in slice {name} champion and challenger agree on {rate:.1%}, "
                                f"{agreement - rate:.1%} below the overall {agreement:.1%}",
                        value=agreement - rate, threshold=cfg.max_slice_agreement_gap, ts=ts, window=window,
                        slice=name))
        report["slice_agreement"] = slice_agreement
        self.last = report
        self.reset()
        return alerts

    def status(self) -> dict[str, Any]:
        pairs = int(self.pairs.sum())
        return {"champion": self.champion, "versions": {v: int(sum(c.values())) for v, c in self.dist.items()},
                "pairs": pairs, "agreement": float(self.agree.sum() / pairs) if pairs else None,
                "pending": len(self.pending), "last_window": self.last}

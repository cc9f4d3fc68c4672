"""Model quality from late ground truth: a bounded label store and windowed metrics.

Served rows are remembered by request id (prediction, score, slice) in a :class:`LabelStore`
of bounded size (oldest forgotten first). When labels arrive (``feedback``), each matched row
goes into the current :class:`PerformanceWindow`: per slice, the number of labelled rows and
correct ones (accuracy), the score histograms of positives and negatives (a mergeable,
binned AUC), or the absolute errors (MAE, regression). The first ``baseline_labels`` labelled
rows set the baseline; a window of ``window_labels`` rows whose accuracy or AUC fell by more
than the allowed drop, or whose MAE rose by more than the allowed share, alerts — overall and
per slice. So a change in P(y|x) that leaves the inputs alone is still caught.

A label that arrives before its row (the hand-off to the monitor is asynchronous) waits in an
:class:`~raymlops.monitor.labels.EarlyLabels` store (``early_label_store_size``, for
``early_label_ttl_s``) and is joined in :meth:`PerformanceTracker.remember` when the row comes.
Every label ends matched, waiting, expired or unknown (:mod:`raymlops.monitor.labels`); the
outcome of each label of the last :meth:`~PerformanceTracker.feedback` call is in
``last_outcomes`` (read it under the owner's lock, right after the call).

Every labelled row's error also feeds the change detectors of
:class:`~raymlops.monitor.concept.ConceptDrift` (concept drift within a few hundred labels), and
served rows with probabilities feed :class:`~raymlops.monitor.estimated.PerformanceEstimator`
(accuracy and ROC AUC estimated before labels; beside the realised values in each label window).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.config import MonitorPerformanceConfig
from raymlops.exceptions import ValidationError
from raymlops.monitor.alerts import Alert
from raymlops.monitor.challenger_labels import ChallengerLabels
from raymlops.monitor.concept import ConceptDrift
from raymlops.monitor.estimated import PerformanceEstimator
from raymlops.monitor.labels import EarlyLabels, LabelCounts, RecentIds, RowKeys, put_newest
from raymlops.stats.agreement import MAX_REGRESSION_LABEL
from raymlops.stats.cbpe import histogram_auc
from raymlops.stats.noise import accuracy_drop_beyond_noise, auc_drop_beyond_noise, critical_z

__all__ = ["LabelStore", "PerformanceTracker", "PerformanceWindow", "binned_auc", "same_label"]

SCORE_BINS = 200


@dataclass(frozen=True)
class Pending:
    prediction: float | str
    score: float
    slice: int


class LabelStore:
    """Request id -> (prediction, score, slice), at most ``size`` entries, oldest evicted first.

    Entries are plain tuples in an insertion-ordered dict, written a batch at a time with one
    ``dict.update`` (this runs for every served row: a Python object and a ``move_to_end`` per row
    was a third of the monitor's ingest time); :meth:`pop` hands out :class:`Pending`."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.items: dict[str, Any] = {}
        self.evicted = 0
        self.replaced = 0  # rows of a request whose id a later request reused
        self._multi: bool | None = None  # whether it may hold a multi-row request's rows (None: look)

    def put(self, request_ids: list[str], predictions: list[Any], scores: list[float], slices: list[int],
            requests: dict[str, int] | None = None) -> None:
        """Keep rows by key (``requests``: the batch's request ids and their rows, None: every key is
        a single-row request's id). A request id the store holds rows of names the new request: the
        earlier rows go, counted ``replaced`` (a client that reuses its ``X-Request-Id``)."""
        if not (len(request_ids) == len(predictions) == len(scores) == len(slices)):
            raise ValueError("request_ids, predictions, scores and slices differ in length")
        self._drop_other_shapes(request_ids, requests)
        evicted, held = put_newest(
            self.items, dict(zip(request_ids, zip(predictions, scores, slices, strict=True), strict=True)), self.size)
        self.evicted += evicted
        self.replaced += held

    def _drop_other_shapes(self, keys: list[str], requests: dict[str, int] | None) -> None:
        """The rows of an earlier request with one of these ids that the new keys do not overwrite:
        its ``<id>/<row>`` rows under a single-row request, or its plain id or rows beyond the new
        request's under a multi-row one. Only looked for once the store has held a multi-row
        request's rows (one lookup per request, then)."""
        held_multi = self._multi if self._multi is not None else any("/" in key for key in self.items)
        self._multi = held_multi or (requests is not None and any(rows > 1 for rows in requests.values()))
        if not self.items or not self._multi:
            return
        stale = []
        for rid, rows in (requests or dict.fromkeys(keys, 1)).items():
            if rows > 1 and rid in self.items:
                stale.append(rid)
            k = rows if rows > 1 else 0
            while f"{rid}/{k}" in self.items:
                stale.append(f"{rid}/{k}")
                k += 1
        for key in stale:
            del self.items[key]
        self.replaced += len(stale)

    def __contains__(self, rid: object) -> bool:
        return rid in self.items

    def pop(self, rid: str) -> Pending | None:
        item = self.items.pop(rid, None)
        return None if item is None else Pending(*item)

    def __len__(self) -> int:
        return len(self.items)


def binned_auc(pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64]) -> float:
    """ROC AUC from score histograms of positives and negatives on the same ascending bins
    (ties within a bin count one half). NaN without both classes."""
    return histogram_auc(pos, neg)


class PerformanceWindow:
    """Labelled rows of one window, per slice."""

    def __init__(self, n_slices: int, regression: bool) -> None:
        self.regression = regression
        self.n = np.zeros(n_slices, dtype=np.int64)
        self.correct = np.zeros(n_slices, dtype=np.int64)
        self.abs_err = np.zeros(n_slices, dtype=np.float64)
        self.pos = np.zeros((n_slices, SCORE_BINS), dtype=np.float64)
        self.neg = np.zeros((n_slices, SCORE_BINS), dtype=np.float64)

    @property
    def rows(self) -> int:
        return int(self.n.sum())

    def metrics(self, s: int | None = None) -> dict[str, float]:
        sel = slice(None) if s is None else slice(s, s + 1)
        n = int(self.n[sel].sum())
        if n == 0:
            return {"labels": 0}
        if self.regression:
            return {"labels": n, "mae": float(self.abs_err[sel].sum() / n)}
        return {"labels": n, "accuracy": float(self.correct[sel].sum() / n),
                "auc": binned_auc(self.pos[sel].sum(axis=0), self.neg[sel].sum(axis=0))}


def _regression_label(label: Any, i: int) -> float:
    try:
        value = float(label)
    except (TypeError, ValueError):
        raise ValidationError(f"labels[{i}]: regression labels must be numbers, got {label!r}") from None
    if not abs(value) <= MAX_REGRESSION_LABEL:
        raise ValidationError(f"labels[{i}]: regression labels must be finite numbers of magnitude at most "
                              f"{MAX_REGRESSION_LABEL:g} (the error sums must stay finite), got {label!r}")
    return value


def same_label(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def label_lists(request_ids: Any, labels: Any) -> dict[str, int]:
    """Request id -> the length of its list of labels (a multi-row request's, one label per row)."""
    return {str(r): int(np.asarray(v).size) for r, v in zip(request_ids, labels, strict=False)
            if isinstance(v, (list, tuple, np.ndarray))}


class PerformanceTracker:
    """Label store + early labels + baseline + tumbling windows of labelled rows; alerts on
    degradation. ``clock`` (seconds) times the early labels when a call passes no ``now``."""

    def __init__(self, cfg: MonitorPerformanceConfig, slices: tuple[str, ...],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.slices = slices
        self.regression = cfg.task == "regression"
        self.store = LabelStore(cfg.label_store_size)
        self.early = EarlyLabels(cfg.early_label_store_size, cfg.early_label_ttl_s, clock)
        self.labelled = RecentIds(cfg.label_store_size)  # rows already scored: a second label is unknown at once
        #: request id -> the length of the list of labels posted for it before its rows arrived
        self.early_lists: dict[str, int] = {}
        self.counts = LabelCounts()
        self.last_outcomes: list[str] = []
        self.baseline_window = PerformanceWindow(len(slices), self.regression)
        self.baseline: dict[str, float] | None = None
        self.window = PerformanceWindow(len(slices), self.regression)
        self.windows_closed = 0
        self.last: dict[str, Any] | None = None
        self.matched = 0
        self.unmatched = 0
        self.concept = ConceptDrift(cfg, slices)  # change detectors on the error stream
        self.estimated = PerformanceEstimator(cfg, slices)  # CBPE of served rows, before labels
        self.challengers = ChallengerLabels(cfg.label_store_size, self.regression)  # a canary's rows, per version

    def remember(self, keyed: RowKeys | Sequence[str], predictions: list[Any], scores: list[float] | None,
                 slices: list[int], now: float | None = None, window: int = 0) -> list[Alert]:
        """Keep served rows for their labels (by the keys of :func:`~raymlops.monitor.labels.row_keys`);
        rows whose label came first are joined now. A request id that an earlier request used (a
        client's retry with its own ``X-Request-Id``) now names the later request: the earlier
        one's rows are dropped and counted ``replaced``, so its label joins the last answer.
        Returns the alerts of label windows those joins closed (and of estimation windows)."""
        est_alerts = self.estimated.add(predictions, scores, slices, self.early.clock() if now is None else now,
                                        window) if self.estimated.enabled else []
        if scores is None:
            if self.regression:
                scores = [0.0] * len(predictions)
            else:  # one comparison per distinct prediction, not per row
                score_of = {p: 1.0 if same_label(p, self.cfg.positive_label) else 0.0 for p in set(predictions)}
                scores = [score_of[p] for p in predictions]
        keyed = keyed if isinstance(keyed, RowKeys) else RowKeys(list(map(str, keyed)))
        # an id that names several requests of the batch: the last one's rows (the others replaced)
        keys, predictions, slices = keyed.kept(keyed.keys), keyed.kept(predictions), keyed.kept(slices)
        self.store.replaced += len(keyed.keys) - len(keys)
        self.store.put(keys, predictions, keyed.kept(list(map(float, scores))), slices, keyed.requests)
        if not self.early:
            return est_alerts
        now = self.early.clock() if now is None else now
        self.early.expire(now)
        batch = set(keys)  # one set for both passes (take() would build its own)
        self._settle_early_lists(batch, now)
        alerts: list[Alert] = est_alerts
        for rid, label in self.early.take(batch):
            item = self.store.pop(rid)
            if item is None:  # not kept (the store's bound): cannot happen for a row just put
                self.counts.unknown += 1
                continue
            try:
                alerts += self._match(rid, item, label, now, window)
            except ValidationError:  # a label this task cannot score (the route validates them first)
                self.counts.unknown += 1
                continue
            self.counts.matched_late += 1
        return alerts

    def remember_challenger(self, version: str, keyed: RowKeys | Sequence[str], predictions: list[Any],
                            now: float | None = None) -> None:
        """Keep rows a challenger answered for their labels (scored for that version alone; an id
        that names several requests of the batch: its last one's); rows whose label came first
        are joined now."""
        keyed = keyed if isinstance(keyed, RowKeys) else RowKeys(list(map(str, keyed)))
        keys = keyed.kept(keyed.keys)
        self.challengers.put(version, keys, keyed.kept(predictions))
        if not self.early:
            return
        self.early.expire(self.early.clock() if now is None else now)
        for rid, label in self.early.take(keys):
            if self._match_challenger(rid, label):
                self.counts.matched_late += 1
            else:  # not kept (the store's bound), or a label it cannot score
                self.counts.unknown += 1

    def _match_challenger(self, rid: str, label: Any) -> bool:
        try:  # checked before the row is taken: a label that cannot be scored leaves it waiting
            label = _regression_label(label, 0) if self.regression else label
        except ValidationError:
            return False
        found = self.challengers.pop(rid)
        if found is None:
            return False
        version, prediction = found
        self.challengers.score(version, prediction, label, same_label)
        self.matched += 1
        self.counts.matched += 1
        self.labelled.add(rid)
        return True

    def _settle_early_lists(self, keys: set[str], now: float) -> None:
        """The waiting labels of requests whose rows (``keys``) just arrived, made whole or dropped
        as the same post made later would be: a list of another length than the request's rows,
        and a plain label for a multi-row request, are ``unknown`` (not joined row by row); a list
        of one label for a single-row request labels that row. Walks the smaller of the waiting
        labels and the batch, and only the lists posted early: no pass over every row."""
        early = self.early
        if len(early) <= len(keys):
            plain = [k for k in early.items if "/" not in k and f"{k}/0" in keys]
        else:
            plain = [k[:-2] for k in keys if k.endswith("/0") and k[:-2] in early]
        dropped = len(early.take(plain))  # one label for several rows
        for base, length in list(self.early_lists.items()):
            if f"{base}/0" in keys:  # the rows of a multi-row request ("<id>/<row>": a client id has no "/")
                del self.early_lists[base]
                n = 1
                while f"{base}/{n}" in keys:
                    n += 1
                if n != length:
                    dropped += len(early.take([f"{base}/{k}" for k in range(length)]))
            elif base in keys:  # a single-row request's row
                del self.early_lists[base]
                given = early.take([f"{base}/{k}" for k in range(length)])
                if length == 1 and given:
                    early.add(base, given[0][1], now)  # [[label]] for one row: that row's label
                else:
                    dropped += len(given)
        self.counts.unknown += dropped

    def rows_of(self, request_id: str) -> int | None:
        """How many rows of a multi-row request (keys ``<id>/0``, ``<id>/1``, ...) this tracker
        holds, waiting for a label or labelled; None when it holds none."""
        k = 0
        while any(f"{request_id}/{k}" in rows for rows in (self.store, self.labelled, self.challengers)):
            k += 1
        return k or None

    def feedback(self, request_ids: list[Any], labels: list[Any], ts: float, window: int,
                 lists: dict[str, int] | None = None) -> tuple[int, list[Alert]]:
        """Labels by row key: (rows matched now, alerts). A label whose row has not arrived
        waits (``early``); the outcome of each label is left in ``last_outcomes``. ``lists``:
        request id -> the length of the list of labels its row keys came from (checked against
        the request's rows when they arrive, :meth:`_settle_early_lists`)."""
        for rid, length in (lists or {}).items():
            if self.rows_of(rid) is None and f"{rid}" not in self.store:
                self.early_lists[rid] = length
                while len(self.early_lists) > self.cfg.early_label_store_size:  # bounded as the labels are
                    del self.early_lists[next(iter(self.early_lists))]
        if len(request_ids) != len(labels):
            raise ValidationError(f"request_ids and labels differ in length ({len(request_ids)} and {len(labels)})")
        if self.regression:  # every label before any is counted: a bad one changes nothing
            for i, label in enumerate(labels):
                _regression_label(label, i)
        self.early.expire(ts)
        alerts: list[Alert] = []
        matched = 0
        outcomes: list[str] = []
        waiting: list[int] = []
        keys = list(map(str, request_ids))
        for j, key in enumerate(keys):  # a list of one label for a single-row request: that row's label
            base = key[:-2] if key.endswith("/0") else None
            if base is not None and (lists or {}).get(base) == 1 and (base in self.store or base in self.labelled):
                keys[j] = base
        for rid, label in zip(keys, labels, strict=True):
            item = self.store.pop(rid)
            if item is not None:
                matched += 1
                outcomes.append("matched")
                alerts += self._match(rid, item, label, ts, window)
            elif rid in self.challengers and self._match_challenger(rid, label):  # a canary's row: its version's
                matched += 1
                outcomes.append("matched")
            elif rid in self.labelled or rid in self.early or ("/" not in rid and (
                    f"{rid}/0" in self.store or f"{rid}/0" in self.challengers)):
                outcomes.append("unknown")  # labelled already, or a single label for a multi-row request
            else:
                self.early.add(rid, label, ts)
                waiting.append(len(outcomes))
                outcomes.append("waiting")
        for i in waiting:  # pushed out again by later labels of this same call (a full store)
            if keys[i] not in self.early:
                outcomes[i] = "expired"
        self.counts.received += len(outcomes)
        self.counts.unknown += outcomes.count("unknown")
        self.unmatched += len(outcomes) - matched
        self.last_outcomes = outcomes
        return matched, alerts

    def _match(self, rid: str, item: Pending, label: Any, ts: float, window: int) -> list[Alert]:
        """Score one joined row: the baseline first, then the current window (closed when full)."""
        target = self.baseline_window if self.baseline is None else self.window
        error = self._add(target, item, label)  # raises before anything is counted
        self.matched += 1
        self.counts.matched += 1
        self.labelled.add(rid)
        if self.regression:  # e / (e + baseline MAE): in [0, 1) as ADWIN's bound wants; once there is a baseline
            scale = (self.baseline or {}).get("mae", math.nan)
            error = error / (error + scale) if scale > 0 else math.nan
        else:
            self.estimated.add_labelled(item.score, same_label(item.prediction, self.cfg.positive_label), item.slice)
        alerts = self.concept.update(error, item.slice, ts, window)
        if self.baseline is None and self.baseline_window.rows >= self.cfg.baseline_labels:
            self.baseline = self.baseline_window.metrics()
            self.estimated.labelled_report()  # the first label window's estimate starts with its first row
        elif self.baseline is not None and self.window.rows >= self.cfg.window_labels:
            return alerts + self.close(ts, window)
        return alerts

    def expire(self, now: float | None = None) -> int:
        """Expire early labels whose time-to-live has ended (also done by every call)."""
        return self.early.expire(now)

    def label_counts(self) -> dict[str, int]:
        """Every label received by outcome: received = matched + waiting + expired + unknown."""
        c = self.counts
        c.expired, c.pushed_out = self.early.expired, self.early.pushed_out
        return c.to_dict(len(self.early))

    def _add(self, w: PerformanceWindow, item: Pending, label: Any) -> float:
        """Count one labelled row in ``w``; returns its error (0/1, or the absolute error)."""
        s = item.slice
        if self.regression:
            err = abs(float(item.prediction) - float(label))  # checked by feedback()
            w.n[s] += 1
            w.abs_err[s] += err
            return err
        w.n[s] += 1
        right = same_label(item.prediction, label)
        w.correct[s] += int(right)
        b = min(max(int(item.score * SCORE_BINS), 0), SCORE_BINS - 1) if math.isfinite(item.score) else 0
        (w.pos if same_label(label, self.cfg.positive_label) else w.neg)[s, b] += 1
        return 0.0 if right else 1.0

    @property
    def slice_baselines(self) -> dict[str, dict[str, float]]:
        """Each slice's own baseline (the baseline window's rows of it; one harder than the others
        is no degradation), for the slices with at least ``min_labels`` there. The baseline window
        stops counting once the baseline is set, so this is computed from it (also after a restore)."""
        if self.baseline is None:
            return {}
        return {name: m for s, name in enumerate(self.slices)
                if (m := self.baseline_window.metrics(s))["labels"] >= self.cfg.min_labels}

    def close(self, ts: float, window: int) -> list[Alert]:
        """Judge the current label window against the baseline and start a new one."""
        w = self.window
        report: dict[str, Any] = {"overall": w.metrics(), "slices": {}}
        alerts = self._judge(w.metrics(), "all", ts, window)
        own = self.slice_baselines
        judged = []
        for s, name in enumerate(self.slices if len(self.slices) > 1 else ()):  # one slice: "all" itself
            if w.n[s]:
                report["slices"][name] = m = w.metrics(s)
                if name in own and m["labels"] >= self.cfg.min_labels:  # else no verdict
                    judged.append((s, name, m))
        # the window's slice checks are one family: 5 % over all of them (Bonferroni), not 5 % each
        z = critical_z(len(judged) * (1 if self.regression else 2))
        for s, name, m in judged:
            alerts += self._judge(m, name, ts, window, own[name], (s, z))
        report["baseline"] = self.baseline
        if self.estimated.has_scores:  # CBPE of these same labelled rows, beside the realised metrics
            report["estimated"] = self.estimated.labelled_report()
        self.last = report
        self.window = PerformanceWindow(len(self.slices), self.regression)
        self.windows_closed += 1
        return alerts

    def _judge(self, m: dict[str, float], where: str, ts: float, window: int,
               slice_base: dict[str, float] | None = None, noise: tuple[int, float] | None = None) -> list[Alert]:
        """Alerts of a label window (``where``: "all", or a slice judged against its own baseline
        ``slice_base``). A slice's accuracy and AUC must also be below its baseline's beyond sampling
        noise (``noise``: the slice's index and the critical z of the window's slice checks; a
        one-sided two-proportion z-test, and Hanley and McNeil's standard errors for the AUC): 50
        labels give an accuracy of 0.66 a standard error of 0.067, more than the 0.05 drop allowed."""
        base = self.baseline if slice_base is None else slice_base
        if base is None or m.get("labels", 0) < self.cfg.min_labels:
            return []
        checks: list[tuple[str, float, float, bool]] = []
        if self.regression:
            limit = base["mae"] * (1 + self.cfg.max_mae_increase)
            checks.append(("mae", m["mae"], limit, m["mae"] > limit))
        else:
            limit = base["accuracy"] - self.cfg.max_accuracy_drop
            within = noise is not None and not accuracy_drop_beyond_noise(
                base["accuracy"], base["labels"], m["accuracy"], m["labels"], noise[1])
            checks.append(("accuracy", m["accuracy"], limit, m["accuracy"] < limit and not within))
            if math.isfinite(m.get("auc", math.nan)) and math.isfinite(base.get("auc", math.nan)):
                limit = base["auc"] - self.cfg.max_auc_drop
                within = noise is not None and not self._auc_beyond_noise(base["auc"], m["auc"], *noise)
                checks.append(("auc", m["auc"], limit, m["auc"] < limit and not within))
        return [
            Alert(kind="performance", key=f"performance:{metric}:{where}", severity="critical",
                  message=f"{metric} {value:.4f} in slice {where} is past its limit {limit:.4f} "
                          f"(baseline {base[metric]:.4f}, {m['labels']} labelled rows)",
                  value=value, threshold=limit, ts=ts, window=window, slice=where)
            for metric, value, limit, bad in checks if bad
        ]

    def _auc_beyond_noise(self, a0: float, a1: float, s: int, z: float) -> bool:
        """Whether slice ``s``'s window AUC ``a1`` is below its baseline's ``a0`` beyond noise."""
        b, w = self.baseline_window, self.window
        return auc_drop_beyond_noise(a0, b.pos[s].sum(), b.neg[s].sum(), a1, w.pos[s].sum(), w.neg[s].sum(), z)

    def status(self) -> dict[str, Any]:
        """``labels``: every label by outcome (see :mod:`raymlops.monitor.labels`); ``pending``:
        predictions waiting for a label; ``unmatched``: every label but the matched ones (as the
        /feedback answer counts it; the labels that came before their row and matched later are
        ``labels.matched_late``, not unmatched)."""
        # current: the labels of the open label window (the baseline's, until it is full)
        current = (self.baseline_window if self.baseline is None else self.window).metrics()
        labels = self.label_counts()
        return {"baseline": self.baseline, "current": current, "last_window": self.last,
                "pending": len(self.store), "evicted": self.store.evicted, "replaced": self.store.replaced,
                "matched": self.matched,
                "unmatched": labels["received"] - labels["matched"], "windows": self.windows_closed, "labels": labels,
                "early_label_ttl_s": self.early.ttl_s, "concept_drift": self.concept.status(),
                "estimated": self.estimated.status(), "challengers": self.challengers.status()}

"""The monitor core: windows over the streaming state, and every check that raises alerts.

:class:`Monitor` is what the actor wraps (pure: no Ray, clock injected):

- ``ingest(columns, predictions, version=, latency_ms=, status=, request_ids=, scores=)`` adds a
  batch of served rows. Champion rows (``version`` None or the champion's) go into the current
  **tumbling window** (closed after ``window_rows`` rows — a batch is split exactly at the
  boundary — and/or ``window_s`` seconds of the clock); challenger rows only feed the
  differential check. Latency and status feed the SLO counters.
- Closing a window evaluates drift (overall and per slice), prediction drift, anomalies
  (missing rate, out-of-range, unseen categories), bias (positive-rate gap across slices) and
  the differential check, and keeps the verdict in a bounded history. The **rolling long-term
  window** merges the last ``long_term_windows`` windows.
- ``feedback(request_ids, labels)`` scores predictions against late labels (performance).
- ``tick()`` closes a window whose time is up and checks the SLO burn rates.

Each returns the *new* alerts (after the cooldown de-duplication). Memory is bounded by the
config: O(columns x buckets x slices x long_term_windows) plus the bounded label and pairing
stores.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.config import MonitorConfig
from raymlops.exceptions import ValidationError
from raymlops.monitor import checkpoint
from raymlops.monitor.alerts import Alert, AlertBook
from raymlops.monitor.differential import DifferentialTracker
from raymlops.monitor.histograms import histograms
from raymlops.monitor.labels import RowKeys, row_keys
from raymlops.monitor.performance import PerformanceTracker, label_lists
from raymlops.monitor.reference import PREDICTION, MonitorReference, build_reference, labels_of
from raymlops.monitor.slo import SLOTracker
from raymlops.monitor.stacked import evaluate_stacked_many
from raymlops.monitor.state import StreamState, add_parts
from raymlops.monitor.verdicts import SliceVerdict, WindowReport, WindowVerdict, _clean, evaluate
from raymlops.monitor.window_alerts import drift_alerts

__all__ = ["CHECKPOINT_FORMAT", "Monitor", "WindowReport"]

CHECKPOINT_FORMAT = checkpoint.FORMAT
_PRED_BASELINE_MAX = 100_000
#: windows judged in one stacked pass without slices, and groups (all rows and each slice, of
#: every window) with slices: stacking saves numpy's per-call overhead, which dominates small
#: windows, and stacks the windows' prediction verdicts too; past a few dozen groups the arrays
#: outgrow the CPU's caches and stacking stops paying (10 slices: 5 windows of 11 groups a pass
#: took a quarter fewer CPU-seconds than one window a pass, 8 windows no fewer)
_GROUPS_AT_ONCE = 16
_SLICED_GROUPS_AT_ONCE = 64


class Monitor:
    def __init__(self, reference: MonitorReference, config: MonitorConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(reference, MonitorReference):
            raise ValidationError(f"reference must be a MonitorReference, got {type(reference).__name__}")
        self.reference = reference
        self.config = config or MonitorConfig()
        self.clock = clock
        cfg = self.config
        self.window_index = 0
        self.window_started = clock()
        self.current = StreamState(reference)
        self.recent: deque[StreamState] = deque(maxlen=cfg.long_term_windows)
        self.history: deque[WindowReport] = deque(maxlen=cfg.history)
        self.alerts = AlertBook(cfg.alerts.cooldown_s)
        self.performance = PerformanceTracker(cfg.performance, reference.slices)
        self.differential = DifferentialTracker(cfg.differential, reference.slices,
                                                regression=cfg.performance.task == "regression")
        self.slo = SLOTracker(cfg.slo)
        self.rows_total = 0
        self.batches = 0
        self.challenger_rows = 0
        # predictions: against the reference's prediction column when it has one, else against
        # the first window's predictions (a baseline learned online)
        self.has_pred_column = PREDICTION in reference.names
        self.pred_baseline: list[npt.NDArray[Any]] = []
        self.pred_reference: MonitorReference | None = None
        self.pred_state: StreamState | None = None
        n = reference.n_slices
        self.pos = np.zeros(n, dtype=np.int64)
        self.pred_n = np.zeros(n, dtype=np.int64)

    def rebased(self, reference: MonitorReference, config: MonitorConfig) -> Monitor:
        """A monitor on a new reference (a new champion's training rows): windows, long-term state,
        prediction and performance baselines and differential start over; the traffic's counts (rows,
        batches, windows, reports, alerts, cooldowns, SLO windows, label outcomes) go on. Labels of rows the
        previous champion answered score its version alone (as the new baseline they paged on its normal accuracy)."""
        new = Monitor(reference, config, self.clock)
        new.rows_total, new.batches, new.challenger_rows = self.rows_total, self.batches, self.challenger_rows
        new.window_index = self.window_index
        new.history.extend(self.history)
        new.alerts, new.slo = self.alerts, self.slo
        old, perf = self.performance, new.performance
        perf.counts, perf.early, perf.matched, perf.unmatched = old.counts, old.early, old.matched, old.unmatched
        perf.challengers, perf.labelled = old.challengers, old.labelled
        if pending := old.store.items:
            perf.challengers.put(self.differential.champion or "previous champion", list(pending),
                                 [item[0] for item in pending.values()])
        return new

    # -- ingest --------------------------------------------------------------------------------
    def ingest(self, columns: Mapping[str, Any], predictions: Any = None, *, version: str | None = None,
               latency_ms: Any = None, status: Any = None, request_ids: Any = None, scores: Any = None,
               role: str | None = None, request_sizes: Any = None) -> list[Alert]:
        """Add a batch of served rows (the module docstring); returns the new alerts (``role``: shadow:
        no SLO; ``request_sizes``: each request's rows, :func:`~raymlops.monitor.labels.row_keys`)."""
        now = self.clock()
        alerts = self._close_if_due(now)
        cols = dict(columns)
        if self.has_pred_column:
            if predictions is None:
                first = np.asarray(next(iter(cols.values())))
                predictions = np.full(first.shape[0], np.nan)
            cols[PREDICTION] = np.asarray(predictions).ravel()
        slice_idx, idx, n, values = self.reference.bucketize_batch(cols)  # validates before any change
        preds = None if predictions is None else np.asarray(predictions).ravel()
        if preds is not None and preds.shape[0] != n:
            raise ValidationError(f"predictions has {preds.shape[0]} values for {n} rows")
        rids = None if request_ids is None else [str(r) for r in np.asarray(request_ids).ravel().tolist()]
        if rids is not None and len(rids) != n:
            raise ValidationError(f"request_ids has {len(rids)} ids for {n} rows")
        score_arr = None if scores is None else np.asarray(scores, dtype=np.float64).ravel()
        keyed = None if rids is None else row_keys(rids, request_sizes)
        if role != "shadow":  # a shadow's copies reach no client
            self._record_requests(now, latency_ms, status, keyed, n)
        if n == 0:
            return self.alerts.offer(alerts)
        champion = self.differential.is_champion(None if version is None else str(version))
        if version is not None and preds is not None:
            self.differential.add(str(version), preds, None if keyed is None else keyed.keys, slice_idx)
        if not champion:
            self.challenger_rows += n
            # a canary's rows: labels score that version; a shadow answered no client (its copies carry
            # the champion's request ids, and a label is the champion's answer's)
            if preds is not None and keyed is not None and role != "shadow":
                self.performance.remember_challenger(str(version), keyed, preds.tolist(), now)
            return self.alerts.offer(alerts)
        if preds is not None and keyed is not None:
            alerts += self.performance.remember(  # joins early labels
                keyed, preds.tolist(), None if score_arr is None else score_arr.tolist(), slice_idx.tolist(), now,
                self.window_index)
        limit = self.config.window_rows
        start = 0
        pred_batch = _PredictionBatch(preds) if preds is not None else None
        while start < n:
            # the batch's parts, each filling the open window up to its limit; the windows they
            # close (a few) are judged in one stacked pass, then closed in order
            parts: list[tuple[slice, StreamState]] = []
            state = self.current
            rows = state.rows
            while start < n and len(parts) < self._windows_at_once:
                take = n - start if limit is None else min(n - start, limit - rows)
                parts.append((slice(start, start + take), state))
                start += take
                if limit is not None and rows + take >= limit and start < n:
                    state, rows = StreamState(self.reference), 0
            add_parts(parts, slice_idx, idx, values)
            closes = [limit is not None and s.rows >= limit for _, s in parts]
            full = [s for (_, s), close in zip(parts, closes, strict=True) if close]
            verdicts = iter(self._evaluate_windows(full, self.reference))
            # the prediction states of the parts, filled ahead when several windows close, so that
            # their prediction verdicts are judged in one stacked pass too
            pred_states = self._prediction_states(pred_batch, parts) if len(full) > 1 else None
            pred_verdicts = None if pred_states is None else iter(self._evaluate_windows(
                [p for p, close in zip(pred_states, closes, strict=True) if close], pred_states[0].reference))
            for k, ((part, state), close) in enumerate(zip(parts, closes, strict=True)):
                self.current = state
                if pred_batch is not None:
                    self._track_predictions(pred_batch, part, slice_idx[part],
                                            None if pred_states is None else pred_states[k])
                if close:
                    # the next part's state is the next window's (no empty one made and dropped)
                    following = parts[k + 1][1] if k + 1 < len(parts) else None
                    alerts += self._close(now, next(verdicts), following,
                                          None if pred_verdicts is None else next(pred_verdicts).overall)
        self.rows_total += n
        self.batches += 1
        return self.alerts.offer(alerts)

    def _record_requests(self, now: float, latency_ms: Any, status: Any, keyed: RowKeys | None, n: int) -> None:
        """SLO counters count requests: per-row latency/status of a multi-row request count once."""
        lat = None if latency_ms is None else np.atleast_1d(np.asarray(latency_ms, dtype=np.float64)).ravel()
        st = None if status is None else np.atleast_1d(np.asarray(status)).ravel()
        if keyed is not None and keyed.starts is not None and n:  # the first row of each request
            first = keyed.starts
            lat = lat[first] if lat is not None and lat.size == n else lat
            st = st[first] if st is not None and st.size == n else st
        self.slo.record(now, lat, st)

    def record_requests(self, latency_ms: Any = None, status: Any = None) -> list[Alert]:
        """Requests that brought no rows (e.g. rejected ones) for the SLO counters."""
        self.slo.record(self.clock(), latency_ms, status)
        return []

    def _track_predictions(self, batch: _PredictionBatch, part: slice, slices: npt.NDArray[np.int64],
                           filled: StreamState | None = None) -> None:
        """Count the positive predictions of rows ``part`` of the batch per slice, and add them
        to the prediction state (or the baseline, before the first window close); ``filled``: the
        part's prediction state, its rows already added (:meth:`_prediction_states`)."""
        preds = batch.preds[part]
        positive = batch.positive(self.config.performance.positive_label)[part]
        n_slices = self.pos.size
        if n_slices == 1:
            self.pos[0] += int(np.count_nonzero(positive))
            self.pred_n[0] += preds.shape[0]
        else:
            self.pos += np.bincount(slices[positive], minlength=n_slices)
            self.pred_n += np.bincount(slices, minlength=n_slices)
        if self.has_pred_column:
            return
        if filled is not None:
            self.pred_state = filled
        elif self.pred_state is not None:
            batch.add_to(self.pred_state, part)
        elif sum(p.size for p in self.pred_baseline) < _PRED_BASELINE_MAX:
            self.pred_baseline.append(preds.copy())

    def feedback(self, request_ids: Any, labels: Any) -> tuple[int, list[Alert]]:
        """Ground truth for earlier rows, by request id: (rows matched, new alerts).

        A request of one row is keyed by its id; the rows of a multi-row request by
        ``"<id>/<row>"``: give either those keys, or the request id with a list of labels."""
        rids, labs = self.check_feedback(request_ids, labels)
        matched, alerts = self.performance.feedback(rids, labs, self.clock(), self.window_index,
                                                    label_lists(request_ids, labels))
        return matched, self.alerts.offer(alerts)

    def check_feedback(self, request_ids: Any, labels: Any) -> tuple[list[str], list[Any]]:
        """The labels of :meth:`feedback` by row key, checked and changing nothing: a list of labels
        for a request whose rows this monitor holds must have one label per row (a ValidationError
        naming it otherwise: two labels for a three-row request matched two rows, and the right
        list sent after it found them labelled)."""
        given_ids, given_labels = list(request_ids), list(labels)
        if len(given_ids) != len(given_labels):
            raise ValidationError(f"request_ids and labels differ in length ({len(given_ids)} and {len(given_labels)})")
        rids: list[str] = []
        labs: list[Any] = []
        for i, (rid, label) in enumerate(zip(given_ids, given_labels, strict=True)):
            if isinstance(label, (list, tuple, np.ndarray)):
                values = np.asarray(label).ravel().tolist()
                rows = self.performance.rows_of(str(rid))
                if rows is not None and rows != len(values):
                    raise ValidationError(f"labels[{i}]: request {str(rid)!r} answered {rows} rows, so its list needs "
                                          f"{rows} labels (one per row), found {len(values)}")
                for k, one in enumerate(values):
                    rids.append(f"{rid}/{k}")
                    labs.append(one)
            else:
                rids.append(str(rid))
                labs.append(label.item() if isinstance(label, np.generic) else label)
        return rids, labs

    def tick(self) -> list[Alert]:
        """Close the window if its time is up, and check the SLO burn rates."""
        now = self.clock()
        alerts = self._close_if_due(now)
        _, slo_alerts = self.slo.evaluate(now, self.window_index)
        return self.alerts.offer(alerts + slo_alerts)

    # -- windows -------------------------------------------------------------------------------
    def _close_if_due(self, now: float) -> list[Alert]:
        w = self.config.window_s
        if w is None or now - self.window_started < w:
            return []
        if self.current.rows == 0:
            self.window_started = now
            return []
        return self._close(now)

    def close_window(self) -> WindowReport | None:
        """Close the current window now (None when it is empty); its alerts are offered too."""
        if self.current.rows == 0:
            return None
        self.alerts.offer(self._close(self.clock()))
        return self.history[-1]

    @property
    def _windows_at_once(self) -> int:
        """Parts of a batch (so at most that many full windows) handled per stacked pass."""
        return max(1, _SLICED_GROUPS_AT_ONCE // (1 + self.reference.n_slices)) if self.reference.slice_columns else \
            _GROUPS_AT_ONCE

    def _evaluate_windows(self, states: list[StreamState], ref: MonitorReference) -> list[WindowVerdict]:
        """The verdicts of full windows on ``ref``: as :func:`evaluate` gives them one by one,
        several in one stacked pass (which gives a single column's per-column verdict to the bit)."""
        if len(states) > 1:
            return evaluate_stacked_many(states, self.config, ref)
        return [evaluate(state, self.config) for state in states]

    def _prediction_states(self, batch: _PredictionBatch | None, parts: list[tuple[slice, StreamState]]
                           ) -> list[StreamState] | None:
        """The prediction state of each part (the open one, then new ones) with the part's
        predictions added, once the prediction reference exists and the whole batch buckets on
        it (else None: a bad value fails at the part that holds it, as the predictions are then
        added part by part)."""
        if batch is None or self.has_pred_column or self.pred_state is None:
            return None
        ref = self.pred_state.reference
        if batch.buckets(ref) is None:
            return None
        states = [self.pred_state] + [StreamState(ref) for _ in parts[1:]]
        for (part, _), state in zip(parts, states, strict=True):
            batch.add_to(state, part)
        return states

    def _close(self, now: float, verdict: WindowVerdict | None = None, following: StreamState | None = None,
               prediction: SliceVerdict | None = None) -> list[Alert]:
        """Close the open window (its ``verdict``, and ``prediction`` verdict, when already
        evaluated); ``following``: the next window's state when the caller already holds it
        (else a new empty one)."""
        cfg = self.config
        index = self.window_index
        verdict = evaluate(self.current, cfg) if verdict is None else verdict
        prediction = self._prediction_verdict(prediction)
        rates = self._positive_rates()
        alerts = drift_alerts(verdict, prediction, rates, cfg, now, index)
        if self.differential.dist:
            alerts += self.differential.evaluate(now, index)
        report = WindowReport(index=index, started=self.window_started, ended=now, verdict=verdict,
                              prediction=prediction, positive_rates=rates, alerts=tuple(alerts))
        self.history.append(report)
        self.recent.append(self.current)
        self.current = StreamState(self.reference) if following is None else following
        self.window_index += 1
        self.window_started = now
        self.pos[:] = 0
        self.pred_n[:] = 0
        return alerts

    def _positive_rates(self) -> dict[str, float]:
        """Each slice's positive-prediction rate in the open window, for the slices with enough
        predictions: the counts read as Python floats (converted as numpy converts them) and
        divided as numpy divides them, without a numpy scalar operation per slice."""
        least = max(self.config.min_rows, 1)
        return {name: float(p) / float(n) for name, p, n in zip(self.reference.slices, self.pos.tolist(),
                                                                 self.pred_n.tolist(), strict=True) if n >= least}

    def _prediction_verdict(self, evaluated: SliceVerdict | None = None) -> SliceVerdict | None:
        """The open prediction state's verdict (``evaluated``: already evaluated), and a new state."""
        if self.has_pred_column:
            return None  # part of the drift verdict (column PREDICTION)
        if self.pred_state is None:
            if not self.pred_baseline:
                return None
            values = np.concatenate(self.pred_baseline)
            self.pred_baseline = []
            discrete = values.dtype.kind not in "f" or np.unique(values[~_isnan(values)]).size <= 20
            try:
                self.pred_reference = build_reference(
                    {PREDICTION: values}, categorical=[PREDICTION] if discrete else [], n_bins=self.config.n_bins,
                    fine_bins=self.config.fine_bins, discrete_max_values=self.config.discrete_max_values)
            except ValidationError:
                return None
            self.pred_state = StreamState(self.pred_reference)
            return None
        if self.pred_state.rows == 0:
            return None
        verdict = evaluate(self.pred_state, self.config).overall if evaluated is None else evaluated
        self.pred_state = StreamState(self.pred_state.reference)
        return verdict

    # -- reading -------------------------------------------------------------------------------
    def long_term(self) -> WindowVerdict | None:
        """Verdict on the rolling long-term window: the last closed windows plus the open one."""
        states = [*self.recent, self.current]
        merged = states[0]
        for s in states[1:]:
            merged = merged.merge(s)
        return evaluate(merged, self.config) if merged.rows else None

    def current_verdict(self) -> WindowVerdict | None:
        return evaluate(self.current, self.config) if self.current.rows else None

    def status(self) -> dict[str, Any]:
        """Everything, JSON-serialisable: the open window, the last closed ones, alerts, SLOs."""
        now = self.clock()
        cur = self.current_verdict()
        long_term = self.long_term()
        slo, _ = self.slo.evaluate(now, self.window_index)
        return _clean({
            "rows_total": self.rows_total, "batches": self.batches, "challenger_rows": self.challenger_rows,
            "window": {"index": self.window_index, "started": self.window_started, "rows": self.current.rows,
                       "window_rows": self.config.window_rows, "window_s": self.config.window_s,
                       "verdict": None if cur is None else cur.to_dict(),
                       "histograms": histograms(self.current) if self.current.rows else None},
            "last_window": self._last_window(),
            "long_term": None if long_term is None else long_term.to_dict(),
            "windows_closed": self.window_index,
            "performance": self.performance.status(),
            "differential": self.differential.status(),
            "slo": slo,
            "alerts": {"totals": dict(self.alerts.totals),
                       "recent": [a.to_dict() for a in list(self.alerts.recent)[-20:]],
                       "latest": {kind: a.to_dict() for kind, a in self.alerts.latest.items()}},
        })

    def _last_window(self) -> dict[str, Any] | None:
        """The last closed window's report, with its histograms while its state is still kept."""
        if not self.history:
            return None
        out = self.history[-1].to_dict()
        last = self.recent[-1] if self.recent else None
        out["histograms"] = histograms(last) if last is not None and last.rows else None
        return out

    # -- checkpoint ----------------------------------------------------------------------------
    def to_bytes(self, *, view: bool = False) -> bytes:
        """The whole state (clock excluded) as a checkpoint: arrays + JSON in one ``.npz`` blob,
        format :data:`CHECKPOINT_FORMAT` (:mod:`raymlops.monitor.checkpoint`); :meth:`from_bytes`
        reads it back. ``view``: without the label and pairing stores (their sizes only), for a
        merged read-only view of several shards."""
        return checkpoint.dump(self, view=view)

    @classmethod
    def from_bytes(cls, data: bytes, clock: Callable[[], float] = time.time,
                   config: MonitorConfig | None = None) -> Monitor:
        """Restore a checkpoint; anything but a valid one of this format (another version, a
        missing array, a shape that does not fit, a pickle) raises :class:`ValidationError`.
        ``config`` replaces the monitor's config (the trackers keep the one they were built with)."""
        return checkpoint.load(data, cls, clock, config)


class _PredictionBatch:
    """One ingested batch's predictions, as its parts (one per window) read them: the positive
    mask and the prediction state's buckets are computed once for the whole batch, not per part."""

    __slots__ = ("_bucketed", "_positive", "preds")

    def __init__(self, preds: npt.NDArray[Any]) -> None:
        self.preds = preds
        self._positive: npt.NDArray[np.bool_] | None = None
        self._bucketed: tuple[MonitorReference, Any] | None = None

    def positive(self, label: float | str) -> npt.NDArray[np.bool_]:
        if self._positive is None:
            self._positive = positive_mask(self.preds, label)
        return self._positive

    def buckets(self, ref: MonitorReference) -> Any:
        """The whole batch bucketed on ``ref`` (a one-column reference on :data:`PREDICTION`),
        or None when a value does not fit it."""
        if self._bucketed is None or self._bucketed[0] is not ref:
            try:
                self._bucketed = (ref, ref.bucketize_batch({PREDICTION: self.preds}))
            except ValidationError:  # a bad value somewhere: fail at the part that holds it, as before
                self._bucketed = (ref, None)
        return self._bucketed[1]

    def add_to(self, state: StreamState, part: slice) -> None:
        """Add rows ``part`` to ``state`` (a one-column state on :data:`PREDICTION`), as
        ``state.update({PREDICTION: preds[part]})`` would."""
        bucketed = self.buckets(state.reference)
        if bucketed is None:
            state.update({PREDICTION: self.preds[part]})
            return
        slice_idx, idx, _, values = bucketed
        state.add_bucketed(slice_idx[part], idx[:, part], {}, values[:, part])


def _isnan(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    return np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)


def positive_mask(preds: npt.NDArray[Any], positive: float | str) -> npt.NDArray[np.bool_]:
    """Which predictions equal the positive label (numbers compared as numbers)."""
    if preds.dtype.kind in "biuf":
        try:
            return np.asarray(preds.astype(np.float64) == float(positive))
        except ValueError:
            return np.zeros(preds.shape, dtype=bool)
    labels, _ = labels_of(preds)
    target, _ = labels_of(np.array([positive], dtype=object))
    return np.asarray(labels == target[0])

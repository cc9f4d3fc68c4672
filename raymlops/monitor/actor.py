"""Ray adapter: the monitor actor of one deployment, around the pure :class:`Monitor` core.

Serving replicas call ``ingest.remote(X, predictions, version=, latency_ms=, status=,
request_ids=, role=, epoch=)`` per batch (``role``: what the version served as, ``epoch``: of
which traffic table; the monitor follows promotions by them, see
:mod:`raymlops.monitor.differential`); ``POST /<route>/feedback`` calls
``feedback.remote(request_ids, labels)``. The actor

- reads its reference from the artifact store (small constructor arguments: a key, not the
  reference itself, so a restart re-reads it);
- checkpoints the whole monitor state to ``monitor/<route>/<start id>/checkpoint.npz`` every
  ``monitor.checkpoint_s`` seconds (a daemon thread; only when something changed) and, when Ray
  restarts it after a crash (``max_restarts``), resumes from that checkpoint;
- moves to a new reference in place when told (:meth:`DriftMonitor.rebaseline`, after a
  retraining cycle promoted a model trained on new data), and records which, so a restart keeps it;
- serves Prometheus metrics on ``http://127.0.0.1:<monitor.metrics_port>/metrics``;
- sends new alerts to the log, the audit log (``home``) and the configured webhook.

With ``monitor.shards`` = N > 1 a route has N actors: shard 0 is named :func:`monitor_name` as
with one, shard i :func:`shard_name`. Replicas ask shard 0 for :meth:`DriftMonitor.shard_names`
and hand each request to the shard of its request id, so its labels find it. Shard 0's
``status()``, ``summary()`` and ``rows()`` answer for the whole route (it merges the others'
snapshots, :mod:`raymlops.monitor.shards`); :func:`monitor_status` / :func:`monitor_summary`
are the same from a driver. Only shard 0 serves Prometheus metrics (merged, too).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import ray

from raymlops.config import CalibrationConfig, MonitorConfig
from raymlops.exceptions import NotFound, ValidationError
from raymlops.monitor.metrics import serve_metrics
from raymlops.monitor.monitor import Monitor
from raymlops.monitor.names import PEER_TIMEOUT_S, shard_name
from raymlops.monitor.performance import same_label
from raymlops.monitor.reference import MonitorReference
from raymlops.monitor.shards import merge_monitors, snapshot
from raymlops.monitor.sinks import send_alerts
from raymlops.store.artifacts import ArtifactStore

log = logging.getLogger("raymlops.monitor")

__all__ = ["DriftMonitor", "monitor_config"]


def monitor_config(settings: dict[str, Any]) -> MonitorConfig:
    """The monitor section of a config from a settings dict (unknown keys such as ``seed`` ignored)."""
    return MonitorConfig.model_validate({k: v for k, v in settings.items() if k in MonitorConfig.model_fields})


class DriftMonitor:
    """Holds the monitor of one deployment; see the module docstring."""

    def __init__(self, route: str, settings: dict[str, Any], reference_key: str | None = None,
                 artifact_root: str | None = None, home: str | None = None, start_id: str | None = None,
                 reference: dict[str, Any] | None = None, shard: int = 0, shards: int = 1) -> None:
        self.route = route
        self.shard, self.shards = int(shard), max(int(shards), 1)
        self._peers: list[tuple[int, Any]] | None = None
        self._missing: list[str] = []
        self.home = home
        self.cfg = monitor_config(settings)
        self.store = None
        if artifact_root is not None:
            self.store = ArtifactStore(artifact_root)
        self.reference_pointer = f"monitor/{route}/{start_id}/reference-current" if start_id and self.store else None
        if self.reference_pointer is not None:  # moved by rebaseline(): a restart keeps watching the new one
            assert self.store is not None
            with contextlib.suppress(NotFound):
                reference_key = self.store.read_bytes(self.reference_pointer).decode()
        if reference_key is not None and self.store is not None:
            ref = MonitorReference.from_json(self.store.read_bytes(reference_key))
        elif reference is not None:
            ref = MonitorReference.from_dict(reference)
        else:
            raise ValidationError("DriftMonitor needs a reference_key (with artifact_root) or a reference")
        self.reference = ref
        self.features = list(ref.features)
        suffix = "" if self.shard == 0 else f"-shard{self.shard}"
        self.checkpoint_key = f"monitor/{route}/{start_id}/checkpoint{suffix}.npz" if start_id and self.store else None
        self.restored = False
        self.monitor = self._restore() or Monitor(ref, self.cfg)
        self.predictions: Counter[str] = Counter()
        self.lock = threading.RLock()
        self.dirty = False
        self.last_checkpoint = time.time()
        self.checkpoints = 0
        self.sink_problems: list[str] = []
        self.metrics_url: str | None = None
        if self.cfg.metrics_port is not None and self.shard == 0:
            try:
                serve_metrics(route, self._status_locked if self.shards == 1 else self._merged_status,
                              self.cfg.metrics_port)
                self.metrics_url = f"http://127.0.0.1:{self.cfg.metrics_port}/metrics"
            except OSError as exc:
                log.error("monitor %s: cannot serve metrics on 127.0.0.1:%s: %s", route, self.cfg.metrics_port, exc)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._background, name="raymlops-monitor", daemon=True)
        self._thread.start()

    # -- checkpoints ---------------------------------------------------------------------------
    def _restore(self) -> Monitor | None:
        if self.checkpoint_key is None or self.store is None:
            return None
        try:
            data = self.store.read_bytes(self.checkpoint_key)
        except NotFound:
            return None
        try:
            restored = Monitor.from_bytes(data, config=self.cfg)
        except ValidationError as exc:
            log.error("monitor %s: ignoring checkpoint %s: %s", self.route, self.checkpoint_key, exc)
            return None
        if not restored.reference.same_as(self.reference):
            log.error("monitor %s: checkpoint was made on another reference; starting afresh", self.route)
            return None
        self.restored = True
        return restored

    def checkpoint(self) -> str | None:
        """Write the state to the store now; returns the key (None without a store)."""
        if self.checkpoint_key is None or self.store is None:
            return None
        with self.lock:
            taken = time.time()
            data = self.monitor.to_bytes()
            self.dirty = False
        self.store.write_bytes(self.checkpoint_key, data)
        self.last_checkpoint = taken  # the next one is due checkpoint_s after this state was taken
        self.checkpoints += 1
        return self.checkpoint_key

    def _background(self) -> None:
        """Time-based window closes and SLO buckets (``tick``) every half window/bucket, and a
        checkpoint exactly when one is due: a crash loses at most ``checkpoint_s`` of rows (plus
        the time one write takes), not one and a half intervals as a fixed polling period would."""
        tick_every = max(min(self.cfg.window_s or self.cfg.slo.bucket_s, self.cfg.slo.bucket_s) / 2.0, 0.05)
        next_tick = time.time() + tick_every
        saves = self.checkpoint_key is not None and self.store is not None
        while True:
            wake = min(next_tick, self.last_checkpoint + self.cfg.checkpoint_s) if saves else next_tick
            if self._stop.wait(max(wake - time.time(), 0.01)):
                return
            now = time.time()
            try:
                if now >= next_tick:
                    self.tick()
                    next_tick = now + tick_every
                if saves and now >= self.last_checkpoint + self.cfg.checkpoint_s:
                    if self.dirty:
                        self.checkpoint()
                    else:  # nothing new to lose: the next one is due an interval from now
                        self.last_checkpoint = now
            except Exception as exc:  # noqa: BLE001  # keep the thread alive; say what happened
                log.error("monitor %s: background step failed: %s", self.route, exc)
                next_tick = max(next_tick, now + tick_every)
                self.last_checkpoint = max(self.last_checkpoint, now - self.cfg.checkpoint_s + 1.0)

    def rebaseline(self, reference_key: str | None = None, reference: dict[str, Any] | None = None,
                   calibration: dict[str, Any] | None = None) -> dict[str, Any]:
        """Watch against a new reference from now on, in place (:meth:`Monitor.rebased`: windows,
        long-term state, performance baseline and differential start over; counters, alerts, SLOs
        and labels go on); the
        replicas keep their handles, so nothing is redeployed. With an artifact store the new
        reference key is recorded (shard 0) and a checkpoint written, so a restart resumes on it.
        ``calibration``: the new model's probability calibration (estimated performance); without
        it the estimate's reference is the first window's, as for an uncalibrated model."""
        performance = self.cfg.performance.model_copy(update={
            "calibration": None if calibration is None else CalibrationConfig.model_validate(calibration)})
        if reference_key is not None:
            if self.store is None:
                raise ValidationError("rebaseline(reference_key=...) needs the monitor's artifact store")
            ref = MonitorReference.from_json(self.store.read_bytes(reference_key))
        elif reference is not None:
            ref = MonitorReference.from_dict(reference)
        else:
            raise ValidationError("rebaseline needs a reference_key or a reference")
        if self.shard == 0 and self.reference_pointer is not None and reference_key is not None:
            assert self.store is not None
            self.store.write_bytes(self.reference_pointer, reference_key.encode())
        with self.lock:
            rows_before = int(self.monitor.rows_total)
            self.reference, self.features = ref, list(ref.features)
            self.cfg = self.cfg.model_copy(update={"performance": performance})
            self.monitor = self.monitor.rebased(ref, self.cfg)
            self.predictions = Counter()
            self.dirty = True
        self.checkpoint()
        return {"shard": self.shard, "reference": ref.digest, "rows_before": rows_before}

    # -- the replicas' side ---------------------------------------------------------------------
    def ingest(self, X: Any, predictions: Any = None, version: str | None = None, latency_ms: Any = None,
               status: Any = None, request_ids: Any = None, scores: Any = None, role: str | None = None,
               epoch: int | None = None, score_class: Any = None, request_sizes: Any = None, **_: Any) -> int:
        """Add a batch: ``X`` is a 2-D array in reference feature order (or a column mapping).
        ``scores``: a binary classifier's probability of ``score_class`` per row (turned into the
        probability of the configured ``positive_label``). Returns the rows this shard ingested so
        far. Unknown keyword arguments are ignored."""
        if scores is not None and score_class is not None and \
                not same_label(score_class, self.monitor.config.performance.positive_label):
            scores = 1.0 - np.asarray(scores, dtype=np.float64)
        if isinstance(X, dict):
            columns = X
            n = len(np.asarray(next(iter(X.values()), [])))
        else:
            arr = np.asarray(X, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != len(self.features):
                raise ValidationError(f"X must be (rows, {len(self.features)}), got shape {arr.shape}")
            columns = {name: arr[:, j] for j, name in enumerate(self.features)}
            n = arr.shape[0]
        with self.lock:
            if role is not None and version is not None:
                self.monitor.differential.follow(str(version), str(role), int(epoch or 0), n)
            alerts = self.monitor.ingest(columns, predictions, version=version, latency_ms=latency_ms,
                                         status=status, request_ids=request_ids, scores=scores, role=role,
                                         request_sizes=request_sizes)
            if predictions is not None and (version is None or self.monitor.differential.is_champion(version)):
                values, counts = np.unique(np.asarray(predictions).astype(str), return_counts=True)
                for v, c in zip(values.tolist(), counts.tolist(), strict=True):
                    if v in self.predictions or len(self.predictions) < 100:
                        self.predictions[v] += int(c)
            self.dirty = True
            rows = self.monitor.rows_total
        self._send(alerts)
        return rows

    def feedback(self, request_ids: Any, labels: Any, detail: bool = False) -> dict[str, Any]:
        """Ground-truth labels for earlier requests, by request id: how many labels (rows) of
        this call were matched, are waiting for their row, or are unknown
        (:mod:`raymlops.monitor.labels`), ``unmatched`` (waiting + unknown + expired),
        ``pending`` (predictions waiting for a label), ``totals`` (every label this shard
        received, by outcome) and, with ``detail``, ``outcomes``: per given id its outcome (a list
        of outcomes for a list of labels)."""
        with self.lock:
            matched, alerts = self.monitor.feedback(request_ids, labels)
            perf = self.monitor.performance
            outcomes = list(perf.last_outcomes)
            totals = perf.label_counts()
            self.dirty = True
            pending = len(perf.store)
        self._send(alerts)
        counts = Counter(outcomes)
        out: dict[str, Any] = {"matched": matched, "waiting": counts["waiting"], "expired": counts["expired"],
                               "unknown": counts["unknown"], "unmatched": len(outcomes) - matched,
                               "pending": pending, "totals": totals}
        if detail:
            per_id: list[Any] = []
            i = 0
            for label in labels:  # a list of labels: one per row of that request
                n = len(np.asarray(label).ravel()) if isinstance(label, (list, tuple, np.ndarray)) else 0
                per_id.append(outcomes[i:i + n] if n else outcomes[i])
                i += n or 1
            out["outcomes"] = per_id
        return out

    def check_feedback(self, request_ids: Any, labels: Any) -> None:
        """:meth:`feedback`'s checks alone (a ValidationError, nothing changed): the first phase
        of labels sent to several shards, so that a refused one changes none."""
        with self.lock:
            self.monitor.check_feedback(request_ids, labels)

    def tick(self) -> list[dict[str, Any]]:
        """Close a window whose time is up and check the SLOs; returns the new alerts."""
        with self.lock:
            alerts = self.monitor.tick()
            if alerts:
                self.dirty = True
        self._send(alerts)
        return [a.to_dict() for a in alerts]

    def _send(self, alerts: list[Any]) -> None:
        if alerts:
            problems = send_alerts(alerts, self.cfg.alerts, self.route, self.home)
            self.sink_problems = (self.sink_problems + problems)[-20:]

    # -- reading -------------------------------------------------------------------------------
    def rows(self) -> int:
        """Rows ingested, by every shard of the route (this shard's own: :meth:`local_rows`)."""
        if self.shards == 1:
            return int(self.monitor.rows_total)
        return sum(int(s["rows"]) for s in self._snapshots(rows_only=True))

    def local_rows(self) -> int:
        return int(self.monitor.rows_total)

    # -- shards ----------------------------------------------------------------------------------
    def shard_names(self) -> list[str]:
        """The actor names of every shard of this route, shard 0 first."""
        return [shard_name(self.route, i) for i in range(self.shards)]

    def snapshot(self, rows_only: bool = False) -> dict[str, Any]:
        """This shard's state for a merged view (:func:`raymlops.monitor.shards.snapshot`)."""
        with self.lock:
            out: dict[str, Any] = {"shard": self.shard, "rows": int(self.monitor.rows_total)}
            if not rows_only:
                self.monitor.performance.expire(self.monitor.clock())  # labels past their time-to-live
                out["monitor"] = snapshot(self.monitor)
                out["predictions"] = dict(self.predictions)
        return out

    def _snapshots(self, rows_only: bool = False) -> list[dict[str, Any]]:
        """Every shard's snapshot, this one's first; a shard that does not answer in time is
        left out and named in ``missing``."""

        missing: list[str] = []
        if self._peers is None:
            namespace = ray.get_runtime_context().namespace
            peers: list[tuple[int, Any]] = []
            for i in range(1, self.shards):
                try:
                    peers.append((i, ray.get_actor(shard_name(self.route, i), namespace=namespace)))
                except ValueError:
                    missing.append(f"{shard_name(self.route, i)}: not found")
            self._peers = peers if not missing else None  # look the missing up again next time
        else:
            peers = self._peers
        refs: list[tuple[int, Any]] = [(i, p.snapshot.remote(rows_only)) for i, p in peers]
        ready: list[Any] = []
        if refs:
            ready, _ = ray.wait([r for _, r in refs], num_returns=len(refs), timeout=PEER_TIMEOUT_S)
        out: list[dict[str, Any]] = [self.snapshot(rows_only)]
        for i, ref in refs:
            try:
                if ref not in ready:
                    raise TimeoutError(f"no answer within {PEER_TIMEOUT_S:g} s")
                out.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001  # a dead or slow shard: merge the others, say which
                missing.append(f"{shard_name(self.route, i)}: {type(exc).__name__}")
                self._peers = None  # look it up again next time (Ray may have restarted it)
        self._missing = missing
        return out

    def _merged(self) -> tuple[Any, Counter[str], list[dict[str, Any]]]:
        snaps = self._snapshots()
        merged = merge_monitors([s["monitor"] for s in snaps], config=self.cfg)
        predictions: Counter[str] = Counter()
        for s in snaps:
            predictions.update(s["predictions"])
        return merged, predictions, snaps

    def _merged_status(self) -> dict[str, Any]:
        merged, _, snaps = self._merged()
        out = merged.status()
        out["shards"] = {"count": self.shards, "rows": {int(s["shard"]): int(s["rows"]) for s in snaps},
                         "missing": list(self._missing)}
        return out

    def _status_locked(self) -> dict[str, Any]:
        with self.lock:
            self.monitor.performance.expire(self.monitor.clock())  # labels past their time-to-live
            return self.monitor.status()

    def status(self) -> dict[str, Any]:
        """Everything about the route's monitoring (merged over shards on shard 0)."""
        if self.shards > 1 and self.shard == 0:
            out = self._merged_status()
        else:
            out = self._status_locked()
            out["shards"] = {"count": self.shards, "rows": {self.shard: int(out["rows_total"])}, "missing": [],
                             "this": self.shard}
        out.update(route=self.route, restored=self.restored, metrics_url=self.metrics_url,
                   checkpoint={"key": self.checkpoint_key, "count": self.checkpoints, "last": self.last_checkpoint},
                   sink_problems=list(self.sink_problems), features=self.features,
                   slices=list(self.reference.slices))
        return out

    def summary(self) -> dict[str, Any]:
        """Drift over the rolling long-term window (every row when fewer than ``long_term_windows``
        windows have closed), in the shape the pipeline and ``raymlops status`` read."""
        if self.shards > 1 and self.shard == 0:
            merged, predictions, _ = self._merged()
            verdict, batches, rows = merged.long_term(), merged.batches, merged.rows_total
        else:
            with self.lock:
                verdict = self.monitor.long_term()
                batches = self.monitor.batches
                rows = self.monitor.rows_total
                predictions = Counter(self.predictions)
        if verdict is None:
            return {"rows": rows, "dataset_drift": False, "drifted_features": [], "features": [],
                    "predictions": {}, "batches": batches, "share_drifted": 0.0}
        d = verdict.to_dict()
        o = d["overall"]
        return {"rows": rows, "window_rows": verdict.rows, "method": verdict.correction,
                "dataset_drift": o["dataset_drift"], "share_drifted": o["share_drifted"],
                "drifted_features": o["drifted"], "features": o["columns"],
                "drifted_slices": list(verdict.drifted_slices), "slices": d["slices"],
                "predictions": dict(sorted(predictions.items())), "batches": batches}

    def stop(self) -> None:
        self._stop.set()

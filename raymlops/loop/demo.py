"""``raymlops demo``: the whole closed loop in one command, on this machine.

1. train, gate, register and serve a model on synthetic data (:mod:`raymlops.loop.demo_data`)
   at ``http://127.0.0.1:<free port>/demo``, monitored with ``region`` as slice column;
2. replay traffic over HTTP: normal, then drift confined to one region (the slice alert), then
   global drift (the dataset alert). The demo's monitor uses ``dataset_rule: share``
   (Evidently's rule: dataset drift when at least half of the features drift, each tested at
   ``alpha`` = 0.001 without correction), because the story wants the dataset alert, and so the
   retraining, only once drift is everywhere: under the default rule (``any``: one feature after
   the Bonferroni correction) region 2's drift already moves ``x1`` overall enough to be dataset
   drift, and the retraining would start on the one-slice drift;
3. the watcher sees the dataset alert and runs one retraining cycle on a fresh snapshot of the
   drifted world while traffic keeps flowing: training and gate, the new version as shadow
   challenger, the differential check, promotion (registry + live), the monitor re-baselined;
4. more traffic: answered by the new champion, with no drift alert against the new reference;
5. the summary and the audit trail of the cycle; Serve is shut down (and the temporary home
   removed unless ``keep``).

:func:`run_demo` is the one call behind the command; it returns the summary as a dict.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from raymlops import audit
from raymlops.config import PipelineConfig, parse_config
from raymlops.exceptions import ServeError
from raymlops.loop.controller import RetrainController, Watcher
from raymlops.loop.demo_data import requests
from raymlops.monitor.names import monitor_name
from raymlops.pipeline.runner import run_pipeline, stop_serving
from raymlops.ray_session import NAMESPACE
from raymlops.serve.deploy import http_json
from raymlops.store.home import Store

__all__ = ["DEMO_YAML", "demo_config", "run_demo"]

# configs/demo.yaml holds the same config (a unit test keeps them equal)
DEMO_YAML = """
name: demo
seed: 7
data:
  source: callable:raymlops.loop.demo_data:baseline
  target: y
  features: [x1, x2, x3, x4, region]
  holdout_fraction: 0.2
train:
  metric: roc_auc
  max_concurrent_trials: 2
  cpus_per_trial: 0.5
  candidates:
    - estimator: sklearn.linear_model.LogisticRegression
      scale: true
      params: {C: [0.1, 1.0], max_iter: 500}
gate:
  rules: ["roc_auc >= 0.8", "accuracy >= 0.75"]
serve: {host: 127.0.0.1, port: 8000, max_batch_size: 32, batch_wait_timeout_s: 0.005}
monitor:
  window_rows: 300
  dataset_rule: share  # dataset drift only once most features drift (see the module docstring)
  dataset_drift_share: 0.5
  alpha: 0.001
  categorical: [region]
  slice_columns: [region]
  min_rows: 30
  differential: {min_pairs: 50, min_agreement: 0.5, max_prediction_distance: 0.3}
  alerts: {cooldown_s: 120}
retrain:
  enabled: true
  triggers: [dataset_drift, performance]
  cooldown_s: 300
  source: callable:raymlops.loop.demo_data:drifted
  shadow_rows: 200
  shadow_timeout_s: 120
  interval_s: 1.0
  promote: {min_agreement: 0.5, max_errors: 0, beat_champion: true}
"""

PHASES = (("normal", "none", "traffic like the training data"),
          ("slice", "slice", "x1 drifts in region 2 only"),
          ("global", "global", "x1, x2, x3 drift in every region (and x2's effect on the label flips)"))


def demo_config(port: int = 8000, window_rows: int | None = None) -> PipelineConfig:
    """The demo's pipeline config, serving on ``port``."""
    data = yaml.safe_load(DEMO_YAML)
    data["serve"]["port"] = port
    if window_rows is not None:
        data["monitor"]["window_rows"] = window_rows
    return parse_config(data, "raymlops demo")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Traffic:
    """Sends requests from a background thread until stopped; counts answers by version."""

    def __init__(self, url: str, bodies: list[list[dict[str, Any]]], pause_s: float = 0.05) -> None:
        self.url, self.bodies, self.pause_s = url, bodies, pause_s
        self.versions: Counter[str] = Counter()
        self.failed = 0
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="raymlops-demo-traffic", daemon=True)

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            body = self.bodies[i % len(self.bodies)]
            i += 1
            try:
                status, answer = http_json("POST", self.url, {"instances": body}, timeout=30)
            except OSError:
                status, answer = 0, None
            self.sent += 1
            if status == 200 and isinstance(answer, dict):
                self.versions[str(answer.get("model_version"))] += 1
            else:
                self.failed += 1
            self._stop.wait(self.pause_s)

    def __enter__(self) -> _Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def _send(url: str, bodies: list[list[dict[str, Any]]]) -> Counter[str]:
    versions: Counter[str] = Counter()
    for body in bodies:
        status, answer = http_json("POST", url, {"instances": body}, timeout=30)
        if status != 200:
            raise ServeError(f"{url} answered {status}: {answer}")
        versions[str(answer.get("model_version"))] += len(body)
    return versions


def _monitor() -> Any:
    import ray

    return ray.get_actor(monitor_name("demo"), namespace=NAMESPACE)


def _wait_rows(want: int, timeout_s: float = 30.0) -> int:
    import ray

    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = int(ray.get(_monitor().rows.remote()))
        if seen >= want:
            break
        time.sleep(0.2)
    return seen


def _alerts_since(ts: float) -> list[dict[str, Any]]:
    import ray

    status = ray.get(_monitor().status.remote())
    return [a for a in (status.get("alerts") or {}).get("recent") or [] if float(a.get("ts") or 0) >= ts]


def _brief(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a.get(k) for k in ("kind", "key", "slice", "severity", "message", "ts")}


def _in_cycle(record: dict[str, Any], cycle: Any) -> bool:
    """The cycle's own records, the alert that started it, and every record it gave as reason."""
    ids = record.get("ids") or {}
    if ids.get("cycle") == cycle.cycle or record.get("reason") == cycle.trigger.reason:
        return True
    alert = (record.get("how") or {}).get("alert") or {}
    return str(record.get("action", "")).startswith("alert.") and ids.get("alert") == cycle.trigger.key \
        and alert.get("ts") == cycle.trigger.ts


def run_demo(home: str | Path | None = None, port: int | None = None, rows: int = 600,
             window_rows: int | None = None, keep: bool = False,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo (see the module docstring); the summary. ``rows``: requests' rows per
    traffic phase; ``window_rows``: the monitor's window (default ``rows // 2``)."""
    import ray

    t_start = time.perf_counter()
    temp = home is None
    home_path = Path(tempfile.mkdtemp(prefix="raymlops-demo-")) if home is None else Path(home)
    window = window_rows or max(rows // 2, 50)
    cfg = demo_config(port or _free_port(), window_rows=window)
    started_ray = not ray.is_initialized()
    summary: dict[str, Any] = {"home": str(home_path), "route": cfg.route, "rows_per_phase": rows,
                               "window_rows": window, "phases": {}}
    store = Store.open(home_path)

    def step(n: int, text: str) -> None:
        say(f"\n== {n}/6 {text} ==")

    try:
        step(1, "train, gate, register and serve the first model")
        result = run_pipeline(cfg, home=home_path, progress=lambda line: say(f"  {line}"), keep_serving=True,
                              reason="raymlops demo: first model")
        url = f"{result.endpoint}/predict"
        summary.update(endpoint=result.endpoint, champion_before=result.model)
        say(f"  serving {result.model} at {url}")
        controller = RetrainController(cfg, store, progress=say)
        watcher = Watcher(controller)  # alerts from now on count

        step(2, "replay traffic: normal, then drift in one slice, then global drift")
        for i, (name, drift, what) in enumerate(PHASES):
            t0 = time.time()
            before = int(ray.get(_monitor().rows.remote()))
            versions = _send(url, requests(rows, seed=100 + i, drift=drift))
            _wait_rows(before + rows)
            alerts = _alerts_since(t0)
            summary["phases"][name] = {"what": what, "rows": rows, "answered_by": dict(versions),
                                       "alerts": [_brief(a) for a in alerts]}
            say(f"  {name:<7} {rows} rows ({what}): {len(alerts)} alert(s)")
            for a in alerts:
                say(f"      [{a['kind']}] {a['message']}")

        step(3, "closed loop: the dataset alert triggers retraining on a fresh snapshot")
        drifted = requests(max(rows, 200), seed=200, drift="global")
        cycle = None
        with _Traffic(url, drifted) as traffic:  # traffic keeps flowing through the whole cycle
            deadline = time.monotonic() + 60
            while cycle is None and time.monotonic() < deadline and not watcher.failures:
                cycle = watcher.poll()
                if cycle is None:
                    time.sleep(0.5)
        summary["traffic_during_cycle"] = {"requests": traffic.sent, "failed": traffic.failed,
                                           "answered_by": dict(traffic.versions)}
        if cycle is None:
            why = watcher.failures[0] if watcher.failures else "no dataset_drift alert within 60 s"
            raise RuntimeError(f"the closed loop did not run: {why}")
        summary["cycle"] = cycle.to_dict()
        summary["champion_after"] = cycle.champion_after
        say(f"  cycle {cycle.cycle}: {cycle.status} in {cycle.seconds:.1f}s; traffic meanwhile: {traffic.sent} "
            f"requests, {traffic.failed} failed, answered by {dict(traffic.versions)}")

        step(4, "after the cycle: who answers, and does the monitor still see drift?")
        t0 = time.time()
        before = int(ray.get(_monitor().rows.remote()))
        versions = _send(url, requests(rows, seed=300, drift="global"))
        _wait_rows(before + rows)
        after_alerts = _alerts_since(t0)
        summary["after"] = {"answered_by": dict(versions), "alerts": [_brief(a) for a in after_alerts]}
        say(f"  {rows} drifted rows answered by {dict(versions)}; {len(after_alerts)} alert(s) "
            f"against the {'new' if cycle.status == 'promoted' else 'old'} reference")
        for a in after_alerts:
            say(f"      [{a['kind']}] {a['message']}")

        step(5, "audit trail of the cycle")
        trail = [audit.to_json(r) for r in audit.records(store.metadata) if _in_cycle(r.record, cycle)]
        summary["audit"] = [{"seq": r["seq"], "action": r["action"], "ids": r["ids"], "reason": r["reason"]}
                            for r in trail]
        for r in summary["audit"]:
            ids = ", ".join(f"{k}={str(v)[:12] if k in ('snapshot', 'reference') else v}"
                            for k, v in r["ids"].items() if k not in ("cycle", "deployment"))
            say(f"  #{r['seq']:<4} {r['action']:<28} {ids}")
        say(f"  every record's reason: {cycle.trigger.reason!r}")

        step(6, "summary")
        summary["seconds"] = round(time.perf_counter() - t_start, 1)
        say(f"  {summary['champion_before']} -> {summary.get('champion_after')} ({cycle.status}) after "
            f"{cycle.trigger.kind}; demo took {summary['seconds']}s")
        return summary
    finally:
        try:
            stop_serving(cfg)
        finally:
            if started_ray:
                ray.shutdown()
            if temp and not keep:
                shutil.rmtree(home_path, ignore_errors=True)

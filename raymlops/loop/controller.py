"""Ray adapter: one closed-loop retraining cycle of a live route, and the watcher that starts
cycles from the route's monitor alerts.

A cycle (:meth:`RetrainController.run_cycle`), each step an audit record whose reason is the
trigger (``alert <key>: <message>``) and whose ids carry the cycle id:

1. ``retrain.triggered``: the alert, the policy, the source of the fresh data;
2. a pipeline run on ``retrain.source`` (default ``data.source``) with ``alias=None``: a fresh
   snapshot, training, the gate, registration without the champion alias
   (``model.registered``…); then ``retrain.trained`` — or ``retrain.rejected`` when the gate
   refused the model, which ends the cycle;
3. the new version as shadow challenger of the route (``deployment.traffic_changed``), while
   traffic keeps flowing, until ``retrain.shadow_rows`` rows were answered by both (or
   ``shadow_timeout_s``);
4. the differential check (shadow log + the monitor's differential section) and both models
   scored on the fresh holdout, held to ``retrain.promote`` (:func:`raymlops.loop.policy.decide`):
   ``retrain.evaluated``;
5. promotion — registry (``alias.moved``), live serving (``deployment.promoted``), the
   monitor's reference moved to the new training data (``monitor.rebaselined``) and
   ``retrain.promoted`` — or retirement of the challenger (``deployment.traffic_changed``,
   ``retrain.retired``).

A cycle that fails writes ``retrain.failed`` and retires a challenger it had deployed. A cycle
holds the lease ``retrain:<route>`` (:mod:`raymlops.store.leases`) from before it reads the live
table until it ends, so two watchers cannot both train and deploy a challenger for one route; the
second is refused with :class:`~raymlops.store.leases.LeaseHeld` and writes nothing.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raymlops import audit
from raymlops.config import PipelineConfig
from raymlops.data.snapshot import snapshot_info
from raymlops.data.snapshot_read import read_snapshot
from raymlops.exceptions import ConfigError, NotFound, ServeError
from raymlops.hooks import emit
from raymlops.loop.policy import Decision, Evidence, RetrainPolicy, Trigger, decide, evidence_from
from raymlops.monitor.lifecycle import rebaseline_monitor, start_monitor
from raymlops.monitor.names import monitor_name
from raymlops.pipeline.runner import run_pipeline
from raymlops.pipeline.serve_steps import monitor_settings, training_reference
from raymlops.ray_session import NAMESPACE, ensure_ray
from raymlops.registry.registry import CHAMPION, get_model, load_model, promote
from raymlops.serve.control import get_control
from raymlops.serve.traffic import current_table, deploy_model, set_challenger, set_champion
from raymlops.store import leases
from raymlops.store.home import Store
from raymlops.train.evaluate import task_metrics
from raymlops.train.prepare import split_table

__all__ = ["CycleResult", "RetrainController", "Watcher", "retrain_config_for"]

LEASE_TTL_S = 120.0  # renewed every 30 s while a cycle runs; a dead holder blocks for at most this


@dataclass
class CycleResult:
    """What one cycle did; ``status``: promoted | retired | rejected (by the gate) | unchanged (the
    fresh data was the champion's own, or gave a version an earlier cycle retired against the same
    champion under the same policy) | failed."""

    cycle: str
    trigger: Trigger
    status: str = "running"
    route: str = ""
    champion_before: str | None = None
    champion_after: str | None = None
    challenger: str | None = None
    snapshot: str | None = None
    run_id: str | None = None
    gate: str | None = None
    gate_reasons: list[str] = field(default_factory=list)
    data_drift: dict[str, Any] | None = None
    evidence: Evidence | None = None
    decision: Decision | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"cycle": self.cycle, "trigger": self.trigger.to_dict(), "reason": self.trigger.reason,
                "status": self.status, "route": self.route, "champion_before": self.champion_before,
                "champion_after": self.champion_after, "challenger": self.challenger, "snapshot": self.snapshot,
                "run": self.run_id, "gate": self.gate, "gate_reasons": self.gate_reasons,
                "data_drift": self.data_drift,
                "evidence": None if self.evidence is None else self.evidence.to_dict(),
                "decision": None if self.decision is None else self.decision.to_dict(),
                "stages": self.stages, "error": self.error, "seconds": round(self.seconds, 3)}


def retrain_config_for(config: PipelineConfig) -> PipelineConfig:
    """The config of the retraining run: ``data.source`` replaced by ``retrain.source`` when set."""
    source = config.retrain.source
    if source is None or source == config.data.source:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"source": source})})


class RetrainController:
    """Runs cycles for the live route of ``config`` (see the module docstring). ``progress``
    gets one line per stage; ``pipeline_progress`` the retraining run's step lines (default:
    none); ``clock``/``sleep`` are injectable."""

    def __init__(self, config: PipelineConfig, store: Store, progress: Callable[[str], None] | None = None,
                 pipeline_progress: Callable[[str], None] | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.5) -> None:
        self.config = config
        self.store = store
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.pipeline_progress = pipeline_progress or (lambda line: None)
        self.clock = clock
        self.sleep = sleep
        self.poll_s = poll_s
        self.persistent = False
        self._shadow_since = 0.0

    # -- records -------------------------------------------------------------------------------
    def _audit(self, res: CycleResult, action: str, ids: dict[str, Any], how: dict[str, Any]) -> None:
        with self.store.metadata.transaction() as conn:
            audit.append(conn, action, {"cycle": res.cycle, "deployment": res.route, **ids}, res.trigger.reason, how)
        emit(self.store.home, action, {"cycle": res.cycle, "deployment": res.route, **ids,
                                       "reason": res.trigger.reason})

    def _stage(self, res: CycleResult, name: str, t0: float, detail: str) -> None:
        seconds = time.perf_counter() - t0
        res.stages.append({"stage": name, "seconds": round(seconds, 3), "detail": detail})
        self.progress(f"  [{name}] {detail} ({seconds:.1f}s)")

    # -- the cycle -----------------------------------------------------------------------------
    def run_cycle(self, trigger: Trigger) -> CycleResult:
        """One cycle for ``trigger``; raises what a step raised after recording ``retrain.failed``."""
        cfg = self.config
        res = CycleResult(cycle=uuid.uuid4().hex[:12], trigger=trigger, route=cfg.route)
        started = time.perf_counter()
        if not cfg.serve.enabled:
            raise ConfigError("serve.enabled: expected true for retraining (the challenger is served in shadow)")
        try:
            res.champion_before = get_model(self.store, f"{cfg.name}@champion").id
        except NotFound:
            raise ConfigError(f"retrain: model {cfg.name!r} has no champion yet; run the pipeline first") from None
        # one cycle per route at a time, across processes and hosts sharing the store
        with leases.Held(self.store.metadata, f"retrain:{res.route}", ttl_s=LEASE_TTL_S):
            self.persistent = ensure_ray()
            return self._locked_cycle(res, trigger, started)

    def _locked_cycle(self, res: CycleResult, trigger: Trigger, started: float) -> CycleResult:
        cfg = self.config
        table = self._live_table()  # the route must be serving: fail before training, not after
        if table.challenger is not None:  # never replace someone's canary or another cycle's shadow
            raise ServeError(f"retrain: /{res.route} already has a challenger ({table.challenger.model_id}, "
                             f"{table.mode}); end it first (raymlops deploy {res.route} --end-challenger)")
        source = cfg.retrain.source or cfg.data.source
        self._audit(res, "retrain.triggered", {"model": res.champion_before, "alert": trigger.key},
                    {"trigger": trigger.to_dict(), "source": source, "policy": cfg.retrain.model_dump(mode="json")})
        self.progress(f"retraining cycle {res.cycle} for /{res.route} because {trigger.reason}")
        deployed = False
        try:
            if self._train(res) and res.challenger is not None:
                deployed = True
                self._shadow(res)
                self._evaluate(res)
                assert res.decision is not None
                if res.decision.promote:
                    self._promote(res)
                else:
                    self._retire(res, res.decision.summary())
                deployed = False
        except BaseException as exc:
            res.status = "failed"
            res.error = f"{type(exc).__name__}: {exc}"
            if deployed:
                try:
                    self._retire(res, f"the cycle failed: {res.error}", final=False)
                except Exception as undo:  # noqa: BLE001  # report the first failure, not this one
                    self.progress(f"  could not retire the challenger: {undo}")
            self._audit(res, "retrain.failed", {"model": res.challenger or res.champion_before},
                        {"error": res.error, "stages": res.stages})
            res.seconds = time.perf_counter() - started
            self.progress(f"retraining cycle {res.cycle} failed: {res.error}")
            raise
        res.seconds = time.perf_counter() - started
        return res

    def _live_table(self) -> Any:
        try:
            return current_table(self.config.route)
        except NotFound as exc:
            raise ServeError(f"retrain: {exc}") from None

    def _train(self, res: CycleResult) -> bool:
        t0 = time.perf_counter()
        run_cfg = retrain_config_for(self.config)
        result = run_pipeline(run_cfg, home=self.store.home, progress=self.pipeline_progress, keep_serving=True,
                              reason=res.trigger.reason, alias=None)
        res.run_id, res.snapshot, res.gate = result.run_id, result.snapshot, result.gate
        res.gate_reasons = list(result.gate_reasons)
        dd = result.data_drift or {}
        keep = ("reference", "verdict", "dataset_drift", "share", "drifted_columns", "tested")
        res.data_drift = {k: dd.get(k) for k in keep if k in dd} or None
        if result.gate != "passed" or result.model is None:
            self._audit(res, "retrain.rejected", {"model": result.model, "snapshot": result.snapshot,
                                                  "run": result.run_id}, {"gate_reasons": res.gate_reasons})
            res.status = "rejected"
            res.challenger = None
            res.champion_after = res.champion_before
            self._stage(res, "train", t0, f"{result.model} rejected by the gate: {'; '.join(res.gate_reasons)}")
            return False
        if result.model == res.champion_before:  # same data, same config: the step cache gave the champion back
            self._audit(res, "retrain.unchanged", {"model": result.model, "snapshot": result.snapshot,
                                                   "run": result.run_id}, {"why": "the fresh snapshot is the "
                                                                                 "champion's own training data"})
            res.status = "unchanged"
            res.challenger = None
            res.champion_after = res.champion_before
            self._stage(res, "train", t0, f"snapshot {str(result.snapshot)[:12]} is the champion's own training "
                                          f"data: {result.model} again, nothing to compare")
            return False
        earlier = self._retired_before(result.model, res.champion_before)
        if earlier is not None:  # no new data: the same version, judged against the same champion
            cycle, why = earlier["ids"].get("cycle"), earlier["how"].get("why")
            self._audit(res, "retrain.unchanged", {"model": result.model, "snapshot": result.snapshot,
                                                   "run": result.run_id},
                        {"why": f"cycle {cycle} retired {result.model} against {res.champion_before} under this "
                                f"retraining policy: {why}"})
            res.status = "unchanged"
            res.challenger = None
            res.champion_after = res.champion_before
            self._stage(res, "train", t0, f"snapshot {str(result.snapshot)[:12]} gives {result.model} again, which "
                                          f"cycle {cycle} retired against {res.champion_before} ({why}): no new "
                                          "data, nothing to compare")
            return False
        res.challenger = result.model
        metric = self.config.train.metric
        score = result.metrics.get(metric)
        self._audit(res, "retrain.trained", {"model": result.model, "snapshot": result.snapshot, "run": result.run_id},
                    {"metrics": result.metrics, "data_drift": res.data_drift})
        shown = f", {metric} {score:.3f}" if isinstance(score, float) else ""
        drift = ""
        if res.data_drift and res.data_drift.get("dataset_drift"):
            drift = f"; it drifted from the champion's data in {', '.join(res.data_drift.get('drifted_columns') or [])}"
        self._stage(res, "train", t0, f"fresh snapshot {str(result.snapshot)[:12]} -> {result.model} passed the gate"
                                      f"{shown} (run {result.run_id}){drift}")
        return True

    def _retired_before(self, model: str | None, champion: str | None) -> dict[str, Any] | None:
        """The record of an earlier cycle that retired ``model`` against ``champion`` under this
        retraining policy (None: none did). The same fresh data gives the same version again (the
        step cache), so shadowing it again would give the same verdict: a loop on unchanged data
        re-shadowed a retired version every cycle."""
        policy = self.config.retrain.model_dump(mode="json")
        for r in reversed(audit.records(self.store.metadata, action="retrain.retired", id=model)):
            how = r.record.get("how") or {}
            if r.record["ids"].get("model") == model and how.get("champion") == champion \
                    and how.get("policy") == policy:
                return r.record
        return None

    def _shadow(self, res: CycleResult) -> None:
        import ray

        assert res.challenger is not None and res.champion_before is not None
        t0 = time.perf_counter()
        self._shadow_since = self.clock()  # before the switch: replicas may shadow before it returns
        set_challenger(self.store, res.route, res.challenger, "shadow", reason=res.trigger.reason)
        self._stage(res, "shadow", t0, f"{res.challenger} deployed as shadow challenger of /{res.route} "
                                       f"(champion {res.champion_before})")
        t1 = time.perf_counter()
        want, deadline = self.config.retrain.shadow_rows, time.monotonic() + self.config.retrain.shadow_timeout_s
        rows = 0
        while True:
            control = get_control(res.route, NAMESPACE)
            if control is None:
                raise ServeError(f"the deployment at /{res.route} went away while its challenger was in shadow")
            log = ray.get(control.shadow_log.remote())
            rows = evidence_from(res.challenger, res.champion_before, log, None, since=self._shadow_since).rows
            if rows >= want or time.monotonic() >= deadline:
                break
            self.sleep(self.poll_s)
        waited = f"after {self.config.retrain.shadow_timeout_s:.0f} s" if rows < want else f"(wanted {want})"
        self._stage(res, "compare", t1, f"{rows} shadow rows answered by both models {waited}")

    def _monitor_status(self) -> dict[str, Any] | None:
        import ray

        if not self.config.monitor.enabled:
            return None
        try:
            handle = ray.get_actor(monitor_name(self.config.route), namespace=NAMESPACE)
            status: Any = ray.get(handle.status.remote(), timeout=30)
        except Exception:  # noqa: BLE001  # no monitor: the shadow log alone decides
            return None
        return dict(status)

    def _scores(self, res: CycleResult) -> dict[str, Any]:
        """Both models on the fresh snapshot's holdout (what the challenger's gate saw)."""
        assert res.challenger is not None and res.champion_before is not None and res.snapshot is not None
        run_cfg = retrain_config_for(self.config)
        metric = self.config.train.metric
        _, table = read_snapshot(self.store, res.snapshot)
        out: dict[str, Any] = {"metric": metric}
        for role, ref in (("champion_score", res.champion_before), ("challenger_score", res.challenger)):
            version = get_model(self.store, ref)
            features = version.features
            missing = [f for f in features if f not in table.column_names]
            if missing:  # the champion needs columns the fresh data no longer has
                out[role] = None
                continue
            _, _, Xho, yho = split_table(table, features, run_cfg)
            value = task_metrics(self.config.train.task, load_model(self.store, version), Xho, yho,
                                 self.config.train.positive_label).get(metric)
            out[role] = None if value is None else float(value)
        return out

    def _evaluate(self, res: CycleResult) -> None:
        import ray

        assert res.challenger is not None and res.champion_before is not None
        t0 = time.perf_counter()
        control = get_control(res.route, NAMESPACE)
        log = ray.get(control.shadow_log.remote()) if control is not None else []
        scores = self._scores(res)
        res.evidence = evidence_from(res.challenger, res.champion_before, log, self._monitor_status(),
                                     since=self._shadow_since, waited_s=self.clock() - self._shadow_since,
                                     **scores)
        res.decision = decide(res.evidence, self.config.retrain)
        self._audit(res, "retrain.evaluated", {"model": res.challenger},
                    {"evidence": res.evidence.to_dict(), "decision": res.decision.to_dict()})
        e = res.evidence
        agreement = "n/a" if e.agreement is None else f"{e.agreement:.1%}"
        verdict = "promote" if res.decision.promote else "retire"
        distance = "" if e.prediction_distance is None else f", prediction distance {e.prediction_distance:.3f}"
        self._stage(res, "differential", t0, f"{e.rows} rows, agreement {agreement}{distance}, {e.errors} errors, "
                                             f"{scores['metric']} champion {_num(e.champion_score)} vs challenger "
                                             f"{_num(e.challenger_score)} on the fresh holdout -> {verdict}")
        for c in res.decision.checks:
            self.progress(f"      {'pass' if c.passed else 'FAIL'}  {c.rule}: {c.detail}")

    def _promote(self, res: CycleResult) -> None:
        assert res.challenger is not None
        t0 = time.perf_counter()
        reason = res.trigger.reason
        promote(self.store, res.challenger, CHAMPION, reason=reason)
        set_champion(self.store, res.route, res.challenger, reason, action="deployment.promoted")
        res.champion_after = res.challenger
        self._stage(res, "promote", t0, f"{res.challenger} is champion of {self.config.name} and serves /{res.route}")
        if self.config.retrain.rebaseline and self.config.monitor.enabled:
            self._rebaseline(res)
        res.status = "promoted"
        self._audit(res, "retrain.promoted", {"model": res.challenger, "previous": res.champion_before},
                    {"decision": res.decision.to_dict() if res.decision else None, "stages": res.stages})

    def _rebaseline(self, res: CycleResult) -> None:
        """The monitor's reference becomes the new champion's training rows, in place: the
        running monitor actors swap references and the replicas keep sending to them. Only
        when no monitor is running is one started and the route redeployed to report to it."""
        assert res.challenger is not None and res.snapshot is not None
        t0 = time.perf_counter()
        cfg = self.config
        mon = cfg.monitor
        new_champion = get_model(self.store, res.challenger)
        features = new_champion.features
        # the new champion's probability calibration (CBPE), fitted on its own holdout
        calibration = new_champion.lineage.get("calibration")
        _, table = read_snapshot(self.store, res.snapshot)
        reference = training_reference(table, features, retrain_config_for(cfg),
                                       snapshot_info(self.store, res.snapshot).schema)
        try:
            rebaseline_monitor(cfg.route, reference, NAMESPACE, artifact_root=self.store.artifacts.root_uri,
                               calibration=calibration)
            how = "in place"
        except NotFound:  # the monitor is gone (stopped, or out of restarts): a new one, and replicas told
            start_monitor(cfg.route, reference, monitor_settings(cfg, new_champion), NAMESPACE,
                          detached=self.persistent, home=str(self.store.home),
                          artifact_root=self.store.artifacts.root_uri)
            deploy_model(self.store, res.challenger, route=cfg.route, serve_config=cfg.serve,
                         sample_rate=mon.sample_rate, reason=res.trigger.reason)
            how = "restarted and redeployed"
        self._audit(res, "monitor.rebaselined", {"model": res.challenger, "snapshot": res.snapshot},
                    {"reference_rows": int(reference.column_counts(features[0]).sum()), "features": features,
                     "reference": reference.digest,
                     "how": how})
        self._stage(res, "rebaseline", t0, f"monitor reference = training rows of snapshot {res.snapshot[:12]}")

    def _retire(self, res: CycleResult, why: str, final: bool = True) -> None:
        assert res.challenger is not None
        t0 = time.perf_counter()
        set_challenger(self.store, res.route, None, reason=res.trigger.reason)
        res.champion_after = res.champion_before
        if final:
            res.status = "retired"
            self._audit(res, "retrain.retired", {"model": res.challenger},
                        {"why": why, "decision": res.decision.to_dict() if res.decision else None,
                         "champion": res.champion_before, "policy": self.config.retrain.model_dump(mode="json")})
        self._stage(res, "retire", t0, f"{res.challenger} retired ({why}); {res.champion_before} stays champion")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


class Watcher:
    """Reads the route's monitor alerts every ``retrain.interval_s`` and runs a cycle for the
    first one the policy accepts (:class:`raymlops.loop.policy.RetrainPolicy`)."""

    def __init__(self, controller: RetrainController, policy: RetrainPolicy | None = None) -> None:
        self.controller = controller
        cfg = controller.config
        self.policy = policy or RetrainPolicy(cfg.retrain, clock=controller.clock, since=controller.clock())
        self.results: list[CycleResult] = []
        self.failures: list[str] = []
        self.skipped: list[str] = []  # triggers another process's cycle was already answering

    def alerts(self) -> list[dict[str, Any]]:
        """The monitor's recent alerts and the newest of each kind (a trigger's kind may be past
        the recent ones: a window where every feature drifts raises dozens of alerts at once);
        empty when the monitor is not reachable now."""
        status = self.controller._monitor_status()
        if not status:
            return []
        alerts = status.get("alerts") or {}
        return [*(alerts.get("recent") or []), *(alerts.get("latest") or {}).values()]

    def poll(self) -> CycleResult | None:
        """Run a cycle if a new alert asks for one; the cycle's result, else None."""
        trigger = self.policy.pick(self.alerts())
        if trigger is None:
            return None
        self.policy.started()
        try:
            result = self.controller.run_cycle(trigger)
        except leases.LeaseHeld as busy:  # another cycle answers this alert: not a failure of ours
            self.skipped.append(str(busy))
            self.controller.progress(f"not retraining for {trigger.reason}: {busy}")
            return None
        except Exception as exc:  # noqa: BLE001  # recorded as retrain.failed; keep watching
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return None
        self.results.append(result)
        return result

    def run(self, max_cycles: int | None = None, duration_s: float | None = None,
            stop: Callable[[], bool] | None = None,
            on_result: Callable[[CycleResult], None] | None = None) -> list[CycleResult]:
        """Poll until ``max_cycles`` more cycles ran (failed ones count), ``duration_s`` passed or
        ``stop()`` is true; ``on_result`` gets each finished cycle. The results of this call."""
        end = None if duration_s is None else time.monotonic() + duration_s
        first, done = len(self.results), len(self.results) + len(self.failures)
        while True:
            result = self.poll()
            if result is not None and on_result is not None:
                on_result(result)
            if max_cycles is not None and len(self.results) + len(self.failures) - done >= max_cycles:
                break
            if (end is not None and time.monotonic() >= end) or (stop is not None and stop()):
                break
            self.controller.sleep(self.controller.config.retrain.interval_s)
        return self.results[first:]

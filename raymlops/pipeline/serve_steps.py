"""deploy → smoke → monitor: the serving half of a run.

``deploy`` starts the route's monitor actor (reference: the training rows, on the monitor's
bins; checkpoints and alerts in the store) and the Ray Serve app with every ``serve`` setting
of the config (limits, batching, domain policy, autoscaling, hand-off); ``smoke`` sends the
holdout rows over HTTP and checks each answer; ``monitor`` waits until the monitor has seen
them and reports its drift summary. These always run: a deployment is live state. They are
skipped when the gate rejected the model, when ``serve.enabled`` is false, or when the model
was registered without the champion alias.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raymlops import audit
from raymlops.config import PipelineConfig
from raymlops.data.schema import column_array, feature_categories, feature_values, is_string_type
from raymlops.data.snapshot import snapshot_info
from raymlops.exceptions import NotFound, ServeError, ValidationError
from raymlops.features import category_code
from raymlops.hooks.dispatch import emit
from raymlops.monitor.names import monitor_name
from raymlops.pipeline.context import RunContext, client_rows
from raymlops.pipeline.failures import Failure, describe
from raymlops.pipeline.step import Step
from raymlops.ray_session import NAMESPACE
from raymlops.registry.registry import get_model
from raymlops.registry.spec import ModelSpec
from raymlops.serve.deploy import deploy, http_json, serve_running
from raymlops.serve.throughput import check_cluster_ingress
from raymlops.stats.agreement import regression_tolerance
from raymlops.store.home import Store

__all__ = ["DeployIn", "DeployOut", "DeployStep", "MonitorIn", "MonitorOut", "MonitorStep", "SmokeIn", "SmokeOut",
           "SmokeStep"]


@dataclass(frozen=True)
class DeployIn:
    snapshot_id: str
    features: list[str]
    model: Any  # raymlops.pipeline.model_steps.ModelOut


@dataclass(frozen=True)
class DeployOut:
    endpoint: str
    route: str
    metrics_url: str | None


@dataclass(frozen=True)
class SmokeIn:
    endpoint: str
    holdout: dict[str, Any]  # the holdout rows of the features, as stored (sent as a client sends them)
    features: list[str]


@dataclass(frozen=True)
class SmokeOut:
    sent: int
    answered_by: str | None


@dataclass(frozen=True)
class MonitorIn:
    route: str
    sent: int  # rows the smoke step sent (the monitor should see them all)
    features: list[str]


@dataclass(frozen=True)
class MonitorOut:
    drift: dict[str, Any]


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _monitor_reference(ctx: RunContext, snapshot_id: str, features: list[str]) -> Any:
    """The monitor's reference of a run: :func:`training_reference` of its snapshot."""
    return training_reference(ctx.rows(snapshot_id).table, features, ctx.config,
                              snapshot_info(ctx.store, snapshot_id).schema)


def training_reference(table: Any, features: list[str], config: Any, schema: Any) -> Any:
    """A monitor's reference: the training rows (``config``'s holdout split) of the features, as the
    replicas send them (numbers; a string feature as its category code, compared as a category
    and named by its values in reports), plus ``monitor.slice_columns``. ``schema``: the
    snapshot's, which lists each string feature's categories. The pipeline's deploy step and
    retraining's rebaseline both build their reference here."""
    # pandas: only when the step runs (`raymlops runs` imports this package)
    from raymlops.monitor.reference import build_reference

    # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
    from raymlops.train.prepare import holdout_of

    cfg = config.monitor
    missing = [c for c in cfg.slice_columns if c not in table.column_names]
    if missing:
        raise ServeError(f"monitor.slice_columns: the data has no column {missing[0]!r}"
                         f" (columns: {', '.join(table.column_names)})")
    train = ~holdout_of(table, config)
    columns: dict[str, Any] = {n: feature_values(table.column(n))[train] for n in features}
    for c in cfg.slice_columns:
        if c not in columns:
            columns[c] = column_array(table.column(c))[train]
    strings = [n for n in features if is_string_type(str(table.schema.field(n).type))]
    names = {n: {str(int(category_code(v))): v for v in domain}
             for n, domain in feature_categories(schema, strings).items()}
    return build_reference(columns, categorical=[*strings, *(c for c in cfg.categorical if c in columns
                                                            and c not in strings)],
                           slice_columns=list(cfg.slice_columns), n_bins=cfg.n_bins, fine_bins=cfg.fine_bins,
                           max_categories=cfg.max_categories, max_slices=cfg.max_slices, monitored=features,
                           category_names=names, discrete_max_values=cfg.discrete_max_values)


def rebaseline_route(store: Store, route: str, model_ref: str, reason: str | None = None) -> str:
    """Move the running monitor of ``route`` to the training rows of ``model_ref`` (a version the
    route now serves as its champion: after ``models promote`` / ``rollback``), built as the deploy
    step builds them from the version's recorded config and snapshot; one line saying what was done.
    Nothing when the route has no running monitor."""
    # Ray and pyarrow.parquet: only when a monitor moves (`raymlops runs` imports this package)
    from raymlops.data.snapshot_read import read_snapshot
    from raymlops.monitor.lifecycle import rebaseline_monitor
    from raymlops.registry.reproduce import recorded_config

    model = get_model(store, model_ref)
    try:
        config = recorded_config(model.lineage, model.id)
    except ValidationError:  # registered by hand, without a pipeline config: no rows to build from
        return f"the monitor of /{route} keeps its reference ({model.id} was registered without its config)"
    _, table = read_snapshot(store, model.snapshot_id)
    reference = training_reference(table, list(model.features), config,
                                   snapshot_info(store, model.snapshot_id).schema)
    try:
        rebaseline_monitor(route, reference, NAMESPACE, artifact_root=store.artifacts.root_uri,
                           calibration=model.lineage.get("calibration"))
    except NotFound:
        return f"/{route} has no running monitor"
    with store.metadata.transaction() as conn:
        audit.append(conn, "monitor.rebaselined", {"model": model.id, "snapshot": model.snapshot_id,
                                                   "deployment": route},
                     reason, {"reference": reference.digest, "features": list(model.features), "how": "in place"})
    # as retraining's rebaseline is: a receiver that resets its own baselines hears promotions and rollbacks too
    emit(store.home, "monitor.rebaselined", {"model": model.id, "snapshot": model.snapshot_id, "deployment": route,
                                             "reason": reason})
    return f"the monitor of /{route} now compares traffic with the training rows of {model.id}"


def monitor_settings(config: PipelineConfig, champion: Any) -> dict[str, Any]:
    """The monitor actor's settings for ``champion`` (a model version) served under ``config``
    (whose ``monitor.performance.task`` follows ``train.task``): a binary classifier's positive
    class (its second), its probability calibration (CBPE), and for a regression the tolerance
    within which a challenger's answers agree with it (:mod:`raymlops.stats.agreement`), unless
    the config sets them. The deploy step, ``raymlops deploy --config`` and retraining's new
    monitor all start from here."""
    settings = config.monitor.model_dump() | {"seed": config.seed}
    classes = (getattr(champion, "signature", None) or {}).get("classes") or []
    if len(classes) == 2 and "positive_label" not in config.monitor.performance.model_fields_set:
        # a binary classifier's positive class is its second, as roc_auc took it in training (labels
        # no/yes: "yes"; the configured default, 1, names no class of such a model); True is 1
        positive = float(classes[1]) if isinstance(classes[1], bool) else classes[1]
        if isinstance(positive, int | float | str):
            settings["performance"] = settings["performance"] | {"positive_label": positive}
    calibration = champion.lineage.get("calibration")
    if calibration is not None and settings["performance"].get("calibration") is None:
        settings["performance"] = settings["performance"] | {"calibration": calibration}  # CBPE
    tolerance = regression_tolerance(champion.metrics) if config.train.task == "regression" else None
    if tolerance is not None and settings["differential"].get("tolerance") is None:
        settings["differential"] = settings["differential"] | {"tolerance": tolerance}
    return settings


def _spec(ctx: RunContext, version: Any, example: dict[str, Any]) -> ModelSpec:
    """The version's :class:`~raymlops.registry.spec.ModelSpec` (as ``raymlops deploy`` and
    Serve configs build it), with a holdout row (as a client sends it) as example: a boolean
    feature as true / false, as the docs ask clients to send it (it read 0.0)."""
    flags = {i["name"] for i in (version.signature or {}).get("inputs", []) if i.get("type") == "boolean"}
    example = {k: bool(v) if k in flags and v is not None else v for k, v in example.items()}
    return ModelSpec.of(version, ctx.store.artifacts.root_uri).with_example(example)


class DeployStep(Step[DeployIn, DeployOut]):
    """Start the route's monitor actor and the Ray Serve app of the model version."""

    name = "deploy"
    needs_ray = True
    requires = ("register",)

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> DeployIn:
        return DeployIn(outputs["snapshot"].snapshot.id, list(outputs["schema"].features), outputs["register"])

    def skip(self, ctx: RunContext, inputs: DeployIn) -> str | None:
        if not inputs.model.passed:
            return "gate rejected the model"
        if not ctx.config.serve.enabled:
            moved = any(s.name == "register" and s.status == "ran" for s in ctx.result.steps)
            v = inputs.model.version
            if ctx.alias == "champion" and moved and v.version > 1:  # the registry moved on; a live route did not
                ctx.say(f"note: {v.name}@champion is {v.id} now; a live deployment of an earlier champion (if any) "
                        f"serves that one until `RAY_ADDRESS=<its cluster> raymlops models promote {v.id}` (the "
                        "alias is moved already: with the cluster's address, promote moves the routes to it)")
            return "serve.enabled is false"
        if ctx.alias != "champion":
            return f"{inputs.model.version.id} was registered without the champion alias"
        version = inputs.model.version
        try:  # a reused model the champion alias has left since (promoted or rolled back by hand)
            champion = get_model(ctx.store, f"{version.name}@champion").id
        except NotFound:
            champion = version.id
        if champion != version.id:
            return (f"{version.id} (reused) is no longer the champion: {version.name}@champion is {champion}, moved "
                    f"since; `raymlops deploy {version.name}@champion` serves it")
        return None

    def describe_inputs(self, ctx: RunContext, inputs: DeployIn) -> dict[str, Any]:
        return {"model": inputs.model.version.id, "route": ctx.config.route, "port": ctx.config.serve.port}

    def run(self, ctx: RunContext, inputs: DeployIn) -> DeployOut:
        # imports Ray and the monitor actor: only when the step runs
        from raymlops.monitor.lifecycle import start_monitor

        cfg, store, res, step = ctx.config, ctx.store, ctx.result, ctx.step
        route, version = cfg.route, inputs.model.version
        ctx.connect()
        if cfg.monitor.enabled:
            settings = monitor_settings(cfg, version)
            if settings.get("metrics_port") is None and not ctx.persistent:
                # a private Ray runs on this machine: the monitor's /metrics on a free loopback
                # port, so every run reports a metrics URL without monitor.metrics_port
                settings["metrics_port"] = _free_loopback_port()
            handle = start_monitor(route, _monitor_reference(ctx, inputs.snapshot_id, inputs.features), settings,
                                   NAMESPACE, detached=ctx.persistent, home=str(store.home),
                                   artifact_root=store.artifacts.root_uri)
            if settings.get("metrics_port") is not None:
                res.metrics_url = ctx.ray().get(handle.status.remote()).get("metrics_url")
        spec = _spec(ctx, version, client_rows(ctx.rows(inputs.snapshot_id).holdout_columns(inputs.features), 0, 1)[0])
        note = check_cluster_ingress(cfg.serve.high_throughput)  # once: how to get the faster ingress
        if note:
            ctx.say(note)
        ctx.serve_started = ctx.serve_started or not serve_running()
        endpoint = deploy(spec, route, cfg.serve, sample_rate=cfg.monitor.sample_rate, namespace=NAMESPACE,
                          monitor_actor=monitor_name(route) if cfg.monitor.enabled else None)
        res.endpoint = endpoint
        with store.metadata.transaction() as conn:
            audit.append(conn, "deployment.created", {"model": version.id, "deployment": route}, ctx.reason,
                         {"config_hash": cfg.config_hash(), "endpoint": endpoint})
        emit(store.home, "deployment.changed", {"action": "deployment.created", "deployment": route,
                                                "model": version.id, "reason": ctx.reason})
        step.outputs = {"deployment": route, "endpoint": endpoint, "model": version.id, "metrics": res.metrics_url}
        step.detail = endpoint + (f", monitor metrics {res.metrics_url}" if res.metrics_url else "")
        return DeployOut(endpoint, route, res.metrics_url)

    def explain(self, ctx: RunContext, exc: BaseException, failure: Failure) -> Failure:
        """The replica's traceback: from Serve's status, or (when deploy already removed the failed
        app) from what deploy collected before removing it."""
        texts = _serve_failure_texts(ctx.config.route) or list(getattr(exc, "replica_texts", []))
        if texts:
            replica = describe(exc, self.name, extra_texts=texts)
            if replica.remote:
                replica.context = "the Serve replica failed to start"
                return replica
        return failure


def _serve_failure_texts(route: str) -> list[str]:
    try:
        from ray import serve

        app = serve.status().applications.get(route)
    except Exception:  # Serve not running: nothing more to learn
        return []
    if app is None:
        return []
    texts = [d.message for d in app.deployments.values() if getattr(d, "message", "")]
    return texts + ([app.message] if app.message else [])


class SmokeStep(Step[SmokeIn, SmokeOut]):
    """Send the holdout rows to the endpoint over HTTP and check every answer."""

    name = "smoke"
    requires = ("deploy",)

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> SmokeIn:
        snap_id, features = outputs["snapshot"].snapshot.id, list(outputs["schema"].features)
        return SmokeIn(outputs["deploy"].endpoint, ctx.rows(snap_id).holdout_columns(features), features)

    def describe_inputs(self, ctx: RunContext, inputs: SmokeIn) -> dict[str, Any]:
        return {"endpoint": inputs.endpoint}

    def run(self, ctx: RunContext, inputs: SmokeIn) -> SmokeOut:
        endpoint, step = inputs.endpoint, ctx.step
        sent = sent_bytes = 0
        body: Any = {}
        batch = max(1, min(16, ctx.config.serve.max_rows_per_request))
        total = len(next(iter(inputs.holdout.values()))) if inputs.holdout else 0
        for start in range(0, total, batch):
            rows = client_rows(inputs.holdout, start, start + batch)
            payload = {"instances": rows}
            status, body = http_json("POST", f"{endpoint}/predict", payload)
            if status != 200 or len(body.get("predictions", [])) != len(rows):
                raise ServeError(f"smoke request to {endpoint}/predict answered {status}: {body}")
            sent += len(rows)
            sent_bytes += len(json.dumps(payload))
        step.rows, step.bytes = sent, sent_bytes
        step.outputs = {"answered_by": body.get("model_version")}
        step.detail = f"{sent} holdout rows answered by {body.get('model_version')}"
        return SmokeOut(sent, body.get("model_version"))


class MonitorStep(Step[MonitorIn, MonitorOut]):
    """Wait until the monitor actor has seen the smoke rows; report its drift summary."""

    name = "monitor"
    needs_ray = True
    requires = ("deploy", "smoke")

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> MonitorIn:
        return MonitorIn(outputs["deploy"].route, outputs["smoke"].sent, list(outputs["schema"].features))

    def skip(self, ctx: RunContext, inputs: MonitorIn) -> str | None:
        return None if ctx.config.monitor.enabled else "monitor.enabled is false"

    def describe_inputs(self, ctx: RunContext, inputs: MonitorIn) -> dict[str, Any]:
        return {"actor": monitor_name(inputs.route)}

    def run(self, ctx: RunContext, inputs: MonitorIn) -> MonitorOut:
        step, ray = ctx.step, ctx.ray()
        handle = ray.get_actor(monitor_name(inputs.route), namespace=NAMESPACE)
        # every smoke row reaches the monitor unless sampling drops some: wait for them
        want = inputs.sent if ctx.config.monitor.sample_rate >= 1.0 else 0
        deadline = time.monotonic() + 15
        seen: Any = ray.get(handle.rows.remote())
        while seen < want and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = ray.get(handle.rows.remote())
        drift: Any = ray.get(handle.summary.remote())
        ctx.result.drift = drift
        drifted = drift.get("drifted_features", [])
        step.rows = int(drift.get("rows", 0))
        step.outputs = {"rows": drift.get("rows"), "dataset_drift": bool(drift.get("dataset_drift")),
                        "drifted_features": drifted}
        step.detail = (
            f"{drift['rows']} rows seen, {len(drifted)} of {len(inputs.features)} features drifted,"
            f" dataset drift: {'yes' if drift.get('dataset_drift') else 'no'}"
        )
        return MonitorOut(drift)

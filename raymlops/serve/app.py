"""Ray Serve adapter: registered models behind ``/<route>/predict``, ``/feedback``, ``/health``,
``/metadata``, ``/metrics``.

One deployment, ``ModelServer``, per route. Every replica holds the models of the route's
traffic table (champion, and a challenger in canary or shadow mode) in process, so a request
makes one hop: HTTP ingress -> replica. The table lives in the route's control actor
(:mod:`raymlops.serve.control`); replicas long-poll it and swap tables atomically.

Per request: the body is read with a size limit, parsed and validated against the signature by
:mod:`raymlops.serve.request` (pure; JSON only, nothing is unpickled), routed
(:mod:`raymlops.serve.routing`), predicted in a dynamic batch (``@serve.batch``), answered with
the model version and request id (body and headers), counted (:mod:`raymlops.serve.metrics`)
and offered to the monitor (:mod:`raymlops.serve.handoff`) without waiting for it, with the role
it was served in and the table's epoch. ``/feedback`` takes ground-truth labels by request id
(:mod:`raymlops.serve.feedback`) and forwards them to the monitor shard that saw each request. The only
thing ever unpickled is the registry's own model artifact, after its sha256 matched.
"""

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import deque
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from starlette.exceptions import HTTPException

from raymlops.serve import oip
from raymlops.serve.auth import BearerAuth
from raymlops.serve.body import read_body
from raymlops.serve.control import ensure_control
from raymlops.serve.feedback import forward, merge_replies, parse_feedback_request
from raymlops.serve.handoff import MonitorHandoff, Served
from raymlops.serve.loaded import LoadedModel, ModelFailed, ServingState, binary_scores, checked_answer, predict_batch
from raymlops.serve.metrics import ReplicaStats
from raymlops.serve.request import (
    DomainPolicy,
    RequestError,
    check_content_type,
    parse_predict_request,
    request_id_of,
)
from raymlops.serve.settings import MAX_FEEDBACK_IDS, PUSH_INTERVAL_S, SHADOW_LOG_SIZE, ReplicaSettings
from raymlops.serve.throughput import ingress_here
from raymlops.stats.agreement import agreeing

logger = logging.getLogger("raymlops.serve")

app = FastAPI(title="raymlops model server", docs_url=None, redoc_url=None, openapi_url=None)
app.add_exception_handler(HTTPException, lambda request, exc: _json(oip.unknown_route_body(
    request.url.path, exc.status_code, str(exc.detail)), exc.status_code, dict(exc.headers or {})))

JSON_TYPE = "application/json"
# (no `from __future__ import annotations` here: FastAPI reads the route signatures at import)


def _json(body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), allow_nan=False), status_code=status,
                    headers=headers, media_type=JSON_TYPE)


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
@serve.ingress(app)
class ModelServer:
    """One replica: the verified models of the traffic table, batching, metrics, monitor tap."""

    async def __init__(self, settings: dict[str, Any], table: dict[str, Any]) -> None:  # type: ignore[misc]
        import ray

        self.settings = ReplicaSettings.from_dict(settings)
        s, c = self.settings, self.settings.serve  # c: the route's ServeConfig itself
        try:
            self.replica_id = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside a replica (local testing mode)
            self.replica_id = uuid.uuid4().hex[:8]
        self.policy = DomainPolicy(c.domain, c.domain_margin)
        self.auth = BearerAuth(s.token_required, c.token_env)  # /feedback (raymlops.serve.auth)
        if self.auth.required and not self.auth.configured:
            logger.error("route %s: /feedback needs a bearer token but %s is not set: every label is refused",
                         s.route, c.token_env)
        self.stats = ReplicaStats(s.route)
        self.rng = random.Random()
        self.control = ensure_control(s.route, s.namespace, shadow_log_size=SHADOW_LOG_SIZE,
                                      metrics_port=c.metrics_port, metrics_host=s.metrics_host)
        current = await self.control.attach.remote(self.replica_id, s.deploy_id, table)
        # an IntegrityError here fails the replica, so the deployment, with the reason
        self.state = await asyncio.to_thread(ServingState.build, current, None)
        self.seen_epoch = self.state.table.epoch
        await self.control.ack.remote(self.replica_id, self.seen_epoch, None)  # a change may be waiting on us
        batcher: Any = self._infer  # @serve.batch adds the setters
        batcher.set_max_batch_size(c.max_batch_size)
        batcher.set_batch_wait_timeout_s(c.batch_wait_timeout_s)
        self.monitor: Any = None  # shard 0
        self.monitors: list[Any] = []  # every shard, shard 0 first
        if s.monitor_actor:
            try:
                self.monitor = ray.get_actor(s.monitor_actor, namespace=s.namespace)
            except ValueError:
                logger.warning("monitor actor %s not found; serving without monitoring", s.monitor_actor)
            else:
                self.monitors = await self._shards(self.monitor, s.namespace)
        self.handoff = MonitorHandoff(self._send_to_monitor, max_rows=c.monitor_queue_rows,
                                      flush_interval_s=c.monitor_flush_interval_s, sample_rate=s.sample_rate,
                                      budget=c.monitor_budget, shards=max(len(self.monitors), 1))
        self._apply_sampling()
        self.shadow_pending: set[asyncio.Task[Any]] = set()
        self.shadow_records: deque[dict[str, Any]] = deque(maxlen=SHADOW_LOG_SIZE)
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self._start_tasks()

    @staticmethod
    async def _shards(first: Any, namespace: str) -> list[Any]:
        """Handles of every monitor shard (the first one names them all)."""
        import ray

        names = await first.shard_names.remote()
        return [first] + [ray.get_actor(n, namespace=namespace) for n in names[1:]]

    # -- background work ----------------------------------------------------------------------
    def _start_tasks(self) -> None:
        loops = {"poll": self._poll_table, "push": self._push_loop}
        if self.monitor is not None:
            loops["handoff"] = self.handoff.run
        for name, fn in loops.items():
            task = self.tasks.get(name)
            if task is None or task.done():
                self.tasks[name] = asyncio.get_running_loop().create_task(fn())

    async def _poll_table(self) -> None:
        """Long-poll the control actor; load a new table beside the old one, then swap."""
        while True:
            try:
                table = await self.control.wait_table.remote(self.seen_epoch, 30.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the control actor restarts: it comes back empty
                logger.warning("traffic table poll failed: %s", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self.control.attach.remote(self.replica_id, self.settings.deploy_id,
                                                     self.state.table.to_dict())
                continue
            if table is None:
                continue
            epoch = int(table["epoch"])
            self.seen_epoch = epoch
            try:
                state = await asyncio.to_thread(ServingState.build, table, self.state)
            except Exception as exc:  # keep serving the old table; tell the caller why
                logger.error("cannot serve traffic table epoch %d: %s", epoch, exc)
                await self.control.ack.remote(self.replica_id, epoch, f"{type(exc).__name__}: {exc}")
                continue
            self.state = state  # the swap: requests already running keep their models
            self._apply_sampling()
            await self.control.ack.remote(self.replica_id, epoch, None)

    def _apply_sampling(self) -> None:
        """The table's monitor sample rate, or the deployment's when the table sets none."""
        rate = self.state.table.sample_rate
        self.handoff.sample_rate = self.settings.sample_rate if rate is None else rate

    async def _push_loop(self) -> None:
        """Heartbeat: metric deltas and shadow records to the control actor, once a second."""
        while True:
            await asyncio.sleep(PUSH_INTERVAL_S)
            await self._push()

    async def _push(self) -> None:
        for outcome, rows in self.handoff.counts.drain().items():
            if outcome in ("sent", "dropped", "failed", "sampled_out"):
                self.stats.inc("raymlops_serve_monitor_rows_total", outcome, value=rows)
        deltas = self.stats.drain()
        shadow = list(self.shadow_records)
        self.shadow_records.clear()
        try:
            await self.control.push.remote(self.replica_id, self.state.table.epoch, deltas, shadow)
        except asyncio.CancelledError:
            self.stats.restore(deltas)
            raise
        except Exception as exc:
            self.stats.restore(deltas)
            logger.warning("metrics push failed: %s", exc)

    async def _send_to_monitor(self, payload: dict[str, Any]) -> None:
        X, preds = payload["X"], payload["predictions"]
        monitor = self.monitors[payload["shard"]]
        await monitor.ingest.remote(X, preds, version=payload["version"], latency_ms=payload["latency_ms"],
                                    status=payload["status"], request_ids=payload["request_ids"],
                                    request_sizes=payload["request_sizes"],
                                    scores=payload["scores"], score_class=payload["score_class"],
                                    role=payload["role"], epoch=payload["epoch"])

    async def check_health(self) -> None:
        self._start_tasks()  # a background loop that died is restarted, not silently lost

    async def __del__(self) -> None:
        for name in ("poll", "push"):
            task = self.tasks.get(name)
            if task is not None:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.handoff.close(), timeout=3.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._push(), timeout=2.0)
        with contextlib.suppress(Exception):
            await self.control.detach.remote(self.replica_id)

    # -- the model call -----------------------------------------------------------------------
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _infer(self, items: list[tuple[LoadedModel, np.ndarray]]) -> list[dict[str, Any] | Exception]:
        return predict_batch(items, self.stats.observe)

    async def _model_call(self, model: LoadedModel, X: np.ndarray) -> dict[str, Any]:
        result = await self._infer((model, X))
        if isinstance(result, Exception):  # this request alone: the batch's others were answered
            raise result
        return checked_answer(result)

    # -- HTTP ---------------------------------------------------------------------------------
    async def _read_body(self, request: Request) -> bytes:
        return await read_body(request, self.settings.serve.max_body_bytes)

    @app.post("/predict")
    async def predict(self, request: Request) -> Response:
        t0 = time.perf_counter()
        request_id, headers, bad_id = request_id_of(request.headers.get("x-request-id"))
        state = self.state  # one table for the whole request, whatever swaps meanwhile
        champion = state.champion
        headers["X-Model-Version"] = champion.model_id
        s = self.settings.serve
        try:
            if bad_id is not None:
                raise bad_id
            check_content_type(request.headers.get("content-type"))
            raw = await self._read_body(request)
            parsed = parse_predict_request(raw, champion.signature, s.max_rows_per_request, s.max_body_bytes,
                                           policy=self.policy, key_column=state.table.key)
        except RequestError as exc:
            self.stats.inc("raymlops_serve_rejected_requests_total", "predict", exc.error)
            self.stats.inc("raymlops_serve_requests_total", champion.model_id, str(exc.status))
            return _json(exc.body() | {"request_id": request_id, "model_version": champion.model_id},
                         exc.status, headers)
        try:
            target, result, latency = await self._predict_rows(state, parsed.X, parsed.key, request_id, t0)
        except ModelFailed as exc:  # the model failed on valid input: our fault (500), or the row's values (422)
            headers["X-Model-Version"] = exc.model_id
            return _json(exc.body() | {"request_id": request_id, "model_version": exc.model_id}, exc.status, headers)
        headers["X-Model-Version"] = target.model_id
        body: dict[str, Any] = {"model_version": target.model_id, "request_id": request_id,
                                "predictions": result["predictions"].tolist()}
        if result["probabilities"] is not None:
            body["probabilities"] = result["probabilities"].tolist()
        body["latency_ms"] = round(latency * 1000.0, 3)
        return _json(body, 200, headers)

    async def _predict_rows(self, state: ServingState, X_champion: np.ndarray, key: str | None, request_id: str,
                            t0: float, pinned: "LoadedModel | None" = None, endpoint: str = "predict",
                            ) -> "tuple[LoadedModel, dict[str, Any], float]":
        """What ``/predict`` and the v2 ``infer`` share once the rows are valid (in the champion's
        feature order): route (canary; ``pinned``: that model), batch-predict, count, hand off to the
        monitor, copy to a shadow challenger. ``(model, result, latency)``; :class:`ModelFailed`, whose
        status is the one the endpoint answers (a row the model cannot take: 422, 400 in the protocol)."""
        champion = state.champion
        target = pinned or champion
        if pinned is None and state.challenger is not None and state.table.canary_for(key, self.rng):
            target = state.challenger
        X = X_champion if target.order is None else X_champion[:, target.order]
        try:
            result = await self._model_call(target, X)
        except Exception as exc:
            failed = ModelFailed.explain(target, X, exc)
            if failed.status != 500 and endpoint == "infer":
                failed.status = 400
            self.stats.inc("raymlops_serve_requests_total", target.model_id, str(failed.status))
            if failed.status == 500:
                logger.exception("model %s failed", target.model_id)
            else:
                self.stats.inc("raymlops_serve_rejected_requests_total", endpoint, "model_refused")
            raise failed from exc
        preds = result["predictions"]
        latency = time.perf_counter() - t0
        self.stats.inc("raymlops_serve_requests_total", target.model_id, "200")
        self.stats.inc("raymlops_serve_rows_total", target.model_id, value=float(len(X)))
        self.stats.observe("raymlops_serve_request_duration_seconds", latency, target.model_id)
        if self.monitor is not None:  # in the champion's (the reference's) feature order
            role = "champion" if target is champion else "challenger"
            scores, score_class = binary_scores(target, result["probabilities"])
            self.handoff.offer(Served(X_champion, preds, target.model_id, latency * 1000.0, 200, request_id, role,
                                      state.table.epoch, scores, score_class))
        if state.challenger is not None and state.table.mode == "shadow" and target is champion:
            self._shadow(state.challenger, X_champion, request_id, champion, preds, state.table.epoch)
        return target, result, latency

    @app.post("/feedback")
    async def feedback(self, request: Request) -> Response:
        """Ground-truth labels by request id, to the monitor shard that saw each request."""
        request_id, headers, bad_id = request_id_of(request.headers.get("x-request-id"))
        s, c = self.settings, self.settings.serve
        try:
            self.auth.check(request.headers.get("authorization"))
        except RequestError as exc:  # before reading anything: a forged label changes nothing
            self.stats.inc("raymlops_serve_rejected_requests_total", "feedback", exc.error)
            return _json(exc.body() | {"request_id": request_id}, exc.status,
                         headers | {"WWW-Authenticate": 'Bearer realm="raymlops"'})
        try:
            if bad_id is not None:
                raise bad_id
            check_content_type(request.headers.get("content-type"))
            if not self.monitors:
                raise RequestError(409, "no_monitor", f"route {s.route!r} is served without a monitor, so there is "
                                   "nothing to score labels against; deploy it with monitoring on (monitor.enabled)")
            raw = await self._read_body(request)
            signature = self.state.champion.signature
            parsed = parse_feedback_request(raw, c.max_body_bytes, MAX_FEEDBACK_IDS,
                                            regression=signature.output == "regression",
                                            max_rows=c.max_rows_per_request, classes=signature.classes)
            detail = parsed.detail or request.query_params.get("detail", "").lower() in ("1", "true", "yes")
            replies = await forward(self.monitors, parsed, detail, s.route)  # 422: refused; 503: monitor down
        except RequestError as exc:
            self.stats.inc("raymlops_serve_rejected_requests_total", "feedback", exc.error)
            return _json(exc.body() | {"request_id": request_id}, exc.status, headers)
        body = merge_replies(replies, parsed if detail else None)
        for outcome in ("matched", "waiting", "expired", "unknown"):  # each label's outcome when posted
            if body[outcome]:
                self.stats.inc("raymlops_serve_feedback_labels_total", outcome, value=float(body[outcome]))
        return _json(body | {"request_id": request_id}, 200, headers)

    def _shadow(self, challenger: LoadedModel, X: np.ndarray, request_id: str, champion: LoadedModel,
                champion_preds: np.ndarray, epoch: int) -> None:
        if len(self.shadow_pending) >= self.settings.serve.shadow_max_pending:
            self.stats.inc("raymlops_serve_shadow_requests_total", challenger.model_id, "dropped")
            return
        Xc = X if challenger.order is None else X[:, challenger.order]
        task = asyncio.get_running_loop().create_task(
            self._run_shadow(challenger, Xc, request_id, champion, champion_preds, epoch))
        self.shadow_pending.add(task)
        task.add_done_callback(self.shadow_pending.discard)

    async def _run_shadow(self, challenger: LoadedModel, X: np.ndarray, request_id: str, champion: LoadedModel,
                          champion_preds: np.ndarray, epoch: int) -> None:
        t0 = time.perf_counter()
        try:
            result = await self._model_call(challenger, X)
        except Exception as exc:
            self.stats.inc("raymlops_serve_shadow_requests_total", challenger.model_id, "error")
            self.shadow_records.append({"ts": time.time(), "request_id": request_id, "champion": champion.model_id,
                                        "challenger": challenger.model_id, "error": f"{type(exc).__name__}: {exc}"})
            return
        preds = result["predictions"]
        agree = float(np.mean(agreeing(preds, champion_preds, champion.agreement_tolerance))) if len(preds) else 1.0
        self.stats.inc("raymlops_serve_shadow_requests_total", challenger.model_id,
                       "agree" if agree == 1.0 else "disagree")
        record: dict[str, Any] = {
            "ts": time.time(), "request_id": request_id, "champion": champion.model_id,
            "challenger": challenger.model_id, "rows": int(len(preds)), "agreement": agree,
            "champion_predictions": champion_preds[:100].tolist(), "challenger_predictions": preds[:100].tolist(),
            "latency_ms": round((time.perf_counter() - t0) * 1000.0, 3),
        }
        if result["probabilities"] is not None:
            record["challenger_probabilities"] = result["probabilities"][:100].tolist()
        self.shadow_records.append(record)
        if self.monitor is not None:  # paired with the champion's rows by request id (differential)
            Xm = X if challenger.order is None else X[:, np.argsort(challenger.order)]
            self.handoff.offer(Served(Xm, preds, challenger.model_id, record["latency_ms"], 200, request_id,
                                      "shadow", epoch))

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health(self) -> Response:
        state = self.state
        return _json({"status": "ok", "model_version": state.champion.model_id,
                      "traffic": state.table.summary()}, 200, {"X-Model-Version": state.champion.model_id})

    @app.api_route("/metadata", methods=["GET", "HEAD"])
    async def metadata(self) -> Response:
        s = self.settings.serve
        limits = {"max_rows_per_request": s.max_rows_per_request, "max_body_bytes": s.max_body_bytes,
                  "domain": s.domain, "domain_margin": s.domain_margin}
        body = self.state.metadata(limits) | {"ingress": ingress_here()}  # haproxy | serve-proxy
        return _json(body, 200, {"X-Model-Version": self.state.champion.model_id})

    @app.api_route("/metrics", methods=["GET", "HEAD"])
    async def metrics(self) -> Response:
        """Prometheus text of the whole route (every replica), from the control actor."""
        await self._push()
        return Response(await self.control.exposition.remote(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- Open Inference Protocol (KServe v2) REST: raymlops.serve.oip -------------------------
    @app.api_route("/v2/health/live", methods=["GET", "HEAD"])
    async def oip_live(self) -> Response:
        return _json({"live": True}, 200, {})

    @app.api_route("/v2/health/ready", methods=["GET", "HEAD"])
    async def oip_ready(self) -> Response:
        return _json({"ready": True}, 200, {"X-Model-Version": self.state.champion.model_id})

    @app.api_route("/v2", methods=["GET", "HEAD"])
    async def oip_server(self) -> Response:
        return _json(oip.server_metadata(), 200, {})

    @app.api_route("/v2/models/{name}", methods=["GET", "HEAD"])
    async def oip_model(self, name: str) -> Response:
        return self._oip_metadata(name, None)

    @app.api_route("/v2/models/{name}/versions/{version}", methods=["GET", "HEAD"])
    async def oip_model_version(self, name: str, version: str) -> Response:
        return self._oip_metadata(name, version)

    @app.api_route("/v2/models/{name}/ready", methods=["GET", "HEAD"])
    async def oip_model_ready(self, name: str) -> Response:
        return self._oip_ready(name, None)

    @app.api_route("/v2/models/{name}/versions/{version}/ready", methods=["GET", "HEAD"])
    async def oip_model_version_ready(self, name: str, version: str) -> Response:
        return self._oip_ready(name, version)

    @app.post("/v2/models/{name}/infer")
    async def oip_infer(self, name: str, request: Request) -> Response:
        return await self._oip_infer(name, None, request)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def oip_infer_version(self, name: str, version: str, request: Request) -> Response:
        return await self._oip_infer(name, version, request)

    def _oip_metadata(self, name: str, version: str | None) -> Response:
        try:
            body, model_id = oip.metadata_of(self.state, name, version, self.settings.route)
        except oip.OipError as exc:
            return _json(exc.body(), exc.status, {})
        return _json(body, 200, {"X-Model-Version": model_id})

    def _oip_ready(self, name: str, version: str | None) -> Response:
        try:
            oip.pick_model(self.state, name, version, self.settings.route)
        except oip.OipError as exc:
            return _json(exc.body() | {"name": name, "ready": False}, exc.status, {})
        return _json({"name": name, "ready": True}, 200, {})

    async def _oip_infer(self, name: str, version: str | None, request: Request) -> Response:
        t0 = time.perf_counter()
        request_id, headers, bad_id = request_id_of(request.headers.get("x-request-id"))
        state = self.state
        s = self.settings.serve
        headers["X-Model-Version"] = state.champion.model_id
        try:
            if bad_id is not None:
                raise bad_id
            pinned = oip.pick_model(state, name, version, self.settings.route)
            model = pinned or state.champion
            raw = await self._read_body(request)
            req = oip.parse_infer_request(raw, state.champion.signature, outputs=oip.outputs_of(model.has_proba),
                                          max_rows=s.max_rows_per_request, max_bytes=s.max_body_bytes,
                                          header_length=request.headers.get(oip.HEADER_LENGTH), policy=self.policy)
        except RequestError as exc:  # from reading the body
            return self._oip_rejected(oip.OipError.from_request_error(exc), state, headers)
        except oip.OipError as exc:
            return self._oip_rejected(exc, state, headers)
        if req.request_id is not None:  # the protocol's id names the request (for /feedback; under Serve the
            request_id = req.request_id  # proxy's X-Request-Id header stays)
            if "X-Request-Id" in headers:
                headers["X-Request-Id"] = request_id
        try:
            target, result, _ = await self._predict_rows(state, req.X, None, request_id, t0, pinned, "infer")
        except ModelFailed as exc:  # a row the model cannot take is a bad request: 400 in the protocol
            headers["X-Model-Version"] = exc.model_id
            return _json({"error": str(exc)}, exc.status, headers)
        headers["X-Model-Version"] = target.model_id
        outputs = {oip.PREDICT: result["predictions"]}
        if result["probabilities"] is not None:
            outputs[oip.PREDICT_PROBA] = result["probabilities"]
        body, extra = oip.infer_response(name, target.model_id, req.id if req.id is not None else request_id,
                                         outputs, req)
        return Response(body, status_code=200, headers=headers | extra, media_type=extra["Content-Type"])

    def _oip_rejected(self, exc: oip.OipError, state: ServingState, headers: dict[str, str]) -> Response:
        self.stats.inc("raymlops_serve_rejected_requests_total", "infer", exc.kind)
        self.stats.inc("raymlops_serve_requests_total", state.champion.model_id, str(exc.status))
        return _json(exc.body(), exc.status, headers)

    # -- for handles (tests, the CLI) ---------------------------------------------------------
    def serving(self) -> dict[str, Any]:
        return {"replica": self.replica_id, "epoch": self.state.table.epoch, "traffic": self.state.table.summary(),
                "monitor_queue_rows": self.handoff.queued_rows, "monitor_shards": len(self.monitors),
                "shadow_pending": len(self.shadow_pending)}

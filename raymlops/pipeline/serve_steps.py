"""deploy → smoke → monitor: the serving half of a run.

``deploy`` starts the route's monitor actor (reference: the training rows, on the monitor's
bins; checkpoints and alerts in the store) and the Ray Serve app with every ``serve`` setting
of the config (limits, batching, domain policy, autoscaling, hand-off); ``smoke`` sends the
holdout rows over HTTP and checks each answer; ``monitor`` waits until the monitor has seen
them and reports its drift summary. These always run: a deployment is live state.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from raymlops import audit
from raymlops.exceptions import ServeError
from raymlops.pipeline.base import PipelineBase

__all__ = ["ServeSteps"]


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeSteps(PipelineBase):
    """The serving steps of :class:`raymlops.pipeline.runner.Pipeline`."""

    def _monitor_reference(self, snap: Any, features: list[str]) -> Any:
        """The monitor's reference: the training rows of the features, plus the slice columns."""
        from raymlops.monitor.reference import build_reference
        from raymlops.train.prepare import holdout_of

        cfg = self.config.monitor
        Xtr = self._split(snap.id, features)[0]
        columns: dict[str, Any] = {n: Xtr[:, j] for j, n in enumerate(features)}
        table = self._read_table(snap.id)
        extra = [c for c in cfg.slice_columns if c not in columns]
        missing = [c for c in extra if c not in table.column_names]
        if missing:
            raise ServeError(f"monitor.slice_columns: the data has no column {missing[0]!r}"
                             f" (columns: {', '.join(table.column_names)})")
        if extra:
            train = ~holdout_of(table, self.config)
            for c in extra:
                columns[c] = table.column(c).to_numpy(zero_copy_only=False)[train]
        return build_reference(columns, categorical=[c for c in cfg.categorical if c in columns],
                               slice_columns=list(cfg.slice_columns), n_bins=cfg.n_bins, fine_bins=cfg.fine_bins,
                               max_categories=cfg.max_categories, max_slices=cfg.max_slices, monitored=features)

    def _spec(self, version: Any, features: list[str], example: np.ndarray, monitored: bool) -> dict[str, Any]:
        """The server spec: :func:`raymlops.serve.builder.model_spec` of the version (one definition
        for ``raymlops run``, ``raymlops deploy`` and Serve configs), with a holdout row as example."""
        from raymlops.serve.builder import model_spec

        cfg = self.config
        spec = model_spec({
            "model": version.id, "home": str(self.store.home), "artifact_root": self.store.artifacts.root_uri,
            "route": cfg.route, "monitor": monitored, "max_rows_per_request": cfg.serve.max_rows_per_request,
            "max_batch_size": cfg.serve.max_batch_size, "batch_wait_timeout_s": cfg.serve.batch_wait_timeout_s,
        })
        return spec | {"input_example": {n: float(example[j]) for j, n in enumerate(features)}}

    def _serve_steps(self, snap: Any, features: list[str], version: Any) -> None:
        from raymlops.monitor.lifecycle import monitor_name, start_monitor
        from raymlops.ray_session import NAMESPACE
        from raymlops.serve.deploy import deploy

        cfg, store, res = self.config, self.store, self.result
        route = cfg.route
        with self._step("deploy", inputs={"model": version.id, "route": route, "port": cfg.serve.port}) as step:
            Xho = self._split(snap.id, features)[2]
            self._connect()
            if cfg.monitor.enabled:
                settings = cfg.monitor.model_dump() | {"seed": cfg.seed}
                calibration = (version.record.get("lineage") or {}).get("calibration")
                if calibration is not None and settings["performance"].get("calibration") is None:
                    settings["performance"] = settings["performance"] | {"calibration": calibration}  # CBPE
                if settings.get("metrics_port") is None and not self._persistent:
                    # a private Ray runs on this machine: the monitor's /metrics on a free loopback
                    # port, so every run reports a metrics URL without monitor.metrics_port
                    settings["metrics_port"] = _free_loopback_port()
                handle = start_monitor(route, self._monitor_reference(snap, features), settings, NAMESPACE,
                                       detached=self._persistent, home=str(store.home),
                                       artifact_root=store.artifacts.root_uri)
                if settings.get("metrics_port") is not None:
                    import ray

                    res.metrics_url = ray.get(handle.status.remote()).get("metrics_url")
            spec = self._spec(version, features, Xho[0], cfg.monitor.enabled)
            from raymlops.serve.throughput import check_cluster_ingress

            note = check_cluster_ingress(cfg.serve.high_throughput)  # once: how to get the faster ingress
            if note:
                self._say(note)
            endpoint = deploy(spec, route, cfg.serve.host, cfg.serve.port, cfg.serve.num_replicas,
                              serve_config=cfg.serve, sample_rate=cfg.monitor.sample_rate)
            res.endpoint = endpoint
            with store.metadata.transaction() as conn:
                audit.append(conn, "deployment.created", {"model": version.id, "deployment": route}, self.reason,
                             {"config_hash": cfg.config_hash(), "endpoint": endpoint})
            step.outputs = {"deployment": route, "endpoint": endpoint, "model": version.id,
                            "metrics": res.metrics_url}
            step.detail = endpoint + (f", monitor metrics {res.metrics_url}" if res.metrics_url else "")

        sent = self._smoke(endpoint, Xho, features)
        if not cfg.monitor.enabled:
            self._skip("monitor", "monitor.enabled is false")
            return
        with self._step("monitor", inputs={"actor": monitor_name(route)}) as step:
            import ray

            handle = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
            # every smoke row reaches the monitor unless sampling drops some: wait for them
            want = sent if cfg.monitor.sample_rate >= 1.0 else 0
            deadline = time.monotonic() + 15
            seen: Any = ray.get(handle.rows.remote())
            while seen < want and time.monotonic() < deadline:
                time.sleep(0.1)
                seen = ray.get(handle.rows.remote())
            drift: Any = ray.get(handle.summary.remote())
            res.drift = drift
            drifted = drift.get("drifted_features", [])
            step.rows = int(drift.get("rows", 0))
            step.outputs = {"rows": drift.get("rows"), "dataset_drift": bool(drift.get("dataset_drift")),
                            "drifted_features": drifted}
            step.detail = (
                f"{drift['rows']} rows seen, {len(drifted)} of {len(features)} features drifted,"
                f" dataset drift: {'yes' if drift.get('dataset_drift') else 'no'}"
            )

    def _smoke(self, endpoint: str, Xho: np.ndarray, features: list[str]) -> int:
        from raymlops.serve.deploy import http_json

        with self._step("smoke", inputs={"endpoint": endpoint}) as step:
            sent = sent_bytes = 0
            body: Any = {}
            batch = max(1, min(16, self.config.serve.max_rows_per_request))
            for start in range(0, len(Xho), batch):
                rows = [{n: float(v) for n, v in zip(features, r, strict=True)} for r in Xho[start:start + batch]]
                payload = {"instances": rows}
                status, body = http_json("POST", f"{endpoint}/predict", payload)
                if status != 200 or len(body.get("predictions", [])) != len(rows):
                    raise ServeError(f"smoke request to {endpoint}/predict answered {status}: {body}")
                sent += len(rows)
                sent_bytes += len(json.dumps(payload))
            step.rows, step.bytes = sent, sent_bytes
            step.outputs = {"answered_by": body.get("model_version")}
            step.detail = f"{sent} holdout rows answered by {body.get('model_version')}"
        return sent

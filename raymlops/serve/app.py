"""Ray Serve adapter: a registered model behind ``/<name>/predict``, ``/health``, ``/metadata``.

Requests are parsed and validated by :mod:`raymlops.serve.request` before the model sees them,
batched across requests with ``@serve.batch``, and every batch's rows and predictions are
handed (fire and forget) to the monitor actor.
"""


import time
import uuid
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from raymlops.serve.request import RequestError, Signature, parse_request

app = FastAPI(title="raymlops model server", docs_url=None, redoc_url=None)


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
@serve.ingress(app)
class ModelServer:
    """One replica: the verified model artifact, its signature, and a tap to the monitor."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import io

        import joblib

        from raymlops.store.artifacts import ArtifactStore

        arts = ArtifactStore(spec["artifact_root"])
        arts.verify(spec["artifact_key"], spec["artifact_sha256"])  # IntegrityError fails the deploy
        self.model = joblib.load(io.BytesIO(arts.read_bytes(spec["artifact_key"])))
        self.spec = spec
        self.signature = Signature.from_dict(spec["signature"])
        self.version = spec["model_id"]
        self.max_rows = int(spec["max_rows_per_request"])
        self.max_bytes = int(spec.get("max_body_bytes", 8 * 1024 * 1024))
        self.monitor = None
        if spec.get("monitor_actor"):
            import ray

            self.monitor = ray.get_actor(spec["monitor_actor"], namespace=spec["namespace"])
        batcher: Any = self._predict_batch  # @serve.batch adds the setters
        batcher.set_max_batch_size(int(spec["max_batch_size"]))
        batcher.set_batch_wait_timeout_s(float(spec["batch_wait_timeout_s"]))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _predict_batch(self, arrays: list[np.ndarray]) -> list[dict[str, Any]]:
        X = np.concatenate(arrays)
        preds = self.model.predict(X)
        proba = self.model.predict_proba(X) if hasattr(self.model, "predict_proba") else None
        if self.monitor is not None:
            self.monitor.ingest.remote(X, np.asarray(preds))
        out, i = [], 0
        for a in arrays:
            n = len(a)
            item: dict[str, Any] = {"predictions": preds[i : i + n].tolist()}
            if proba is not None:
                item["probabilities"] = proba[i : i + n].tolist()
            out.append(item)
            i += n
        return out

    @app.post("/predict")
    async def predict(self, request: Request) -> JSONResponse:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        headers = {"X-Request-Id": request_id, "X-Model-Version": self.version}
        t0 = time.perf_counter()
        try:
            X = parse_request(await request.body(), self.signature, self.max_rows, self.max_bytes)
        except RequestError as exc:
            return JSONResponse(exc.body() | {"request_id": request_id}, status_code=exc.status, headers=headers)
        result = await self._predict_batch(X)
        body = {"model_version": self.version, "request_id": request_id, **result}
        body["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return JSONResponse(body, headers=headers)

    @app.get("/health")
    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "model_version": self.version}

    @app.get("/metadata")
    async def metadata(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "signature": self.spec["signature"],
            "lineage": self.spec["lineage_summary"],
            "metrics": self.spec.get("metrics", {}),
            "input_example": {"instances": [self.spec["input_example"]]},
        }

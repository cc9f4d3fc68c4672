"""The KubeRay manifests under configs/kuberay/: the fields KubeRay requires, and a
serveConfigV2 whose import_path builds the application from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "configs" / "kuberay"


def _load(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]
    assert len(docs) == 1, f"{name}: expected one manifest"
    doc: dict[str, Any] = docs[0]
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["metadata"]["name"]
    return doc


def _check_cluster_spec(spec: dict[str, Any]) -> None:
    assert str(spec["rayVersion"]).startswith("2.")
    assert spec["authOptions"]["mode"] == "token"  # Ray token auth stays on
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    containers = head["template"]["spec"]["containers"]
    assert containers and all(c["image"] and c["name"] for c in containers)
    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        assert g["groupName"]
        assert isinstance(g["rayStartParams"], dict)
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        assert all(c["image"] and c["name"] for c in g["template"]["spec"]["containers"])
    # every pod gets the artifact root; none carries a credential inline
    for c in containers + [c for g in groups for c in g["template"]["spec"]["containers"]]:
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert env.get("RAYMLOPS_ARTIFACT_ROOT", "").startswith("s3://")
        assert not any("SECRET" in name or "TOKEN" in name for name in env)


def test_rayjob_runs_the_quickstart() -> None:
    job = _load("rayjob-quickstart.yaml")
    assert job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].split()[:3] == ["raymlops", "run", "configs/quickstart.yaml"]
    assert (ROOT / "configs" / "quickstart.yaml").is_file()
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["RAYMLOPS_HOME"].startswith("/")
    _check_cluster_spec(spec["rayClusterSpec"])


def test_rayservice_serves_the_champion_through_the_builder() -> None:
    svc = _load("rayservice-quickstart.yaml")
    assert svc["kind"] == "RayService"
    serve_config = yaml.safe_load(svc["spec"]["serveConfigV2"])
    (app,) = serve_config["applications"]
    assert app["name"] and app["route_prefix"] == "/breast-cancer"
    module, attr = app["import_path"].split(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), attr))
    assert app["args"]["model"] == "breast-cancer@champion"
    _check_cluster_spec(svc["spec"]["rayClusterConfig"])


def test_pvc_and_dockerfile_the_manifests_use() -> None:
    pvc = yaml.safe_load((KUBERAY / "pvc.yaml").read_text())
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for name in ("rayjob-quickstart.yaml", "rayservice-quickstart.yaml")
        for v in (_load(name)["spec"].get("rayClusterSpec") or _load(name)["spec"]["rayClusterConfig"])
        ["headGroupSpec"]["template"]["spec"]["volumes"]
    }
    assert claims == {pvc["metadata"]["name"]}
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    assert "FROM rayproject/ray:2.60.0" in dockerfile and "pip install" in dockerfile


def test_builder_makes_the_app_from_the_registry(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from raymlops.exceptions import ConfigError
    from raymlops.registry import register_model
    from raymlops.serve.builder import app_builder, model_spec
    from raymlops.store.home import Store

    store = Store.open(tmp_path)
    model = LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 0.0]] * 5), [0, 1] * 5)
    signature = {"inputs": [{"name": "a", "type": "double", "min": 0.0, "max": 1.0},
                            {"name": "b", "type": "double", "min": 0.0, "max": 4.0}],
                 "output": "classification", "target": "y", "classes": [0, 1]}
    kwargs: dict[str, Any] = {"snapshot_id": "s" * 64, "signature": signature, "metrics": {"roc_auc": 1.0},
                              "lineage": {"config_hash": "c", "snapshot_id": "s" * 64, "seed": 1, "run_id": "r"}}
    register_model(store, "toy", model, gate={"status": "passed", "reasons": []}, **kwargs)
    register_model(store, "toy", model, gate={"status": "rejected", "reasons": ["too good"]}, **kwargs)

    spec = model_spec({"model": "toy@champion", "home": str(tmp_path)})
    assert spec.model_id == "toy:v1" and spec.name == "toy" and spec.features == ["a", "b"]
    assert spec.input_example == {"a": 0.5, "b": 2.0}
    assert spec.lineage_summary["run_id"] == "r" and spec.metrics == {"roc_auc": 1.0}
    store.artifacts.verify(spec.artifact_key, spec.artifact_sha256)
    assert type(app_builder({"model": "toy:v1", "home": str(tmp_path)})).__name__ == "Application"
    assert type(app_builder({"model": "toy:v1", "home": str(tmp_path), "max_batch_size": "8"})).__name__ \
        == "Application"  # YAML or CLI text: coerced
    with pytest.raises(ConfigError, match="serve args: max_batch_size: .*greater than or equal to 1"):
        app_builder({"model": "toy:v1", "home": str(tmp_path), "max_batch_size": 0})
    with pytest.raises(ConfigError, match="rejected"):
        model_spec({"model": "toy:v2", "home": str(tmp_path)})
    with pytest.raises(ConfigError, match="'model' is required"):
        model_spec({"home": str(tmp_path)})


def test_the_image_starts_every_node_with_the_fast_loopback_safe_ingress(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The Dockerfile's ENV is exactly what `python -m raymlops.serve.throughput --env` prints for
    its folder, the RUN line writes the wrapper they name, and both manifests use that image."""
    import os
    import re
    import shutil

    from raymlops.serve import throughput

    text = (KUBERAY / "Dockerfile").read_text()
    run = re.search(r"^RUN (python -m raymlops\.serve\.throughput --env --base-dir (\S+)) ", text, re.M)
    assert run is not None
    block = text[text.index("ENV RAY_SERVE_ENABLE_HA_PROXY"):]
    image_env = dict(re.findall(r"(RAY_SERVE_\w+)=(\S+)", block))
    for name in list(os.environ):
        if name.startswith("RAY_SERVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RAYMLOPS_HAPROXY_BINARY", "/bin/true")
    base = run.group(2)
    folder = "/tmp/rmk-" + os.urandom(3).hex()
    try:
        throughput.main(["--env", "--base-dir", folder])
    finally:
        for name in list(os.environ):
            if name.startswith("RAY_SERVE_"):
                os.environ.pop(name)
        shutil.rmtree(folder, ignore_errors=True)
    printed = {k: v.strip("'").replace(folder, base)
               for k, v in (ln.removeprefix("export ").split("=", 1) for ln in capsys.readouterr().out.splitlines())}
    assert image_env == printed
    images = {c["image"] for name in ("rayjob-quickstart.yaml", "rayservice-quickstart.yaml")
              for spec in [_load(name)["spec"].get("rayClusterSpec") or _load(name)["spec"]["rayClusterConfig"]]
              for c in spec["headGroupSpec"]["template"]["spec"]["containers"]
              + [c for g in spec["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]}
    assert images == {"raymlops:0.1.0"} and "-t raymlops:0.1.0" in text

"""String (categorical) and boolean features and missing numbers, end to end on the session's Ray with real
HTTP: a churn-like table (two string features, one with nulls; a number with nulls) is trained,
gated, registered, served and monitored; requests carry the strings; ``reproduce`` gives the same
model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raymlops import Store, parse_config, run_pipeline, stop_serving
from raymlops.features import category_code
from raymlops.registry import get_model, load_model
from raymlops.registry.reproduce import reproduce
from raymlops.serve.deploy import http_json

from .conftest import TRIALS_AT_ONCE, serve_port

pytestmark = pytest.mark.integration
tritonclient_http = pytest.importorskip("tritonclient.http")
route_name = "churn"


def churn(n: int = 1200, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]),
        "region": pd.Series(rng.choice(["north", "south", "east", "west"], n), dtype=object),
        "fee": np.round(rng.gamma(3, 10, n), 2),
        "calls": rng.poisson(1.5, n),  # integer-valued
        "member": rng.random(n) < 0.3,  # a boolean
    })
    df.loc[rng.random(n) < 0.05, "region"] = None
    df.loc[rng.random(n) < 0.05, "fee"] = np.nan
    logit = -1.5 + 2.5 * (df.plan == "basic") + 0.3 * df.calls - 1.0 * (df.region == "south")
    df["churn"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return df


def test_string_features_train_serve_monitor_and_reproduce(ray_session: None, tmp_path: Path) -> None:
    source = tmp_path / "churn.parquet"
    churn().to_parquet(source, index=False)
    cfg = parse_config({
        "name": "churn", "seed": 5,
        "data": {"source": str(source), "target": "churn"},
        "train": {"metric": "roc_auc", "max_failures": 0, "max_concurrent_trials": TRIALS_AT_ONCE, "candidates": [
            {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
             "params": {"learning_rate": [0.1, 0.2], "max_iter": 30}},
            # takes no missing values (fee has some): its trial fails, is said aloud, and the others win
            {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 200}},
            # takes labels 0..k-1 only: trained on indices of 'no' / 'yes' (a weak one, so it does not win)
            {"estimator": "xgboost.XGBClassifier", "params": {"n_estimators": 1, "max_depth": 1}}]},
        "gate": {"rules": ["roc_auc >= 0.7"]},
        "serve": {"port": serve_port()},
    }, "churn.yaml")
    home = tmp_path / "home"
    try:
        said: list[str] = []
        result = run_pipeline(cfg, home=str(home), keep_serving=True, progress=said.append)
        out = result.to_dict()
        assert out["status"] == "succeeded" and out["gate"] == "passed", out
        train = next(s for s in result.steps if s.name == "train")
        assert train.outputs["failed"] == 1 and "NaN" in train.outputs["errors"]["LogisticRegression"], train.outputs
        assert train.outputs["retried"] == 0, train.outputs  # its one failure is no retry (it said 1)
        assert any(line.startswith("warning: train: the LogisticRegression trials failed: ValueError") for line in said)
        assert "1 failed" in train.detail and "HistGradientBoostingClassifier" in train.detail
        # the smoke step sent every holdout row as a client would: strings, and null for a missing value
        smoke = next(s for s in result.steps if s.name == "smoke")
        assert smoke.status == "ran" and smoke.rows == out["model_metrics"]["rows"] > 0

        store = Store.open(home)
        version = get_model(store, out["model"])
        xgb = [t for t in version.tune["trials"] if t["config"]["estimator"] == "xgboost.XGBClassifier"]
        assert len(xgb) == 1 and xgb[0]["error"] is None and 0.5 < xgb[0]["metric"] <= 1.0, xgb
        inputs = {i["name"]: i for i in version.signature["inputs"]}
        assert inputs["plan"]["type"] == "string" and inputs["plan"]["categories"] == ["basic", "plus", "pro"]
        assert inputs["region"]["type"] == "string" and inputs["region"]["nullable"] is True
        assert inputs["fee"]["type"] == "double" and inputs["fee"]["nullable"] is True
        assert inputs["calls"]["nullable"] is False and inputs["member"]["type"] == "boolean"

        endpoint = out["endpoint"]
        status, meta = http_json("GET", f"{endpoint}/metadata")
        example = meta["input_example"]["instances"][0]
        assert status == 200 and isinstance(example["plan"], str)
        assert isinstance(example["member"], bool)  # as clients are asked to send it (it read 0.0)
        rows = [{"plan": "basic", "region": "south", "fee": 20.0, "calls": 3.0, "member": True},
                {"plan": "pro", "region": None, "fee": None, "calls": 0.0, "member": False},
                {"plan": "enterprise", "region": "north", "fee": 30.0, "calls": 1.0, "member": 0}]  # plan never seen
        status, body = http_json("POST", f"{endpoint}/predict", {"instances": rows})
        assert status == 200, body
        # the served answer is the registered model's on the rows' codes
        model = load_model(store, version)
        X = np.array([[category_code(r["plan"]), np.nan if r["region"] is None else category_code(r["region"]),
                       np.nan if r["fee"] is None else r["fee"], r["calls"], float(r["member"])] for r in rows])
        assert body["predictions"] == model.predict(X).tolist()
        assert np.allclose(body["probabilities"], model.predict_proba(X))
        assert body["probabilities"][0][1] > body["probabilities"][1][1]  # basic + south churns more than pro

        # a number for a string feature, or null where the training data had none: 422 naming the field
        for bad, field, expected in (({"plan": 1.0}, "plan", "string"), ({"plan": None}, "plan", "string"),
                                     ({"calls": "3"}, "calls", "number")):
            status, err = http_json("POST", f"{endpoint}/predict", {"instances": [rows[0] | bad]})
            assert status == 422 and err["details"][0]["field"] == field, err
            assert err["details"][0]["expected"] == expected

        # labels: the model's classes are the labels it takes; another is a 422 naming it
        status, fb = http_json("POST", f"{endpoint}/feedback", {"request_ids": [body["request_id"]],
                                                                "labels": [["yes", "no", "no"]]})
        assert status == 200 and fb["matched"] + fb["waiting"] == 3, fb
        status, fb = http_json("POST", f"{endpoint}/feedback", {"request_ids": [body["request_id"] + "/0"],
                                                                "labels": ["maybe"]})
        assert status == 422 and "'maybe' is not a class of the model ('no', 'yes')" in fb["message"], fb

        # the Open Inference Protocol, with NVIDIA's own client: a BYTES tensor per string feature
        names = [i["name"] for i in version.signature["inputs"]]
        client = tritonclient_http.InferenceServerClient(url=endpoint.removeprefix("http://"))
        # (tritonclient's JSON form of a BYTES tensor writes None as the string "None": rows without one)
        sent = [rows[0], rows[2]]
        tensors = []
        for k, name in enumerate(names):
            column = [r[name] for r in sent]
            if inputs[name]["type"] == "string":
                t = tritonclient_http.InferInput(name, [len(sent)], "BYTES")
                t.set_data_from_numpy(np.array([c.encode() for c in column], dtype=object), binary_data=k == 0)
            else:
                t = tritonclient_http.InferInput(name, [len(sent)], "FP64")
                t.set_data_from_numpy(np.array(column, dtype=np.float64), binary_data=True)
            tensors.append(t)
        answer = client.infer(route_name, tensors)
        assert np.allclose(answer.as_numpy("predict_proba"), [body["probabilities"][0], body["probabilities"][2]])
        meta_v2 = client.get_model_metadata(route_name)
        assert [(i["name"], i["datatype"]) for i in meta_v2["inputs"]] == [
            ("plan", "BYTES"), ("region", "BYTES"), ("fee", "FP64"), ("calls", "FP64"), ("member", "BOOL")]

        # the monitor compares the string features as categories
        kinds = {f["column"]: (f["kind"], f["test"]) for f in out["drift"]["features"]}
        assert kinds["plan"] == ("categorical", "chi2") and kinds["region"] == ("categorical", "chi2")
        assert kinds["fee"][0] == "numeric"
    finally:
        stop_serving(cfg)

    again = reproduce(Store.open(home), out["model"])
    assert again.identical and again.artifact_hash_equal, again.differences

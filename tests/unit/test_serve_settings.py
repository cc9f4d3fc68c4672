"""What a replica is told besides its models (raymlops.serve.settings): the route's ServeConfig
itself plus the run-time values, as plain data (pure: no Ray)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError as PydanticValidationError

from raymlops.config import AutoscalingConfig, ServeConfig
from raymlops.serve.settings import ReplicaSettings, deployment_options


def test_the_replica_gets_every_serve_field_and_the_same_config_back() -> None:
    cfg = ServeConfig(host="0.0.0.0", port=8123, max_batch_size=8, max_ongoing_requests=16, domain="training_range",
                      domain_margin=0.1, monitor_budget=0.9, metrics_port=9100, token_env="MY_TOKEN",
                      autoscaling=AutoscalingConfig(min_replicas=0, max_replicas=3))
    s = ReplicaSettings.of(cfg, "churn", namespace="ns", monitor_actor="monitor-churn", sample_rate=0.5,
                           deploy_id="d1")
    wire = json.loads(json.dumps(s.to_dict()))  # data only: it survives JSON as it is
    assert set(wire["serve"]) == set(ServeConfig.model_fields)  # no field is left behind
    back = ReplicaSettings.from_dict(wire)
    assert back == s and back.serve == cfg and back.serve.autoscaling == cfg.autoscaling
    assert (back.route, back.namespace, back.monitor_actor, back.sample_rate, back.deploy_id) == (
        "churn", "ns", "monitor-churn", 0.5, "d1")
    assert back.token_required and back.metrics_host == "127.0.0.1"  # a wildcard host: metrics on loopback
    assert ReplicaSettings.of(ServeConfig(host="10.0.0.5"), "r").metrics_host == "10.0.0.5"
    with pytest.raises(PydanticValidationError, match="max_batch_size"):  # checked again where it lands
        ReplicaSettings.from_dict(wire | {"serve": wire["serve"] | {"max_batch_size": 0}})


def test_deployment_options_follow_the_config() -> None:
    opts = deployment_options(ServeConfig(num_replicas=3, max_batch_size=64, max_ongoing_requests=64,
                                          access_log=False))
    assert opts["num_replicas"] == 3 and opts["max_ongoing_requests"] == 128  # room for two batches
    assert opts["logging_config"] == {"enable_access_log": False} and "autoscaling_config" not in opts
    auto = deployment_options(ServeConfig(autoscaling=AutoscalingConfig(min_replicas=0, max_replicas=2,
                                                                        downscale_to_zero_delay_s=5.0)))
    assert "num_replicas" not in auto and "logging_config" not in auto
    assert auto["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 2.0,
                                          "upscale_delay_s": 0.0, "downscale_delay_s": 30.0,
                                          "downscale_to_zero_delay_s": 5.0, "metrics_interval_s": 1.0,
                                          "look_back_period_s": 2.0}  # unset initial_replicas: Serve's own

"""``retrain:`` config, configs/demo.yaml, the demo data, and the retrain/demo CLI's bad input (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from raymlops.cli import main
from raymlops.config import PipelineConfig, load_config, parse_config
from raymlops.exceptions import ConfigError
from raymlops.loop import demo_data
from raymlops.loop.controller import retrain_config_for
from raymlops.loop.demo import demo_config

ROOT = Path(__file__).resolve().parents[2]


def base(**retrain: Any) -> dict[str, Any]:
    return {"name": "m", "data": {"source": "data.csv", "target": "y"},
            "train": {"candidates": [{"estimator": "sklearn.linear_model.LogisticRegression"}]},
            "retrain": retrain}


def test_retrain_defaults_are_off_and_safe() -> None:
    cfg = parse_config(base())
    r = cfg.retrain
    assert r.enabled is False and r.source is None and r.triggers == ["dataset_drift", "performance"]
    assert r.promote.beat_champion and r.promote.max_errors == 0
    assert retrain_config_for(cfg) is cfg  # no retrain.source: the same data source


def test_retrain_source_replaces_the_data_source_only_for_retraining() -> None:
    cfg = parse_config(base(source="s3://bucket/fresh.parquet"))
    fresh = retrain_config_for(cfg)
    assert fresh.data.source == "s3://bucket/fresh.parquet" and cfg.data.source == "data.csv"
    assert fresh.data.target == cfg.data.target and fresh.name == cfg.name


@pytest.mark.parametrize(("retrain", "where", "says"), [
    ({"triggers": ["drfit"]}, "retrain.triggers", "'drfit'"),
    ({"triggers": []}, "retrain.triggers", "at least 1"),
    ({"cooldown_s": -1}, "retrain.cooldown_s", "greater than or equal to 0"),
    ({"source": "  "}, "retrain.source", "non-empty"),
    ({"source": "callable:nomodule"}, "retrain.source", "callable:module:function"),
    ({"shadow_rows": 0}, "retrain.shadow_rows", "greater than or equal to 1"),
    ({"promote": {"min_agreement": 1.5}}, "retrain.promote.min_agreement", "1.5"),
    ({"promote": {"max_agreement": 0.9}}, "retrain.promote.max_agreement", "unknown key"),
    ({"on": ["dataset_drift"]}, "retrain.on", "unknown key; expected one of"),
    ({"enabled": "yes"}, "retrain.enabled", "valid boolean"),
])
def test_bad_retrain_config_names_the_key(retrain: dict[str, Any], where: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(base(**retrain), "p.yaml")
    msg = str(err.value)
    assert msg.startswith(f"p.yaml: {where}: "), msg
    assert says in msg


def test_yaml_on_key_is_caught_not_silently_true(tmp_path: Path) -> None:
    """`on:` is a YAML 1.1 boolean: the key is named triggers, and `on` is refused clearly."""
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(base()) + "")
    text = p.read_text().replace("retrain: {}", "retrain:\n  on: [dataset_drift]")
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "retrain" in str(err.value) and "True" in str(err.value)


def test_configs_demo_yaml_is_the_demo_config() -> None:
    shipped = load_config(ROOT / "configs" / "demo.yaml")
    built = demo_config(port=shipped.serve.port)
    assert isinstance(built, PipelineConfig)
    assert shipped.model_dump() == built.model_dump()
    assert shipped.retrain.enabled and "region" in shipped.monitor.slice_columns


def test_demo_config_takes_port_and_window() -> None:
    cfg = demo_config(port=18123, window_rows=120)
    assert cfg.serve.port == 18123 and cfg.monitor.window_rows == 120 and cfg.serve.host == "127.0.0.1"


def test_demo_data_drifts_where_it_says() -> None:
    def cols(drift: str) -> dict[str, np.ndarray]:
        t = demo_data.make_table(4000, seed=3, drift=drift)
        return {c: t.column(c).to_numpy() for c in t.column_names}

    none, sl, gl = cols("none"), cols("slice"), cols("global")
    assert set(none) == {*demo_data.FEATURES, "y"}
    in_slice = none["region"] == demo_data.DRIFT_SLICE
    assert np.allclose(sl["x1"][~in_slice], none["x1"][~in_slice])  # same seed: untouched elsewhere
    assert np.allclose(sl["x1"][in_slice] - none["x1"][in_slice], 3.0)
    assert gl["x1"].mean() - none["x1"].mean() == pytest.approx(1.5, abs=0.1)
    assert np.allclose(gl["x4"], none["x4"]) and set(np.unique(gl["region"])) == {0, 1, 2, 3}
    assert 0.3 < none["y"].mean() < 0.7 and 0.3 < gl["y"].mean() < 0.7
    bodies = demo_data.requests(45, seed=1, drift="none", batch=20)
    assert [len(b) for b in bodies] == [20, 20, 5] and set(bodies[0][0]) == set(demo_data.FEATURES)
    assert demo_data.baseline().num_rows == demo_data.ROWS
    with pytest.raises(ValueError, match="drift must be"):
        demo_data.make_table(10, drift="sideways")


def test_retrain_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quick = str(ROOT / "configs" / "quickstart.yaml")
    demo = str(ROOT / "configs" / "demo.yaml")
    assert main(["retrain", "watch", quick, "--home", str(tmp_path)]) == 2
    assert "retrain.enabled: expected true" in capsys.readouterr().err
    assert main(["retrain", "watch", demo, "--max-cycles", "0", "--home", str(tmp_path)]) == 2
    assert "--max-cycles" in capsys.readouterr().err
    assert main(["retrain", "run", demo, "--reason", "labels came in", "--home", str(tmp_path)]) == 2
    assert "RAY_ADDRESS" in capsys.readouterr().err  # without a cluster: nothing to retrain on
    assert main(["retrain", "run", demo, "--reason", "  ", "--home", str(tmp_path)]) == 2
    assert "--reason" in capsys.readouterr().err
    assert main(["retrain", "run", str(tmp_path / "missing.yaml"), "--reason", "x"]) == 2
    assert "config file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["retrain", "run", demo])  # --reason is required
    assert exit_.value.code == 2
    assert main(["retrain"]) == 2


def test_demo_cli_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--rows", "10"]) == 2
    assert "--rows: expected at least 100" in capsys.readouterr().err
    assert main(["demo", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err

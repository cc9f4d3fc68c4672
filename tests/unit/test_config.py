"""Config loading and validation (raymlops.config) and the CLI's handling of bad input."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from raymlops.cli import main
from raymlops.config import PipelineConfig, load_config, parse_config
from raymlops.exceptions import ConfigError, RaymlopsError

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def quickstart_data() -> dict[str, Any]:
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: Any, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def _assert_one_line(message: str, path: Path) -> None:
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}: "), message


# ---------------------------------------------------------------------------- loading


def test_quickstart_loads_into_typed_config() -> None:
    cfg = load_config(QUICKSTART)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.name == "breast-cancer" and cfg.seed == 42
    assert cfg.data.source == "sklearn://breast_cancer" and cfg.data.target == "target"
    assert cfg.data.holdout_fraction == pytest.approx(0.2)
    assert [c.estimator for c in cfg.train.candidates] == [
        "sklearn.linear_model.LogisticRegression",
        "sklearn.ensemble.HistGradientBoostingClassifier",
    ]
    assert cfg.train.candidates[0].scale is True and cfg.train.candidates[1].scale is False
    assert cfg.train.candidates[0].params == {"C": [0.1, 1.0], "max_iter": 2000}
    assert cfg.gate.parsed() == [("roc_auc", ">=", 0.95), ("accuracy", ">=", 0.9)]
    assert cfg.serve.host == "127.0.0.1" and cfg.serve.port == 8000
    assert cfg.serve.batch_wait_timeout_s == pytest.approx(0.005)
    assert cfg.route == "breast-cancer"  # serve.name not set: the pipeline name
    assert cfg.monitor.correction == "bonferroni"  # a default filled in


def test_config_is_frozen() -> None:
    cfg = load_config(QUICKSTART)
    with pytest.raises(ValueError):
        cfg.seed = 1  # type: ignore[misc]


def test_config_hash_ignores_key_order_layout_and_comments(tmp_path: Path, quickstart_data: dict[str, Any]) -> None:
    reference = load_config(QUICKSTART).config_hash()
    assert len(reference) == 64 and int(reference, 16) >= 0

    def reverse(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: reverse(obj[k]) for k in reversed(list(obj))}
        if isinstance(obj, list):
            return [reverse(v) for v in obj]
        return obj

    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(
        "# same pipeline, other layout\n"
        + yaml.safe_dump(reverse(quickstart_data), default_flow_style=True, width=4000),
        encoding="utf-8",
    )
    assert QUICKSTART.read_text() != reordered.read_text()
    assert load_config(reordered).config_hash() == reference
    # writing a default out explicitly does not change the config either
    explicit = copy.deepcopy(quickstart_data)
    explicit["serve"]["num_replicas"] = 1
    explicit["train"]["task"] = "classification"
    assert load_config(_write(tmp_path, explicit, "explicit.yaml")).config_hash() == reference
    assert parse_config(quickstart_data, "mem").config_hash() == reference


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.__setitem__("seed", 43),
        lambda d: d["data"].__setitem__("holdout_fraction", 0.25),
        lambda d: d["train"]["candidates"][0]["params"].__setitem__("C", [0.1, 10.0]),
        lambda d: d["gate"]["rules"].__setitem__(0, "roc_auc >= 0.96"),
        lambda d: d["serve"].__setitem__("port", 8001),
    ],
    ids=["seed", "holdout", "grid-value", "gate-rule", "serve-port"],
)
def test_config_hash_changes_when_a_value_changes(
    tmp_path: Path, quickstart_data: dict[str, Any], mutate: Callable[[dict[str, Any]], None]
) -> None:
    changed = copy.deepcopy(quickstart_data)
    mutate(changed)
    assert load_config(_write(tmp_path, changed)).config_hash() != load_config(QUICKSTART).config_hash()


# ---------------------------------------------------------------------------- bad configs


def _set(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        target = d
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.pop(key)


BAD_CONFIGS = [
    pytest.param(
        _set("train", "bogus", value=1),
        "train.bogus",
        [
            "unknown key",
            "candidates",
            "cpus_per_trial",
            "max_concurrent_trials",
            "metric",
            "mode",
            "task",
            "validation_fraction",
        ],
        id="unknown-key",
    ),
    pytest.param(
        _set("train", "candidates", 0, "bogus", value=1),
        "train.candidates[0].bogus",
        ["unknown key", "estimator", "params", "scale"],
        id="unknown-nested-key",
    ),
    pytest.param(_set("serve", "port", value="abc"), "serve.port", ["integer", "'abc'"], id="wrong-type"),
    pytest.param(_drop("data"), "data", ["missing"], id="missing-section"),
    pytest.param(
        _set("data", "holdout_fraction", value=2), "data.holdout_fraction", ["less than 1", "2"], id="bad-value"
    ),
    pytest.param(
        _set("gate", "rules", value=["roc_auc >> 0.9"]), "gate.rules", ["'roc_auc >> 0.9'"], id="bad-gate-rule"
    ),
    pytest.param(
        _set("train", "candidates", 0, "estimator", value="LogisticRegression"),
        "train.candidates[0].estimator",
        ["import path", "'LogisticRegression'"],
        id="bad-estimator-path",
    ),
    pytest.param(
        _set("train", "candidates", 0, "params", value="C=1"),
        "train.candidates[0].params",
        ["'C=1'"],
        id="params-not-a-mapping",
    ),
    pytest.param(_set("name", value="Breast Cancer"), "name", ["'Breast Cancer'"], id="bad-name"),
    # numpy and scikit-learn take seeds up to 2**32 - 1: a larger one failed every Tune trial, blaming train.candidates
    pytest.param(_set("seed", value=2**32), "seed", ["4294967295", "4294967296"], id="seed-too-large"),
    pytest.param(
        _set("gate", "rules", value=["r2 >= 0.9"]),
        "gate.rules",
        ["'r2'", "roc_auc"],
        id="gate-metric-unknown",
    ),
]


@pytest.mark.parametrize(("mutate", "key_path", "mentions"), BAD_CONFIGS)
def test_bad_config_is_one_line_naming_file_and_key_path(
    tmp_path: Path,
    quickstart_data: dict[str, Any],
    mutate: Callable[[dict[str, Any]], None],
    key_path: str,
    mentions: list[str],
) -> None:
    data = copy.deepcopy(quickstart_data)
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RaymlopsError)
    assert info.value.exit_code == 2
    message = str(info.value)
    _assert_one_line(message, path)
    assert message.startswith(f"{path}: {key_path}: "), message
    for word in mentions:
        assert word in message, (word, message)


def test_unknown_gate_metric_is_rejected_and_named(tmp_path: Path, quickstart_data: dict[str, Any]) -> None:
    data = copy.deepcopy(quickstart_data)
    data["gate"]["rules"] = ["roc_auc >= 0.9", "r2 >= 0.9"]
    path = _write(tmp_path, data)
    message = _error(path)
    _assert_one_line(message, path)
    assert "gate.rules" in message and "'r2'" in message and "roc_auc" in message


def test_a_regression_metric_makes_the_task_a_regression(tmp_path: Path, quickstart_data: dict[str, Any]) -> None:
    """``metric: r2`` (mae, rmse) without ``task`` is a regression, as the metric says; with
    ``task: classification`` written, it is refused, and the message says how to ask for a regression."""
    data = copy.deepcopy(quickstart_data)
    data["train"]["metric"] = "r2"
    data["train"].pop("mode", None)
    data["train"]["candidates"] = [{"estimator": "sklearn.linear_model.Ridge", "params": {"alpha": [0.1, 1.0]}}]
    data["gate"]["rules"] = ["r2 >= 0.2"]
    cfg = load_config(_write(tmp_path, data, "ok.yaml"))
    assert cfg.train.task == "regression" and cfg.train.metric == "r2" and cfg.train.mode == "max"
    data["train"]["metric"] = "mae"
    assert load_config(_write(tmp_path, data, "mae.yaml")).train.mode == "min"

    data["train"]["task"] = "classification"
    path = _write(tmp_path, data)
    message = _error(path)
    _assert_one_line(message, path)
    assert "train.metric" in message and "set train.task: regression" in message


def test_the_monitor_scores_labels_as_the_model_is_trained(tmp_path: Path, quickstart_data: dict[str, Any]) -> None:
    """``monitor.performance.task`` follows ``train.task`` (a regression's labels were matched as
    classes: accuracy 0, ADWIN's error always 1)."""
    data = copy.deepcopy(quickstart_data)
    data["train"] = {"task": "regression", "candidates": [{"estimator": "sklearn.linear_model.Ridge"}]}
    data["gate"]["rules"] = ["r2 >= 0.2"]
    assert load_config(_write(tmp_path, data, "a.yaml")).monitor.performance.task == "regression"
    data["monitor"] = {"alpha": 0.01, "performance": {"max_mae_increase": 0.3}}
    cfg = load_config(_write(tmp_path, data, "b.yaml"))
    assert cfg.monitor.performance.task == "regression" and cfg.monitor.performance.max_mae_increase == 0.3
    assert load_config(_write(tmp_path, quickstart_data, "c.yaml")).monitor.performance.task == "classification"

    # the monitor the deploy step starts from this config (settings: its model_dump) averages errors
    from raymlops.config import MonitorConfig
    from raymlops.monitor import Monitor
    from raymlops.monitor.reference import build_reference

    rng = np.random.default_rng(4)
    dumped = cfg.monitor.model_dump()
    dumped["performance"]["baseline_labels"] = 20  # the first 20 labels are the baseline, the next 40 current
    settings = MonitorConfig.model_validate(dumped | {"alerts": {"log": False}})
    monitor = Monitor(build_reference({"x": rng.normal(size=200)}), settings)
    preds = rng.normal(100, 10, 60)
    ids = [f"r{i}" for i in range(60)]
    monitor.ingest({"x": rng.normal(size=60)}, predictions=preds, request_ids=ids)
    matched, _ = monitor.feedback(ids, (preds + 2.0).tolist())
    perf = monitor.status()["performance"]
    assert matched == 60 and perf["current"] == {"labels": 40, "mae": pytest.approx(2.0)}

    # derived, whatever the section says (a config recorded before the rule says classification there)
    data["monitor"]["performance"]["task"] = "classification"
    assert load_config(_write(tmp_path, data, "d.yaml")).monitor.performance.task == "regression"


def test_several_problems_report_the_first_and_count_the_rest(tmp_path: Path, quickstart_data: dict[str, Any]) -> None:
    data = copy.deepcopy(quickstart_data)
    data["serve"]["port"] = "abc"
    data["monitor"]["n_bins"] = 1
    data["data"]["holdout_fraction"] = 2
    path = _write(tmp_path, data)
    message = _error(path)
    _assert_one_line(message, path)
    assert "(and 2 more problems)" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    message = _error(path)
    _assert_one_line(message, path)
    assert "not found" in message
    # a folder is not a config file either
    assert "not found" in _error(tmp_path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nseed: 1\ndata:\n  source: [a, b\n  target: t\n", encoding="utf-8")
    message = _error(path)
    _assert_one_line(message, path)
    assert "not valid YAML" in message
    assert "line 5" in message  # the flow sequence opened on line 4 is broken at line 5


def test_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    message = _error(path)
    _assert_one_line(message, path)
    assert "not valid YAML" in message


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    message = _error(path)  # safe_load: never constructs the object
    _assert_one_line(message, path)
    assert "line 1" in message


@pytest.mark.parametrize(("text", "found"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("", "NoneType")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    path = tmp_path / "top.yaml"
    path.write_text(text, encoding="utf-8")
    message = _error(path)
    _assert_one_line(message, path)
    assert "(top level)" in message and "mapping" in message and f"({found})" in message


def test_parse_config_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^inline: data: expected this key"):
        parse_config({"name": "x", "train": {"candidates": [{"estimator": "a.B"}]}}, "inline")


def test_unknown_key_with_newline_still_gives_one_line(tmp_path: Path, quickstart_data: dict[str, Any]) -> None:
    data = copy.deepcopy(quickstart_data)
    data["train"]["bo\ngus"] = 1
    path = _write(tmp_path, data)
    _assert_one_line(_error(path), path)


def test_boolean_port_is_rejected(tmp_path: Path, quickstart_data: dict[str, Any]) -> None:
    data = copy.deepcopy(quickstart_data)
    data["serve"]["port"] = True
    path = _write(tmp_path, data)
    assert "serve.port" in _error(path)


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(QUICKSTART.read_text(encoding="utf-8") + "\nseed: 7\n", encoding="utf-8")
    message = _error(path)
    assert "seed" in message


# ---------------------------------------------------------------------------- CLI


def test_cli_run_with_bad_config_exits_2_with_one_line(
    tmp_path: Path, quickstart_data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy.deepcopy(quickstart_data)
    data["train"]["bogus"] = 1
    bad = _write(tmp_path, data)
    assert main(["--home", str(tmp_path / "home"), "run", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert str(bad) in lines[0] and "train.bogus" in lines[0]


def test_cli_run_with_a_missing_relative_source_exits_2_before_ray_starts(
    tmp_path: Path, quickstart_data: dict[str, Any], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A config next to its data, run from another folder: the message says where the path was
    looked for (relative paths are read from the working directory), and no Ray is started for it."""
    import raymlops.pipeline.context as context

    def no_ray() -> bool:
        raise AssertionError("Ray was started for a source that does not exist")

    monkeypatch.setattr(context, "ensure_ray", no_ray)
    data = copy.deepcopy(quickstart_data)
    data["data"]["source"] = "data/train.csv"
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.csv").write_text("a,target\n1,0\n", encoding="utf-8")
    cfg = _write(project, data)
    monkeypatch.chdir(tmp_path)
    assert main(["--home", str(tmp_path / "home"), "run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "'data/train.csv' not found" in err and "Traceback" not in err
    assert f"lookedfor{tmp_path / 'data' / 'train.csv'}:" in "".join(err.split())  # (the message is wrapped)


def test_a_source_under_the_home_folder_passes_the_early_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~/data.csv`` is read as the reader reads it (expanded), not refused before Ray starts."""
    from raymlops.data.sources import check_local_source

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data.csv").write_text("a,target\n1,0\n", encoding="utf-8")
    check_local_source("~/data.csv")
    check_local_source("sklearn://iris")
    check_local_source("s3://bucket/missing.csv")  # remote: the reader checks it
    with pytest.raises(ConfigError, match="'~/missing.csv' not found"):
        check_local_source("~/missing.csv")


def test_cli_run_with_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "not found" in err and "Traceback" not in err


def test_cli_unknown_model_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raymlops.store.home import Store

    Store.open(tmp_path)  # a home, with no model in it
    assert main(["--home", str(tmp_path), "models", "show", "nope:v1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "nope:v1" in err and "Traceback" not in err


def test_cli_help_lists_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "run" in out and "usage: raymlops" in out


def test_cli_without_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: raymlops" in capsys.readouterr().out


def test_cli_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--no-such-option", "x.yaml"])
    assert info.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_cli_module_help_in_a_subprocess(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "raymlops.cli", "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "run" in out.stdout and "Traceback" not in out.stderr


def test_console_script_points_at_the_guarded_entry_point() -> None:
    import raymlops.__main__

    scripts = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == "raymlops"]
    assert len(scripts) == 1
    assert scripts[0].value == "raymlops.__main__:main"  # which runs raymlops.cli's main (tests/unit/test_entry.py)
    assert scripts[0].load() is raymlops.__main__.main


def test_unit_suite_cannot_start_ray() -> None:
    ray = pytest.importorskip("ray")
    with pytest.raises(RuntimeError, match="unit tests must not start Ray"):
        ray.init()


def test_an_empty_feature_list_is_refused_not_read_as_every_column() -> None:
    """data.features: [] trained on every column without a word."""
    with pytest.raises(ConfigError) as info:
        parse_config({"name": "m", "data": {"source": "d.csv", "target": "y", "features": []},
                      "train": {"candidates": [{"estimator": "a.B"}]}}, "x.yaml")
    assert "x.yaml: data.features:" in str(info.value) and "at least 1 item" in str(info.value)
    assert info.value.exit_code == 2


def test_models_show_takes_json_like_the_other_model_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models show REF --json` was "unrecognized arguments: --json" (list, history, promote and
    rollback take it)."""
    import json

    from sklearn.linear_model import LogisticRegression

    from raymlops.registry.registry import register_model
    from raymlops.store.home import Store

    X, y = np.arange(20.0).reshape(10, 2), np.arange(10) % 2
    register_model(Store.open(tmp_path), "m", LogisticRegression().fit(X, y), snapshot_id="s" * 64,
                   signature={"inputs": [{"name": "a"}, {"name": "b"}], "output": "classification"},
                   metrics={"accuracy": 1.0}, gate={"status": "passed", "reasons": []}, lineage={})
    assert main(["--home", str(tmp_path), "models", "show", "m:v1", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and json.loads(out)["id"] == "m:v1"
    assert main(["--home", str(tmp_path), "models", "show", "m:v1"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "m:v1"  # indented, the same document


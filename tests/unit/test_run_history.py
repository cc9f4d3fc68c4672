"""Run records, `raymlops runs`, the step cache's fingerprints, the step log and data.transforms
(everything that does not need Ray)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from raymlops.cli import main
from raymlops.config import parse_config
from raymlops.data.transforms import module_fingerprint, pandas_batch_function, resolve
from raymlops.exceptions import ConfigError, NotFound
from raymlops.pipeline.cache import StepCache, fingerprint, source_fingerprint
from raymlops.pipeline.history import RunRecorder, get_run, list_runs, resolve_run, run_logs, submission_id
from raymlops.pipeline.runner import StepResult
from raymlops.pipeline.steplog import StepLog, capture_logging
from raymlops.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _record(store: Store, run_id: str, status: str, started: float, failed_step: str | None = None) -> None:
    rec = RunRecorder(store.metadata, run_id)
    error = None
    if failed_step:
        error = {"step": failed_step, "type": "ValueError", "message": "bad value", "traceback": "Traceback …",
                 "remote": True, "log_tail": ["line 1"]}
    rec.save_run(pipeline="p", status="running", config_hash="h" * 64, started_at=started, ended_at=None,
                 record={"who": {"user": "ann"}})
    for i, name in enumerate(("ingest", "schema"), start=1):
        step = StepResult(name, "failed" if name == failed_step else "ran", 1.5, f"{name} detail",
                          started_at=started, ended_at=started + 1.5, cache_key="k" * 64, rows=10, bytes=2048)
        step.log.add(f"{name} log line")
        rec.save_step(i, step.to_dict(), step.log.text())
    rec.save_run(pipeline="p", status=status, config_hash="h" * 64, started_at=started, ended_at=started + 3,
                 record={"who": {"user": "ann"}, "error": error, "model": None if failed_step else "p:v1",
                         "gate": None if failed_step else "passed"})


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "home")
    _record(s, "20260101-000000-aaaaaa", "succeeded", 1000.0)
    _record(s, "20260102-000000-bbbbbb", "failed", 2000.0, failed_step="schema")
    return s


def test_runs_are_listed_newest_first_and_filtered_by_status(store: Store, capsys) -> None:
    runs = list_runs(store.metadata)
    assert [r["run"] for r in runs] == ["20260102-000000-bbbbbb", "20260101-000000-aaaaaa"]
    assert runs[0]["failed_step"] == "schema" and runs[0]["error"] == "ValueError: bad value"
    assert runs[1]["seconds"] == 3.0 and runs[1]["model"] == "p:v1"
    home = str(store.home)
    assert main(["runs", "list", "--status", "failed", "--json", "--home", home]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["20260102-000000-bbbbbb"]
    assert main(["runs", "list", "--home", home]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("RUN") and "schema: ValueError: bad value" in out[1] and "p:v1 (gate passed)" in out[2]


def test_a_run_is_found_by_id_prefix_suffix_or_latest(store: Store) -> None:
    assert resolve_run(store.metadata, "latest") == "20260102-000000-bbbbbb"
    assert resolve_run(store.metadata, "20260101") == "20260101-000000-aaaaaa"
    assert resolve_run(store.metadata, "bbbbbb") == "20260102-000000-bbbbbb"
    with pytest.raises(NotFound, match="ambiguous"):
        resolve_run(store.metadata, "2026")
    with pytest.raises(NotFound, match="runs list"):
        resolve_run(store.metadata, "zzzzzz")


def test_show_has_the_steps_and_the_error_with_its_traceback(store: Store, capsys) -> None:
    record = get_run(store.metadata, "bbbbbb")
    assert record["status"] == "failed" and record["ended_at"] == 2003.0
    assert [(s["name"], s["status"], s["rows"], s["bytes"]) for s in record["steps"]] == [
        ("ingest", "ran", 10, 2048), ("schema", "failed", 10, 2048)]
    assert main(["runs", "show", "bbbbbb", "--home", str(store.home)]) == 0
    out = capsys.readouterr().out
    assert "run 20260102-000000-bbbbbb  failed in 3.0s" in out
    assert "error     step schema: ValueError: bad value" in out and "traceback (remote)" in out
    assert "[10 rows, 2.0 kB]" in out and "    line 1" in out


def test_logs_per_step_and_unknown_names_are_bad_input(store: Store, capsys) -> None:
    run_id, logs = run_logs(store.metadata, "latest", "schema")
    assert logs == [("schema", "schema log line")]
    home = str(store.home)
    assert main(["runs", "logs", "latest", "--home", home]) == 0
    out = capsys.readouterr().out
    assert out.index("== 20260102-000000-bbbbbb ingest ==") < out.index("schema log line")
    assert main(["runs", "logs", "latest", "--step", "train", "--home", home]) == 2
    assert "no step 'train' (steps: ingest, schema)" in capsys.readouterr().err
    assert main(["runs", "show", "nope-nope", "--home", home]) == 2
    with pytest.raises(SystemExit) as info:
        main(["runs", "list", "--status", "weird", "--home", home])
    assert info.value.code == 2


def test_step_cache_round_trip_and_fingerprints(tmp_path: Path) -> None:
    cache = StepCache(Store.open(tmp_path / "home").metadata)
    key = fingerprint("ingest", {"b": 1, "a": [1, 2]})
    assert key == fingerprint("ingest", {"a": [1, 2], "b": 1})  # canonical: key order does not matter
    assert key != fingerprint("schema", {"a": [1, 2], "b": 1})
    assert cache.get(key) is None
    cache.put(key, "ingest", "run-1", {"snapshot": "abc"})
    cache.put(key, "ingest", "run-2", {"snapshot": "abc"})
    assert cache.get(key) == {"snapshot": "abc", "_run": "run-2"}
    cache.forget(key)
    assert cache.get(key) is None


def test_source_fingerprint_changes_with_the_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n")
    first = source_fingerprint(str(data))
    assert first is not None and [f[0] for f in first["files"]] == ["a.csv"]
    assert source_fingerprint(str(data)) == first
    (data / "b.csv").write_text("x,y\n3,4\n")
    second = source_fingerprint(str(data))
    assert second != first
    os.utime(data / "a.csv", (time.time() + 10, time.time() + 10))
    assert source_fingerprint(str(data)) != second
    assert source_fingerprint(str(tmp_path / "missing.csv")) is None
    assert source_fingerprint("sklearn://iris")["uri"] == "sklearn://iris"  # type: ignore[index]
    assert module_fingerprint("raymlops.pipeline.cache") is not None and module_fingerprint("no.such.mod") is None


def test_submission_id_of_a_ray_job_submit_driver() -> None:
    env = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {}, "metadata": {
        "job_submission_id": "raysubmit_abc", "job_name": "raysubmit_abc"}})}
    assert submission_id(env) == "raysubmit_abc"
    assert submission_id({}) is None and submission_id({"RAY_JOB_CONFIG_JSON_ENV_VAR": "{bad"}) is None


def test_step_log_captures_logging_and_mutes_ray_terminal_handlers(capsys) -> None:
    ray_logger = logging.getLogger("ray.fake_component_for_test")
    ray_logger.propagate = False
    terminal = logging.StreamHandler(sys.stderr)
    ray_logger.addHandler(terminal)
    try:
        log = StepLog(max_lines=3)
        with capture_logging(log):
            logging.getLogger("user.code").warning("user warning %d", 1)
            ray_logger.error("\x1b[36mray error\x1b[39m")
        logging.getLogger("user.code").warning("after the step")
        assert any("user.code: user warning 1" in line for line in log.lines)
        assert any(line.endswith("ray.fake_component_for_test: ray error") for line in log.lines)
        assert "ray error" not in capsys.readouterr().err  # muted while the step ran
        ray_logger.error("ray again")
        assert "ray again" in capsys.readouterr().err  # and restored afterwards
        for i in range(5):
            log.add(f"line {i}")
        assert log.lines == ["line 2", "line 3", "line 4"] and log.tail(2) == ["line 3", "line 4"]
    finally:
        ray_logger.removeHandler(terminal)


# -- data.transforms ---------------------------------------------------------------------------
def _cfg(transforms: Any) -> Any:
    data = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    data["data"]["transforms"] = transforms
    return parse_config(data, "t.yaml")


@pytest.mark.parametrize(
    ("transforms", "message"),
    [
        ([{}], "t.yaml: data.transforms[0]: expected exactly one transform kind (map_batches, select, rename, cast, "
               "filter, derive) per entry, found none"),
        ([{"map_batches": "nocolon"}], "data.transforms[0].map_batches: expected 'module:function'"),
        ([{"map_batches": "a:b"}, {"bogus": "x > 1"}], "data.transforms[1].bogus: unknown key; expected one of "
                                                       "cast, derive, filter, map_batches, rename, select"),
        ("a:b", "data.transforms: expected a valid list"),
    ],
)
def test_transform_config_errors_name_the_key_path(transforms: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(transforms)
    assert message in str(info.value)


def test_transforms_resolve_on_the_driver_and_name_the_key_path() -> None:
    cfg = _cfg([{"map_batches": "pandas:DataFrame"}, {"map_batches": "json:dumps"}])
    resolved = resolve(cfg.data.transforms)
    assert [t.key for t in resolved] == ["data.transforms[0].map_batches", "data.transforms[1].map_batches"]
    assert resolved[1].code_location() == (json.dumps.__code__.co_filename, "dumps")  # found again in tracebacks
    for spec, message in (("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
                          ("json:no_such_function", "module 'json' has no function 'no_such_function'"),
                          ("json:__doc__", "is a str, expected a function")):
        with pytest.raises(ConfigError) as info:
            resolve(_cfg([{"map_batches": "json:dumps"}, {"map_batches": spec}]).data.transforms)
        assert str(info.value).startswith("data.transforms[1].map_batches: ") and message in str(info.value)


def test_batch_function_keeps_the_name_and_checks_the_result() -> None:
    def clean(batch: pd.DataFrame) -> Any:
        return batch if len(batch) else {"not": "a frame"}

    fn = pandas_batch_function(clean, "data.transforms[0].map_batches", "m:clean")
    assert fn.__name__ == "clean"  # Ray Data names the operator MapBatches(clean)
    frame = pd.DataFrame({"a": [1]})
    assert fn(frame) is frame
    with pytest.raises(TypeError, match=r"data.transforms\[0\].map_batches: m:clean returned dict; expected a pandas"):
        fn(frame.iloc[:0])


# -- `raymlops run`'s output, with the pipeline replaced ---------------------------------------
def _quickstart_file(tmp_path: Path) -> str:
    path = tmp_path / "q.yaml"
    path.write_text((ROOT / "configs" / "quickstart.yaml").read_text())
    return str(path)


def test_run_failure_prints_one_paragraph_and_a_json_line(tmp_path: Path, monkeypatch, capsys) -> None:
    import raymlops.pipeline.runner as runner
    from raymlops.exceptions import StepFailed
    from raymlops.pipeline.failures import Failure

    def failing(*args: Any, **kwargs: Any) -> Any:
        exc = StepFailed("train", "every Tune trial failed; the first: KeyError: 'x'")
        exc.run_id = "20260101-000000-cccccc"  # type: ignore[attr-defined]
        exc.failure = Failure("train", "KeyError", "'x'", "Traceback (most recent call last):\n  …",  # type: ignore[attr-defined]
                              remote=True, where="models.py:3 in fit", in_user_code=True,
                              context="every Tune trial failed; the first")
        raise exc

    monkeypatch.setattr(runner, "run_pipeline", failing)
    assert main(["run", _quickstart_file(tmp_path), "--json", "--home", str(tmp_path / "h")]) == 1
    out, err = capsys.readouterr()
    line = json.loads(out.strip().splitlines()[-1])
    assert line["run"] == "20260101-000000-cccccc" and line["status"] == "failed"
    assert line["error"]["step"] == "train" and line["error"]["type"] == "KeyError"
    text = " ".join(err.split())
    assert text.startswith("error: run 20260101-000000-cccccc failed at step 'train': every Tune trial failed; "
                           "the first: KeyError: 'x' (raised at models.py:3 in fit).")
    assert "train.candidates" in text and text.endswith("Details: raymlops runs show 20260101-000000-cccccc")
    assert err.count("\n\n") == 0


def test_run_with_a_rejecting_gate_says_why_and_succeeds(tmp_path: Path, monkeypatch, capsys) -> None:
    import raymlops.pipeline.runner as runner
    from raymlops.pipeline.runner import RunResult

    seen: dict[str, Any] = {}

    def rejected(config: Any, **kwargs: Any) -> RunResult:
        seen.update(kwargs)
        return RunResult("20260101-000000-dddddd", "breast-cancer", snapshot="s" * 64, model="breast-cancer:v2",
                         gate="rejected", gate_reasons=["roc_auc >= 0.999 failed: roc_auc = 0.9900"],
                         status="succeeded")

    monkeypatch.setattr(runner, "run_pipeline", rejected)
    assert main(["run", _quickstart_file(tmp_path), "--no-cache", "--home", str(tmp_path / "h")]) == 0
    assert seen["use_cache"] is False
    out, err = capsys.readouterr()
    assert "run 20260101-000000-dddddd succeeded" in out
    text = " ".join(err.split())
    assert "the gate rejected breast-cancer:v2 (roc_auc >= 0.999 failed: roc_auc = 0.9900)" in text
    assert "was not deployed" in text and "raymlops runs show 20260101-000000-dddddd" in text


def test_module_fingerprint_covers_the_users_package_and_its_folder(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached user step whose function imports a threshold from another module of the user's
    package is run again when that module changes (the function's own file is the same)."""
    import hashlib
    import importlib
    import importlib.util
    import sys

    pkg = tmp_path / "fpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "checks.py").write_text("from fpkg.helpers import LIMIT\ndef check(view):\n    return LIMIT\n")
    (pkg / "helpers.py").write_text("LIMIT = 0.9\n")
    (tmp_path / "loose.py").write_text("import loose_helper\ndef check(view):\n    return loose_helper.LIMIT\n")
    (tmp_path / "loose_helper.py").write_text("LIMIT = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("fpkg", "fpkg.checks", "fpkg.helpers", "loose", "loose_helper"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.import_module("loose")

    first, loose = module_fingerprint("fpkg.checks"), module_fingerprint("loose")
    assert first is not None and loose is not None and module_fingerprint("fpkg.checks") == first
    (pkg / "helpers.py").write_text("LIMIT = 0.5\n")
    assert module_fingerprint("fpkg.checks") not in (first, None)
    (pkg / "sub" / "more.py").write_text("X = 1\n")  # any file of the package
    assert module_fingerprint("fpkg.checks") != first
    (tmp_path / "loose_helper.py").write_text("LIMIT = 2\n")  # a loaded module of the same folder
    assert module_fingerprint("loose") != loose
    # and one the function imports only when it runs (not loaded when the cache key is made)
    (tmp_path / "lazy.py").write_text("def check(view):\n    import lazy_helper\n    return lazy_helper.LIMIT\n")
    (tmp_path / "lazy_helper.py").write_text("LIMIT = 1\n")
    lazy = module_fingerprint("lazy")
    (tmp_path / "lazy_helper.py").write_text("LIMIT = 3\n")
    assert "lazy_helper" not in sys.modules and module_fingerprint("lazy") not in (lazy, None)
    # an installed module: its own file (its version is recorded with the run)
    json_file = Path(importlib.util.find_spec("json").origin)  # type: ignore[arg-type,union-attr]
    assert module_fingerprint("json") == hashlib.sha256(json_file.read_bytes()).hexdigest()

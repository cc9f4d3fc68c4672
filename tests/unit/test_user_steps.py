"""User steps (``steps:`` in a config) and the step runner, without Ray: the config's checks, the
plan, and a runner whose built-in step is a small one written here (named ``validate``, so a
user step can follow it), with the user's function in a module of the user's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from raymlops import Store
from raymlops.audit import records
from raymlops.config import parse_config
from raymlops.exceptions import ConfigError, StepFailed
from raymlops.pipeline import STEPS, Pipeline, RunContext, Runner, Step, StepInput, UserStep, plan
from raymlops.pipeline.failures import explain
from raymlops.pipeline.history import get_run
from raymlops.pipeline.user_steps import user_steps

ROOT = Path(__file__).resolve().parents[2]

CHECKS = '''
calls = []


def no_leakage(view, max_corr=0.95):
    calls.append(view.run_id)
    if max_corr < 0.5:
        raise ValueError(f"feature 'leak' correlates {0.99} with the target (max_corr={max_corr})")
    return {"max_corr": max_corr, "after": view.after, "rows": view.outputs["validate"]["rows"]}


def chatty(view):
    import sys
    print("checked", view.outputs["validate"]["rows"], "rows")
    print("no leakage found", end="")  # no newline: kept all the same
    sys.stderr.write("a warning of the user's own\\n")
    return {"ok": True}


def not_json(view):
    return {"when": object()}


def numpy_numbers(view):
    import numpy as np
    return {"n": np.int64(3), "mean": np.float32(0.5), "counts": np.array([1, 2]), "ok": np.bool_(True)}
'''


def config(**step: Any) -> Any:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["serve"]["enabled"] = False
    cfg["steps"] = [{"after": "validate", "name": "check-no-leakage", "call": "mychecks:no_leakage",
                     "with": {"max_corr": 0.95}} | step]
    return parse_config(cfg, "p.yaml")


@pytest.fixture()
def mychecks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's module, importable as ``mychecks`` (as from the user's PYTHONPATH)."""
    pkg = tmp_path / "user"
    pkg.mkdir()
    path = pkg / "mychecks.py"
    path.write_text(CHECKS)
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.delitem(__import__("sys").modules, "mychecks", raising=False)
    return path


class CountRows(Step[None, dict[str, int]]):
    """A stand-in for the built-in validate step that needs no Ray."""

    name = "validate"

    def take(self, ctx: RunContext, outputs: Any) -> None:
        return None

    def run(self, ctx: RunContext, inputs: None) -> dict[str, int]:
        ctx.step.outputs, ctx.step.detail, ctx.step.rows = {"rows": 3}, "3 rows", 3
        return {"rows": 3}


def run(cfg: Any, home: Path, lines: list[str] | None = None) -> Any:
    ctx = RunContext(cfg, Store.open(home), progress=(lines if lines is not None else []).append)
    return Runner(ctx, [CountRows(), *user_steps(cfg)], groups=[]).run()


# -- the config ----------------------------------------------------------------------------------
def test_the_plan_puts_each_user_step_after_its_built_in_step() -> None:
    cfg = config()
    cfg = cfg.model_copy(update={"steps": [*cfg.steps, *config(after="register", name="report").steps]})
    names = [s.name for s in plan(cfg)]
    assert names == [*STEPS[:3], "check-no-leakage", *STEPS[3:9], "report", *STEPS[9:]]
    assert [s.name for s in plan(config().model_copy(update={"steps": []}))] == list(STEPS)
    step = plan(cfg)[3]
    assert isinstance(step, UserStep) and step.requires == ("validate",) and not step.needs_ray


@pytest.mark.parametrize(("entry", "message"), [
    ({"after": "validation"}, "p.yaml: steps[0].after: expected a built-in step (ingest, schema, validate"),
    ({"name": "train"}, "p.yaml: steps[0].name: expected a name that is not a built-in step's"),
    ({"name": "Check"}, "p.yaml: steps[0].name: expected lowercase letters"),
    ({"call": "mychecks.no_leakage"}, "p.yaml: steps[0].call: expected 'module:function'"),
    ({"with": {"when": float("nan")}}, "p.yaml: steps[0].with: expected JSON values"),
    ({"cahce": True}, "p.yaml: steps[0].cahce: unknown key; expected one of after, cache, call, name, with"),
])
def test_a_bad_entry_is_a_config_error_naming_its_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(**entry)
    assert str(info.value).startswith(message), str(info.value)


def test_names_are_unique_and_the_hash_of_a_config_without_steps_is_unchanged() -> None:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["steps"] = [{"after": "validate", "name": "a", "call": "m:f"}, {"after": "train", "name": "a", "call": "m:g"}]
    with pytest.raises(ConfigError, match=r"steps: expected unique step names, found 'a' twice"):
        parse_config(cfg)
    plain = config().model_copy(update={"steps": []})
    data = plain.model_dump(mode="json")
    assert data["steps"] == [] and config().model_dump(mode="json")["steps"][0]["with"] == {"max_corr": 0.95}
    del data["steps"]
    import hashlib

    canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert plain.config_hash() == hashlib.sha256(canon.encode()).hexdigest()
    assert config().config_hash() != plain.config_hash()


def test_an_unimportable_call_is_a_config_error_before_any_step_and_without_ray(tmp_path: Path, mychecks) -> None:
    for call, found in (("no_such_module:fn", "cannot import module 'no_such_module'"),
                        ("mychecks:missing", "module 'mychecks' has no function 'missing'"),
                        ("mychecks:calls", "'mychecks:calls' is a list, expected a function")):
        home = tmp_path / call.replace(":", "-")
        with pytest.raises(ConfigError) as info:
            Pipeline(config(call=call), Store.open(home), progress=lambda _: None).run()
        assert str(info.value).startswith(f"steps[0].call: {found}"), str(info.value)
        record = get_run(Store.open(home).metadata, "latest")
        assert record["status"] == "failed" and record["error"]["step"] is None
        assert {s["status"] for s in record["steps"]} == {"skipped"}  # nothing ran (and ray.init would raise)
    # a keyword the function does not take (or one it needs and is not given): found before any step,
    # not when the step's turn comes after training
    home = tmp_path / "typo"
    with pytest.raises(ConfigError) as info:
        Pipeline(config(**{"with": {"max_corr": 0.9, "treshold": 1}}), Store.open(home), progress=lambda _: None).run()
    assert str(info.value).startswith("steps[0].with: mychecks:no_leakage cannot be called"), str(info.value)
    assert "unexpected keyword argument 'treshold'" in str(info.value)
    assert {s["status"] for s in get_run(Store.open(home).metadata, "latest")["steps"]} == {"skipped"}


# -- a run -----------------------------------------------------------------------------------------
def test_a_user_step_is_run_recorded_audited_and_cached(tmp_path: Path, mychecks) -> None:
    import mychecks as user  # type: ignore[import-not-found]

    home = tmp_path / "home"
    cfg = config(cache=True)
    lines: list[str] = []
    first = run(cfg, home, lines)
    assert [(s.name, s.status) for s in first.steps] == [("validate", "ran"), ("check-no-leakage", "ran")]
    step = first.steps[1]
    assert step.outputs == {"max_corr": 0.95, "after": "validate", "rows": 3}
    assert step.inputs == {"call": "mychecks:no_leakage", "with": {"max_corr": 0.95}, "after": "validate"}
    assert step.cache_key and step.seconds >= 0 and step.ended_at is not None
    assert "[2/2] check-no-leakage ..." in lines
    assert any(line.startswith("[2/2] check-no-leakage ran in") for line in lines)
    assert user.calls == [first.run_id]

    store = Store.open(home)
    record = get_run(store.metadata, first.run_id)
    assert record["status"] == "succeeded" and record["config"]["steps"][0]["name"] == "check-no-leakage"
    assert record["steps"][1]["outputs"]["rows"] == 3 and record["steps"][1]["status"] == "ran"
    audited = [r for r in records(store.metadata) if r.action.startswith("step.")]
    assert [(r.action, r.record["ids"]) for r in audited] == [
        ("step.ran", {"step": "check-no-leakage", "run": first.run_id})]
    assert audited[0].record["how"]["outputs"]["max_corr"] == 0.95 and audited[0].record["reason"] == \
        f"pipeline breast-cancer run {first.run_id}"

    # the same input, call and `with`: reused; the function is not called again, nothing is audited
    second = run(cfg, home)
    assert [s.status for s in second.steps] == ["ran", "cached"]
    assert second.steps[1].outputs == step.outputs and second.steps[1].cache_key == step.cache_key
    assert second.steps[1].detail == f"unchanged since run {first.run_id}"
    assert user.calls == [first.run_id]
    assert len([r for r in records(store.metadata) if r.action.startswith("step.")]) == 1

    # other arguments (or no `cache: true`): it runs again
    third = run(config(cache=True, **{"with": {"max_corr": 0.9}}), home)
    assert third.steps[1].status == "ran" and third.steps[1].outputs["max_corr"] == 0.9
    assert run(config(), home).steps[1].status == "ran"
    assert len(user.calls) == 3


def test_what_a_user_step_prints_reaches_the_terminal_and_the_runs_logs(tmp_path: Path, mychecks,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from raymlops.pipeline.history import run_logs

    home = tmp_path / "home"
    done = run(config(call="mychecks:chatty", **{"with": {}}), home)
    out = capsys.readouterr()
    assert "checked 3 rows" in out.out and "a warning of the user's own" in out.err
    _, logs = run_logs(Store.open(home).metadata, done.run_id, "check-no-leakage")
    text = "\n".join(t for _, t in logs)
    for line in ("PRINT: checked 3 rows", "PRINT: no leakage found", "PRINT: a warning of the user's own"):
        assert line in text, text


def test_a_failing_user_step_is_explained_with_the_users_function_and_line(tmp_path: Path, mychecks) -> None:
    home = tmp_path / "home"
    with pytest.raises(StepFailed) as info:
        run(config(**{"with": {"max_corr": 0.1}}), home)
    exc = info.value
    failure = exc.failure  # type: ignore[attr-defined]
    assert exc.step == "check-no-leakage"
    assert failure.type == "ValueError" and "correlates 0.99 with the target" in failure.message
    assert failure.context == "steps[0] (mychecks:no_leakage) raised"
    assert failure.in_user_code and failure.where is not None and failure.where.endswith("in no_leakage")
    line = CHECKS.splitlines().index('        raise ValueError(f"feature \'leak\' correlates {0.99} with the target '
                                     '(max_corr={max_corr})")') + 1
    assert f"mychecks.py:{line} in no_leakage" in failure.where
    assert "raise ValueError" in failure.traceback
    tb = failure.traceback.splitlines()  # from the user's function on, not the runner's frames
    assert tb[0] == "Traceback (most recent call last):" and tb[1].startswith(f'  File "{mychecks}", line {line}')
    assert "raymlops" not in failure.traceback
    text = explain(failure, exc.run_id)  # type: ignore[attr-defined]
    assert text.startswith(f"error: run {exc.run_id} failed at step 'check-no-leakage': steps[0] "  # type: ignore[attr-defined]
                           "(mychecks:no_leakage) raised: ValueError: feature 'leak' correlates 0.99")
    assert f"(raised at {failure.where})" in text and "Fix that function of the config's steps" in text

    store = Store.open(home)
    record = get_run(store.metadata, exc.run_id)  # type: ignore[attr-defined]
    assert record["status"] == "failed" and record["error"]["step"] == "check-no-leakage"
    assert [(s["name"], s["status"]) for s in record["steps"]] == [("validate", "ran"), ("check-no-leakage", "failed")]
    assert "mychecks.py" in record["steps"][1]["error"]["traceback"]
    assert any("[2/2] check-no-leakage ..." in x for x in record["steps"][1]["error"]["log_tail"])
    failed = [r for r in records(store.metadata) if r.action == "step.failed"]
    assert len(failed) == 1 and failed[0].record["how"]["error"].startswith("ValueError: feature 'leak'")
    with store.metadata.read() as conn:  # a failed step leaves no cache entry
        assert conn.execute("SELECT COUNT(*) FROM step_cache WHERE step = 'check-no-leakage'").fetchone()[0] == 0


def test_a_user_step_must_return_json_and_is_skipped_with_the_step_it_follows(tmp_path: Path, mychecks) -> None:
    with pytest.raises(StepFailed) as info:
        run(config(call="mychecks:not_json", **{"with": {}}), tmp_path / "home")
    assert "steps[0].call: mychecks:not_json returned a value that is not JSON" in str(info.value)
    # numpy's numbers are numbers (np.int64 failed the run; np.float64 passed, being a float)
    result = run(config(call="mychecks:numpy_numbers", **{"with": {}}), tmp_path / "home2")
    step = next(s for s in result.steps if s.name == "check-no-leakage")
    assert step.outputs == {"n": 3, "mean": 0.5, "counts": [1, 2], "ok": True}

    class Skipped(CountRows):
        def skip(self, ctx: RunContext, inputs: None) -> str | None:
            return "nothing to count"

    cfg = config()
    ctx = RunContext(cfg, Store.open(tmp_path / "h2"), progress=lambda _: None)
    result = Runner(ctx, [Skipped(), *user_steps(cfg)], groups=[]).run()
    assert [(s.name, s.status, s.detail) for s in result.steps] == [
        ("validate", "skipped", "nothing to count"), ("check-no-leakage", "skipped", "nothing to count")]


def test_a_user_step_can_be_called_alone_with_a_view(tmp_path: Path, mychecks) -> None:
    cfg = config()
    ctx = RunContext(cfg, Store.open(tmp_path / "home"), progress=lambda _: None)
    step = user_steps(cfg)[0]
    view = StepInput(name=step.name, after="validate", run_id=ctx.run_id, config=cfg, store=ctx.store,
                     outputs={"validate": {"rows": 7}})
    assert step.run(ctx, view) == {"max_corr": 0.95, "after": "validate", "rows": 7}
    with pytest.raises(ValueError, match="no rows yet"):
        view.table()
    with pytest.raises(ValueError, match="no features yet"):
        view.arrays()


# -- built-in steps alone ----------------------------------------------------------------------------
def test_evaluate_and_gate_run_alone_without_ray(tmp_path: Path) -> None:
    """Steps without ``needs_ray`` run in a unit test (where ``ray.init`` raises) from values made by hand."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from raymlops.pipeline import EvaluateStep, GateStep, TrainStep
    from raymlops.pipeline.model_steps import EvaluateIn, GateIn, TrainOut

    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[:400], y[:400])
    cfg = config().model_copy(update={"steps": []})
    ctx = RunContext(cfg, Store.open(tmp_path / "home"), progress=lambda _: None)
    assert not EvaluateStep.needs_ray and not GateStep.needs_ray and TrainStep.needs_ray
    train = TrainOut("s" * 64, [f"f{i}" for i in range(X.shape[1])], model, holdout=(X[400:], y[400:]),
                     holdout_columns={})
    evaluated = EvaluateStep().run(ctx, EvaluateIn(train))
    assert evaluated.metrics["roc_auc"] > 0.9 and ctx.step.rows == len(y) - 400
    assert "roc_auc=" in ctx.step.detail and evaluated.calibration is not None
    verdict = GateStep().run(ctx, GateIn(train, evaluated))
    assert verdict.passed and ctx.result.gate == "passed" and ctx.step.outputs["gate"] == "passed"
    strict = cfg.model_dump(mode="json")
    strict["gate"]["rules"] = ["roc_auc >= 0.99999"]
    ctx = RunContext(parse_config(strict), ctx.store, progress=lambda _: None)
    rejected = GateStep().run(ctx, GateIn(train, EvaluateStep().run(ctx, EvaluateIn(train))))
    assert not rejected.passed and "roc_auc >= 0.99999" in ctx.step.detail
    assert rejected.verdict.reasons and ctx.result.gate == "rejected"


class Interrupted(Step[None, dict[str, int]]):
    """A step stopped by Ctrl-C as Ray reports it: the terminal's SIGINT reached a Ray task too, which
    comes back wrapped (``wrapped``), or cleanup failed while the interrupt unwound (``context``)."""

    name = "validate"

    def __init__(self, how: str) -> None:
        self.how = how

    def take(self, ctx: RunContext, outputs: Any) -> None:
        return None

    def run(self, ctx: RunContext, inputs: None) -> dict[str, int]:
        from ray.exceptions import RayTaskError

        if self.how == "wrapped":
            raise RayTaskError("read_csv", "Traceback (most recent call last): ...", KeyboardInterrupt())
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("the executor shut down while a task was being submitted") from None


@pytest.mark.parametrize("how", ["wrapped", "context"])
def test_ctrl_c_wrapped_by_ray_is_an_interruption_not_a_failure(tmp_path: Path, how: str) -> None:
    """Ctrl-C in the snapshot step, 2 tries in 7: 'snapshot failed after 1.2s: KeyboardInterrupt',
    the run recorded as failed and exit 1, because Ray had wrapped the interrupt."""
    cfg = parse_config(yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text()), "p.yaml")
    ctx = RunContext(cfg, Store.open(tmp_path / "home"), progress=[].append)
    with pytest.raises(KeyboardInterrupt, match="interrupted during step 'validate'"):
        Runner(ctx, [Interrupted(how)], groups=[]).run()
    record = get_run(Store.open(tmp_path / "home").metadata, ctx.run_id)
    assert record["status"] == "interrupted"
    step = next(s for s in record["steps"] if s["name"] == "validate")
    assert step["status"] == "interrupted", step  # the step too, not "failed"


@pytest.mark.parametrize(("version", "noted"), [(1, False), (2, True)])
def test_a_champion_moved_without_deploying_says_how_live_routes_follow(tmp_path: Path, version: int,
                                                                        noted: bool) -> None:
    """After a run with serve.enabled false moved the champion, the note named `models promote`,
    which without the cluster's address answers "already ...: nothing changed"; on a first version
    there is no earlier champion to speak of."""
    from types import SimpleNamespace

    from raymlops.pipeline.results import StepResult
    from raymlops.pipeline.serve_steps import DeployIn, DeployStep

    lines: list[str] = []
    ctx = RunContext(config(), Store.open(tmp_path / "home"), progress=lines.append)
    ctx.step = StepResult("deploy", "running", 0.0)
    ctx.result.steps.append(StepResult("register", "ran", 0.0))
    v = SimpleNamespace(name="breast-cancer", id=f"breast-cancer:v{version}", version=version)
    why = DeployStep().skip(ctx, DeployIn("s", [], SimpleNamespace(passed=True, version=v)))
    assert why == "serve.enabled is false"
    note = [line for line in lines if line.startswith("note:")]
    assert bool(note) == noted, lines
    if noted:
        assert f"RAY_ADDRESS=<its cluster> raymlops models promote breast-cancer:v{version}" in note[0]

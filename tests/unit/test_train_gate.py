"""The gate on crafted evaluations (absolute, champion-relative, slice floors, fairness) and the
holdout evaluation with slices, without Ray."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from raymlops.config import GateConfig
from raymlops.train.evaluate import Evaluation, SliceResult, evaluate_model, slice_labels
from raymlops.train.gate import evaluate_gate, gate


def _slice(value: str, rows: int, fair: float, **metrics: float) -> SliceResult:
    return SliceResult("group", value, rows, dict(metrics), fair, rows >= 10)


def _evaluation(**overall: float) -> Evaluation:
    slices = (
        _slice("a", 50, 0.40, accuracy=0.93, roc_auc=0.97),
        _slice("b", 40, 0.46, accuracy=0.86, roc_auc=0.91),
        _slice("c", 5, 0.90, accuracy=0.20, roc_auc=0.50),  # too small to count
    )
    return Evaluation("classification", overall or {"roc_auc": 0.95, "accuracy": 0.9}, slices, 0.06,
                      "positive_rate", {"group": 0.06})


def _gate(**kw: Any) -> GateConfig:
    return GateConfig.model_validate({"slices": ["group"], **kw})


# ------------------------------------------------------------------------- champion-relative rules


@pytest.mark.parametrize(
    ("rule", "candidate", "champion", "passed", "threshold"),
    [
        ({"metric": "roc_auc"}, 0.95, 0.95, True, 0.95),  # at least as good
        ({"metric": "roc_auc"}, 0.949, 0.95, False, 0.95),
        ({"metric": "roc_auc", "min_absolute_change": 0.01}, 0.959, 0.95, False, 0.96),
        ({"metric": "roc_auc", "min_absolute_change": 0.01}, 0.961, 0.95, True, 0.96),
        ({"metric": "roc_auc", "min_relative_change": 0.05}, 0.99, 0.95, False, 0.9975),
        ({"metric": "roc_auc", "min_absolute_change": 0.01, "min_relative_change": 0.001}, 0.9605, 0.95, True, 0.96),
        ({"metric": "log_loss", "min_absolute_change": 0.02}, 0.29, 0.30, False, 0.28),  # lower is better
        ({"metric": "log_loss", "min_absolute_change": 0.02}, 0.27, 0.30, True, 0.28),
        ({"metric": "log_loss", "min_relative_change": 0.1}, 0.26, 0.30, True, 0.27),
    ],
)
def test_champion_rule_needs_the_candidate_to_beat_the_champion_by_both_changes(
    rule: dict[str, Any], candidate: float, champion: float, passed: bool, threshold: float
) -> None:
    cfg = GateConfig.model_validate({"rules": [rule]})
    metric = rule["metric"]
    verdict = gate(cfg, Evaluation("classification", {metric: candidate}), {metric: champion})
    (r,) = verdict.rules
    assert (verdict.passed, r.passed, r.kind) == (passed, passed, "champion")
    assert r.value == candidate and r.champion == champion
    assert r.threshold == pytest.approx(threshold)
    if not passed:
        assert verdict.reasons == [f"{r.rule} failed: {metric} = {candidate:.4f} (champion {champion:.4f}, "
                                   f"needed {threshold:.4f})"]


def test_without_a_champion_the_champion_rule_passes_and_says_so() -> None:
    cfg = GateConfig.model_validate({"rules": [{"metric": "roc_auc", "min_absolute_change": 0.5}]})
    (r,) = gate(cfg, Evaluation("classification", {"roc_auc": 0.6}), None).rules
    assert r.passed and r.champion is None and r.threshold is None and "no champion" in r.note
    (r,) = gate(cfg, Evaluation("classification", {"roc_auc": 0.6}), {"accuracy": 0.9}).rules
    assert r.passed and "champion has no roc_auc" in r.note
    (r,) = gate(cfg, Evaluation("classification", {"accuracy": 0.6}), None).rules  # but the candidate must have it
    assert not r.passed


# ------------------------------------------------------------------------- slice floors and fairness


def test_slice_floor_holds_on_every_counted_slice_and_names_the_worst() -> None:
    ok = gate(_gate(rules=[{"metric": "accuracy", "slice_min": 0.85}]), _evaluation(), None)
    (r,) = ok.rules
    assert ok.passed and r.kind == "slice" and r.value == 0.86 and r.slice == "group=b"
    assert "2 slices checked" in r.note  # slice c (5 rows) is not held to it
    bad = gate(_gate(rules=[{"metric": "accuracy", "slice_min": 0.9}]), _evaluation(), None)
    assert not bad.passed
    assert bad.reasons == ["accuracy >= 0.9 on every slice failed: accuracy = 0.8600 on slice group=b"]


def test_slice_ceiling_for_an_error_metric() -> None:
    slices = (SliceResult("g", "x", 30, {"mae": 1.0}, 1.0, True), SliceResult("g", "y", 30, {"mae": 3.0}, 3.0, True))
    ev = Evaluation("regression", {"mae": 2.0}, slices, 2.0, "mae", {"g": 2.0})
    cfg = GateConfig.model_validate({"slices": ["g"], "rules": [{"metric": "mae", "slice_max": 2.5}]})
    (r,) = gate(cfg, ev, None).rules
    assert not r.passed and r.value == 3.0 and r.slice == "g=y"


def test_a_slice_rule_without_any_counted_slice_fails() -> None:
    ev = Evaluation("classification", {"accuracy": 0.9}, (_slice("c", 5, 0.5, accuracy=0.99),), 0.0,
                    "positive_rate", {"group": 0.0})
    (r,) = gate(_gate(rules=[{"metric": "accuracy", "slice_min": 0.5}]), ev, None).rules
    assert not r.passed and r.value is None and "no slice with enough rows" in r.note


@pytest.mark.parametrize(("ceiling", "passed"), [(0.1, True), (0.06, True), (0.05, False)])
def test_fairness_gap_ceiling(ceiling: float, passed: bool) -> None:
    verdict = gate(_gate(fairness_gap_max=ceiling), _evaluation(), None)
    (r,) = verdict.rules
    assert verdict.passed is passed and r.kind == "fairness" and r.value == 0.06 and r.slice == "group"
    assert r.threshold == ceiling and "positive_rate" in r.note


def test_verdict_lists_every_rule_and_serializes_to_strict_json() -> None:
    cfg = _gate(
        fairness_gap_max=0.05,
        rules=["roc_auc >= 0.9", "accuracy >= 0.95", {"metric": "roc_auc", "min_absolute_change": 0.0},
               {"metric": "accuracy", "slice_min": 0.85}],
    )
    verdict = gate(cfg, _evaluation(), {"roc_auc": 0.97})
    assert [(r.kind, r.passed) for r in verdict.rules] == [
        ("absolute", True), ("absolute", False), ("champion", False), ("slice", True), ("fairness", False)
    ]
    assert verdict.status == "rejected" and len(verdict.reasons) == 3
    data = verdict.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["rules"][0] == {"rule": "roc_auc >= 0.9", "metric": "roc_auc", "value": 0.95, "threshold": 0.9,
                                "passed": True}
    assert data["rules"][2]["champion"] == 0.97 and data["rules"][2]["kind"] == "champion"
    assert data["rules"][3]["slice"] == "group=b"
    # the old call still works on the absolute rules
    assert evaluate_gate(cfg.parsed(), {"roc_auc": 0.95, "accuracy": 0.96}).passed


# ------------------------------------------------------------------------- evaluation with slices


class _Threshold:
    """A fixed 'model': predicts 1 when x0 > 0, probability from x0."""

    classes_ = np.array([0, 1])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (X[:, 0] > 0).astype(int)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-X[:, 0]))
        return np.column_stack([1 - p, p])


def test_evaluate_model_slices_metrics_and_positive_rate_gap() -> None:
    X = np.array([[-1.0], [2.0], [3.0], [-2.0], [1.0], [1.5], [-0.5], [-3.0]])
    y = np.array([0, 1, 0, 0, 1, 1, 0, 0])
    group = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    ev = evaluate_model(_Threshold(), X, y, "classification", {"group": group}, min_slice_rows=1)
    a, b = ev.slices
    assert (a.name, a.rows, b.name, b.rows) == ("group=a", 4, "group=b", 4)
    assert a.metrics["accuracy"] == 0.75 and b.metrics["accuracy"] == 1.0
    assert (a.fairness_value, b.fairness_value) == (0.5, 0.5)
    assert ev.fairness_gap == 0.0 and ev.fairness_measure == "positive_rate"
    assert ev.metrics["accuracy"] == pytest.approx(7 / 8)
    skewed = evaluate_model(_Threshold(), X, y, "classification", {"first": np.arange(8) < 3}, min_slice_rows=1)
    assert skewed.fairness_gap == pytest.approx(2 / 3 - 2 / 5)
    # too-small slices are reported but do not count for the gap: with fewer than two counted, it is
    # not measured (it read 0.0, and fairness_gap_max: 0 passed a check that was never made)
    small = evaluate_model(_Threshold(), X, y, "classification", {"first": np.arange(8) < 3}, min_slice_rows=4)
    assert [s.counted for s in small.slices] == [True, False] and small.fairness_gap is None
    rule = gate(GateConfig.model_validate({"slices": ["first"], "fairness_gap_max": 0.0}), small).rules[0]
    assert not rule.passed and rule.value is None and "not measured" in rule.note
    json.dumps(ev.to_dict(), allow_nan=False)


def test_evaluate_model_regression_gap_is_in_mean_absolute_error() -> None:
    class Zero:
        def predict(self, X: np.ndarray) -> np.ndarray:
            return np.zeros(len(X))

    y = np.array([1.0, -1.0, 3.0, 3.0])
    ev = evaluate_model(Zero(), np.zeros((4, 1)), y, "regression", {"g": np.array([0, 0, 1, 1])}, min_slice_rows=1)
    assert [s.metrics["mae"] for s in ev.slices] == [1.0, 3.0] and ev.fairness_gap == 2.0
    assert ev.fairness_measure == "mae" and ev.metrics["mae"] == 2.0


def test_slice_labels_are_bounded() -> None:
    rng = np.random.default_rng(0)
    labels, names = slice_labels(rng.normal(size=1000), max_slices=4)
    assert len(names) == 4 and names[0].startswith("[") and names[-1].endswith("]")
    assert set(labels) == set(names) and all(200 <= (labels == n).sum() <= 300 for n in names)
    words = np.array(["x"] * 50 + ["y"] * 30 + ["z"] * 10 + [f"w{i}" for i in range(10)])
    labels, names = slice_labels(words, max_slices=3)
    assert names == ["x", "y", "other"] and (labels == "other").sum() == 20
    labels, names = slice_labels(np.array([1.0, 2.0, np.nan, 1.0]), max_slices=5)
    assert names == ["1", "2", "(missing)"] and labels.tolist() == ["1", "2", "(missing)", "1"]


def test_string_class_labels() -> None:
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0], [0.5], [2.5]])
    y = np.array(["no", "no", "yes", "yes", "no", "yes"])
    model = LogisticRegression().fit(X, y)
    ev = evaluate_model(model, X, y, "classification", {"g": np.array([0, 0, 0, 1, 1, 1])}, min_slice_rows=1)
    assert ev.metrics["precision"] == 1.0 and ev.metrics["roc_auc"] == 1.0
    assert [s.fairness_value for s in ev.slices] == [pytest.approx(1 / 3), pytest.approx(2 / 3)]


def test_gate_rules_are_typed_by_their_form_and_read_back_exactly_from_a_dump() -> None:
    from raymlops.config.gate import AbsoluteRule, ChampionRule, SliceRule

    written = {"slices": ["sex"], "rules": [
        "roc_auc >= 0.123456789", {"metric": "accuracy"}, {"metric": "f1", "min_relative_change": 0.01},
        {"metric": "accuracy", "slice_min": 0.8}, {"metric": "log_loss", "slice_max": 0.7}]}
    cfg = GateConfig.model_validate(written)
    assert [type(r) for r in cfg.rules] == [AbsoluteRule, ChampionRule, ChampionRule, SliceRule, SliceRule]
    assert cfg.parsed() == [("roc_auc", ">=", 0.123456789)]
    assert [(r.metric, r.min_relative_change) for r in cfg.champion_rules()] == [("accuracy", 0.0), ("f1", 0.01)]
    assert [(r.metric, r.bound, r.threshold) for r in cfg.slice_rules()] == [("accuracy", "min", 0.8),
                                                                             ("log_loss", "max", 0.7)]
    dumped = cfg.model_dump(mode="json")
    assert dumped["rules"][0] == "roc_auc >= 0.123456789"  # the form it was written in, every digit kept
    assert dumped["rules"][3:] == [{"metric": "accuracy", "slice_min": 0.8}, {"metric": "log_loss", "slice_max": 0.7}]
    assert GateConfig.model_validate(json.loads(json.dumps(dumped))) == cfg


def test_rules_given_through_model_copy_are_applied_not_skipped() -> None:
    # model_copy(update=...) does not validate: the written forms must still be applied
    rules = ["roc_auc >= 0.99", {"metric": "accuracy", "min_absolute_change": 1}]
    cfg = GateConfig().model_copy(update={"rules": rules})
    assert cfg.parsed() == [("roc_auc", ">=", 0.99)]
    verdict = gate(cfg, Evaluation("classification", {"roc_auc": 0.95, "accuracy": 0.9}), {"accuracy": 0.5})
    assert not verdict.passed and len(verdict.rules) == 2


def test_a_class_the_model_never_saw_is_a_wrong_answer_not_a_crash() -> None:
    """One 'lynx' row in the validation or holdout rows (or new data scored by the champion at the
    gate) made every metric call raise "'y_true' contains labels not in parameter 'labels'" (every
    Tune trial failed; evaluate and the gate crashed). And a class absent from a small holdout was
    averaged in as an f1 of 0, so a perfect model scored 0.33."""
    from sklearn import metrics
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from raymlops.train.evaluate import classification_metrics

    X, y = load_iris(return_X_y=True)
    names = np.array(["cat", "dog", "bird"])[y]
    model = LogisticRegression(max_iter=1000).fit(X, names)
    truth = names.copy()
    truth[0] = "lynx"
    out = classification_metrics(model, X, truth)
    assert out["accuracy"] == pytest.approx(metrics.accuracy_score(truth, model.predict(X)))
    assert "roc_auc" not in out  # undefined with a class the model cannot score
    proba = model.predict_proba(X)  # the lynx row: the smallest probability, as log_loss clips a 0
    known = metrics.log_loss(names[1:], proba[1:], labels=model.classes_) * 149
    assert out["log_loss"] == pytest.approx((known - np.log(np.finfo(np.float64).eps)) / 150, rel=1e-6)
    assert out["f1"] == pytest.approx(metrics.f1_score(truth, model.predict(X), average="macro", zero_division=0))
    only_cats = classification_metrics(model, X[:10], names[:10])  # a holdout of one class, all right
    assert only_cats["accuracy"] == only_cats["f1"] == only_cats["precision"] == only_cats["recall"] == 1.0
    binary = LogisticRegression(max_iter=1000).fit(X[:100], names[:100])  # cat / dog; a bird is not a dog
    two = classification_metrics(binary, X[:100], np.where(np.arange(100) == 0, "bird", names[:100]))
    assert two["f1"] == 1.0 and two["accuracy"] == 0.99 and "roc_auc" not in two

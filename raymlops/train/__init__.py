"""Training: search spaces, Ray Tune / data-parallel training, holdout evaluation and the gate.

    from raymlops.train import evaluate_model, fit, gate

    model, summary = fit(config.train, X_train, y_train, seed=config.seed, storage_path=..., name=...)
    evaluation = evaluate_model(model, X_holdout, y_holdout, config.train.task, slices={...})
    verdict = gate(config.gate, evaluation, champion_metrics)
"""

from raymlops.train.evaluate import Evaluation, SliceResult, evaluate_model
from raymlops.train.gate import GateVerdict, RuleResult, evaluate_gate, gate
from raymlops.train.trainer import fit, refit
from raymlops.train.tune_runner import TrialRecord, TuneSummary

__all__ = [
    "Evaluation",
    "GateVerdict",
    "RuleResult",
    "SliceResult",
    "TrialRecord",
    "TuneSummary",
    "evaluate_gate",
    "evaluate_model",
    "fit",
    "gate",
    "refit",
]

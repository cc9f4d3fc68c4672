"""``retrain:``: when the closed loop retrains, and how a retrained model is promoted."""

from __future__ import annotations

from pydantic import (
    Field,
    field_validator,
)

from raymlops.config.base import FUNC_REF, Strict

#: the kinds of alert the monitor raises (``raymlops.monitor.alerts.Alert.kind``); a trigger names one or a group
ALERT_KINDS = (
    "dataset_drift", "feature_drift", "slice_drift", "prediction_drift", "anomaly", "performance",
    "differential", "bias", "slo_burn", "estimated_performance",
)
RETRAIN_TRIGGER_GROUPS = {
    "drift": ("dataset_drift", "feature_drift", "slice_drift", "prediction_drift"),
    "performance": ("performance",),
}


class RetrainPromoteConfig(Strict):
    """``retrain.promote``: what the shadow challenger must show before it becomes champion. The
    challenger's own gate has passed already (a rejected model is never deployed)."""

    min_agreement: float = Field(0.5, ge=0.0, le=1.0, description="share of shadow rows where it agrees with the "
                                 "champion (a challenger that disagrees on more is too different to swap in blind)")
    max_prediction_distance: float | None = Field(
        None, gt=0.0, le=1.0, description="Jensen-Shannon distance of the two prediction distributions (monitor)")
    max_errors: int = Field(0, ge=0, description="shadow requests the challenger failed on")
    beat_champion: bool = Field(True, description="on the fresh snapshot's holdout the challenger scores at least as "
                                "well as the champion on train.metric")
    min_improvement: float = Field(0.0, ge=0.0, description="with beat_champion: by at least this much")
    allow_differential_alerts: bool = Field(True, description="false: a differential alert on the challenger "
                                            "refuses promotion")


class RetrainConfig(Strict):
    """``retrain``: the closed loop. An alert of a ``triggers`` kind on the route's monitor starts
    one cycle: a fresh snapshot of ``source`` (default ``data.source``), training, the gate, the
    new version as shadow challenger, ``shadow_rows`` compared rows, then promotion when the
    ``promote`` rules pass, else the challenger is retired. Every step is an audit record whose
    reason is the alert (see :mod:`raymlops.loop`)."""

    enabled: bool = Field(False, description="let alerts start retraining (raymlops retrain watch)")
    triggers: list[str] = Field(default_factory=lambda: ["dataset_drift", "performance"], min_length=1,
                                description="alert kinds that start a cycle; 'drift' = every drift kind")
    cooldown_s: float = Field(600.0, ge=0.0, description="no new cycle within this time of the last one")
    source: str | None = Field(None, description="URI of the fresh data (default: data.source)")
    shadow_rows: int = Field(200, ge=1, description="challenger rows compared in shadow before deciding")
    shadow_timeout_s: float = Field(300.0, gt=0.0, description="fewer rows by then: the challenger is retired")
    rebaseline: bool = Field(True, description="after promotion the monitor's reference becomes the new "
                             "champion's training data")
    interval_s: float = Field(5.0, gt=0.0, description="how often the watcher reads the monitor's alerts")
    promote: RetrainPromoteConfig = Field(default_factory=RetrainPromoteConfig)

    @field_validator("triggers")
    @classmethod
    def _known_kinds(cls, v: list[str]) -> list[str]:
        known = tuple(dict.fromkeys((*RETRAIN_TRIGGER_GROUPS, *ALERT_KINDS)))
        for kind in v:
            if kind not in known:
                raise ValueError(f"expected alert kinds among {', '.join(known)}, found {kind!r}")
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.strip():
            raise ValueError("expected a non-empty URI")
        if v.startswith("callable:") and not FUNC_REF.match(v.removeprefix("callable:").strip()):
            raise ValueError("expected 'callable:module:function', e.g. 'callable:mypkg.data:load'")
        return v

    def trigger_kinds(self) -> frozenset[str]:
        """The alert kinds that start a cycle, groups expanded."""
        out: set[str] = set()
        for kind in self.triggers:
            out.update(RETRAIN_TRIGGER_GROUPS.get(kind, (kind,)))
        return frozenset(out)

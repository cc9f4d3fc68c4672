"""The retraining policy (pure: no Ray, clock injected): which alert starts a cycle, the
cooldown between cycles, and whether a shadow challenger is promoted or retired.

- :class:`Trigger` is why a cycle runs: an alert of the route's monitor (``kind``, ``key``,
  ``message``), or a person (``raymlops retrain run --reason``). Its :attr:`Trigger.reason` is
  the *why* of every audit record the cycle writes.
- :class:`RetrainPolicy` picks the first new alert of a ``retrain.triggers`` kind (critical
  ones first) and refuses while a cycle ran within ``retrain.cooldown_s``.
- :func:`evidence_from` sums what the shadow deployment showed (the serving side's shadow log
  and the monitor's differential check); :func:`decide` holds that :class:`Evidence` to the
  ``retrain.promote`` rules and says promote or retire, with one line per rule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from raymlops.config import LOWER_IS_BETTER, RetrainConfig

__all__ = ["Check", "Decision", "Evidence", "RetrainPolicy", "Trigger", "decide", "evidence_from"]

_SEVERITY = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Trigger:
    """Why a retraining cycle runs: an alert (``kind`` is its kind) or a person (``manual``)."""

    kind: str
    key: str
    message: str
    ts: float
    severity: str = "warning"
    slice: str = "all"
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_alert(cls, alert: Mapping[str, Any]) -> Trigger:
        """From an alert as the monitor reports it (``Alert.to_dict()``)."""
        return cls(kind=str(alert["kind"]), key=str(alert["key"]), message=str(alert.get("message", "")),
                   ts=float(alert.get("ts") or 0.0), severity=str(alert.get("severity", "warning")),
                   slice=str(alert.get("slice", "all")), details=dict(alert.get("details") or {}))

    @classmethod
    def manual(cls, reason: str, clock: Callable[[], float] = time.time) -> Trigger:
        return cls(kind="manual", key="manual", message=reason, ts=clock(), severity="info")

    @property
    def reason(self) -> str:
        """The audit records' *why*: ``alert dataset_drift: 3 of 5 features drifted ...``."""
        if self.kind == "manual":
            return f"manual: {self.message}"
        return f"alert {self.key}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RetrainPolicy:
    """Which alerts start a cycle, and when (see the module docstring).

    ``since``: alerts raised before this time are history, not news (a watcher started now
    does not retrain on yesterday's alert). Each alert is considered once (by key and time).
    """

    def __init__(self, config: RetrainConfig, clock: Callable[[], float] = time.time,
                 since: float | None = None) -> None:
        self.config = config
        self.clock = clock
        self.since = since
        self.kinds = config.trigger_kinds()
        self.last_cycle: float | None = None
        self.seen: set[tuple[str, float]] = set()
        self.suppressed: list[Trigger] = []  # triggering alerts refused by the cooldown

    def cooling_down(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        return self.last_cycle is not None and now - self.last_cycle < self.config.cooldown_s

    def started(self, now: float | None = None) -> None:
        """A cycle starts now: the cooldown runs from here."""
        self.last_cycle = self.clock() if now is None else now

    def pick(self, alerts: Iterable[Mapping[str, Any]]) -> Trigger | None:
        """The alert that starts a cycle now, or None. Every alert offered is marked seen."""
        fresh: list[Trigger] = []
        for raw in alerts:
            t = Trigger.from_alert(raw)
            ident = (t.key, t.ts)
            if ident in self.seen:
                continue
            self.seen.add(ident)
            if self.since is not None and t.ts < self.since:
                continue
            if t.kind in self.kinds:
                fresh.append(t)
        if not fresh:
            return None
        if self.cooling_down():
            self.suppressed.extend(fresh)
            del self.suppressed[:-100]
            return None
        fresh.sort(key=lambda t: (_SEVERITY.get(t.severity, 3), t.ts))
        return fresh[0]


@dataclass(frozen=True)
class Evidence:
    """What the cycle learned about the challenger before deciding."""

    challenger: str
    champion: str
    rows: int = 0  # shadow rows answered by both
    agreement: float | None = None  # share of those rows with the same prediction
    errors: int = 0  # shadow requests the challenger failed on
    prediction_distance: float | None = None  # the monitor's Jensen-Shannon distance
    monitor_pairs: int = 0  # pairs the monitor's differential check matched by request id
    differential_alerts: tuple[str, ...] = ()
    metric: str | None = None
    champion_score: float | None = None  # on the fresh snapshot's holdout
    challenger_score: float | None = None
    waited_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["differential_alerts"] = list(self.differential_alerts)
        return d


@dataclass(frozen=True)
class Check:
    rule: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    promote: bool
    checks: tuple[Check, ...]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.promote:
            return "every promotion rule passed"
        return "; ".join(c.detail for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "checks": [asdict(c) for c in self.checks]}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def decide(evidence: Evidence, config: RetrainConfig) -> Decision:
    """Promote when every rule of ``retrain.promote`` holds (and enough rows were compared)."""
    rules = config.promote
    e = evidence
    checks = [Check("shadow_rows", e.rows >= config.shadow_rows,
                    f"{e.rows} shadow rows compared (need {config.shadow_rows})")]
    checks.append(Check("max_errors", e.errors <= rules.max_errors,
                        f"{e.errors} failed shadow requests (at most {rules.max_errors})"))
    ok = e.agreement is not None and e.agreement >= rules.min_agreement
    checks.append(Check("min_agreement", ok, f"agreement with the champion {_fmt(e.agreement)} "
                                             f"(at least {rules.min_agreement:.3f})"))
    if rules.max_prediction_distance is not None:
        d = e.prediction_distance
        ok = d is not None and math.isfinite(d) and d <= rules.max_prediction_distance
        checks.append(Check("max_prediction_distance", ok, f"prediction distance {_fmt(d)} "
                                                           f"(at most {rules.max_prediction_distance:.3f})"))
    if not rules.allow_differential_alerts:
        checks.append(Check("differential_alerts", not e.differential_alerts,
                            f"{len(e.differential_alerts)} differential alerts"
                            + (f" ({', '.join(e.differential_alerts)})" if e.differential_alerts else "")))
    if rules.beat_champion:
        a, b = e.challenger_score, e.champion_score
        lower = e.metric in LOWER_IS_BETTER
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            ok = False
        else:
            ok = (b - a >= rules.min_improvement) if lower else (a - b >= rules.min_improvement)
        better = "lower" if lower else "higher"
        checks.append(Check("beat_champion", ok, f"{e.metric} on the fresh holdout: challenger {_fmt(a)} vs champion "
                                                 f"{_fmt(b)} ({better} is better, margin {rules.min_improvement})"))
    return Decision(all(c.passed for c in checks), tuple(checks))


def evidence_from(challenger: str, champion: str, shadow_log: Iterable[Mapping[str, Any]],
                  monitor_status: Mapping[str, Any] | None, since: float = 0.0, **scores: Any) -> Evidence:
    """Sum the serving side's shadow records of ``challenger`` (taken at or after ``since``)
    and the monitor's differential section into :class:`Evidence`. ``scores``: ``metric``,
    ``champion_score``, ``challenger_score``, ``waited_s``."""
    rows = errors = 0
    agreeing = 0.0
    for rec in shadow_log:
        if rec.get("challenger") != challenger or float(rec.get("ts") or 0.0) < since:
            continue
        if "error" in rec:
            errors += 1
            continue
        n = int(rec.get("rows") or 0)
        rows += n
        agreeing += float(rec.get("agreement") or 0.0) * n
    distance: float | None = None
    pairs = 0
    alerts: list[str] = []
    if monitor_status:
        diff = monitor_status.get("differential") or {}
        pairs = int(diff.get("pairs") or 0)
        last = diff.get("last_window") or {}
        found = (last.get("challengers") or {}).get(challenger) or {}
        value = found.get("prediction_distance")
        if isinstance(value, int | float) and math.isfinite(value):
            distance = float(value)
        pairs += int(last.get("pairs") or 0) if last.get("challengers", {}).get(challenger) else 0
        recent = (monitor_status.get("alerts") or {}).get("recent") or []
        for a in recent:
            if a.get("kind") == "differential" and float(a.get("ts") or 0.0) >= since:
                alerts.append(str(a.get("key")))
    return Evidence(challenger=challenger, champion=champion, rows=rows,
                    agreement=(agreeing / rows) if rows else None, errors=errors, prediction_distance=distance,
                    monitor_pairs=pairs, differential_alerts=tuple(dict.fromkeys(alerts)),
                    metric=scores.get("metric"), champion_score=scores.get("champion_score"),
                    challenger_score=scores.get("challenger_score"), waited_s=float(scores.get("waited_s", 0.0)))

"""The closed loop: alerts of a live route's monitor start retraining on fresh data, the new
version is compared in shadow, and promoted or retired by the rules in ``retrain:``.

:mod:`.policy` is pure (which alert triggers, cooldown, promote or retire);
:mod:`.controller` talks to Ray (one cycle, and the watcher); :mod:`.demo` is ``raymlops demo``.
"""

from raymlops.loop.policy import Check, Decision, Evidence, RetrainPolicy, Trigger, decide, evidence_from

__all__ = ["Check", "Decision", "Evidence", "RetrainPolicy", "Trigger", "decide", "evidence_from"]

"""Labels of the rows a challenger answered: a canary's share of the traffic, scored per version.

The champion's labelled rows feed the performance windows, baseline, change detectors and
estimates (:class:`~raymlops.monitor.performance.PerformanceTracker`). A canary answers a share of
the requests itself, and a label for one of those rows is ground truth about the canary: it is
joined here with the canary's prediction (by row key, like the champion's) and counted for that
version alone (labels and accuracy, or mean absolute error for a regression), so that the
canary's real quality can be read beside the champion's before it is promoted. A label that came
before its row waits with the champion's early labels and is joined when the row comes.

Bounded: the newest ``size`` rows are kept (the oldest are forgotten first, and counted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from raymlops.monitor.labels import put_newest

__all__ = ["ChallengerLabels"]


class ChallengerLabels:
    """Rows a challenger answered, by row key, until their label comes; per-version scores."""

    def __init__(self, size: int, regression: bool) -> None:
        self.size = size
        self.regression = regression
        self.items: dict[str, tuple[str, Any]] = {}  # row key -> (version, prediction), oldest first
        self.evicted = 0
        self.scores: dict[str, list[float]] = {}  # version -> [labels, correct answers or absolute error sum]

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, key: object) -> bool:
        return key in self.items

    def put(self, version: str, keys: list[str], predictions: list[Any]) -> None:
        self.evicted += put_newest(self.items, dict(zip(keys, zip([version] * len(keys), predictions, strict=True),
                                                        strict=True)), self.size)[0]

    def pop(self, key: str) -> tuple[str, Any] | None:
        return self.items.pop(key, None)

    def score(self, version: str, prediction: Any, label: Any, same: Callable[[Any, Any], bool]) -> None:
        """Count one label of ``version``'s row (``label`` already checked by the caller)."""
        tally = self.scores.setdefault(version, [0.0, 0.0])
        tally[0] += 1
        tally[1] += abs(float(prediction) - float(label)) if self.regression else float(same(prediction, label))

    def status(self) -> dict[str, dict[str, float]]:
        """Per version: ``labels`` and ``accuracy`` (classification) or ``mae`` (regression)."""
        metric = "mae" if self.regression else "accuracy"
        return {v: {"labels": int(n), metric: total / n} for v, (n, total) in sorted(self.scores.items()) if n}

    # -- the monitor's checkpoint (JSON) ----------------------------------------------------------
    def to_dict(self, view: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"evicted": self.evicted, "scores": self.scores, "rows": len(self.items)}
        if not view:
            out["items"] = [[k, v, p] for k, (v, p) in self.items.items()]
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None, size: int, regression: bool) -> ChallengerLabels:
        out = cls(size, regression)
        if doc:
            out.items = {str(k): (str(v), p) for k, v, p in doc.get("items") or []}
            out.evicted = int(doc.get("evicted", 0))
            out.scores = {str(v): [float(x) for x in t] for v, t in (doc.get("scores") or {}).items()}
        return out

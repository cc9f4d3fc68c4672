"""Change detectors on a stream of numbers (pure Python: no Ray, no numpy per value).

Fed the per-row error of a model (1 - correct for a classifier, the absolute error, scaled, for a
regressor) they find concept drift within a few hundred labels instead of whole windows:

- :class:`ADWIN` (Bifet & Gavaldà, *Learning from time-changing data with adaptive windowing*,
  SDM 2007; ADWIN2 with exponential-histogram buckets). It keeps a window of the recent values in
  buckets of 1, 2, 4, ... values (at most ``max_buckets`` of each size, so O(log n) memory) and,
  every ``clock`` values, drops the oldest values while some split of the window into an older and
  a newer part has means further apart than the Hoeffding-style bound ``eps_cut`` at confidence
  ``delta``. A change is an increase when the newer part's mean is the higher one. With
  ``reset_after_change`` (the default, as river does) the window then starts empty, so one change
  gives one detection; without, it keeps the newer part and goes on cutting while the change lasts.
- :class:`PageHinkley` (Page 1954; Hinkley 1971): the cumulative sum of ``x - mean - delta``
  (fading by ``alpha``) against its running minimum; a gap over ``threshold`` is an increase of
  the mean. One-sided: errors going up. It restarts after each detection.

Both are learned state in plain numbers and lists: :meth:`state` is JSON-able (with a format
version) and :func:`detector_from_state` rebuilds the detector; pickling goes through the same
state, so a checkpoint never holds the class's internals.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

__all__ = ["ADWIN", "CHANGE_FORMAT", "DETECTORS", "ChangeDetector", "PageHinkley", "detector_from_state",
           "make_detector"]

CHANGE_FORMAT = "raymlops.change-detector/1"


class ChangeDetector(Protocol):
    kind: str
    n_seen: int
    detections: int
    increases: int
    last_detection: int | None
    last_increase: bool
    last_before: float
    last_after: float

    def update(self, x: float) -> bool: ...

    @property
    def mean(self) -> float: ...

    def state(self) -> dict[str, Any]: ...

    def summary(self) -> dict[str, Any]: ...


class _Base:
    kind = ""
    _params: tuple[str, ...] = ()
    _learned: tuple[str, ...] = ()

    n_seen: int
    detections: int
    increases: int
    last_detection: int | None
    last_increase: bool

    def _reset_counts(self) -> None:
        self.n_seen = 0  # values seen in all (not reset by a detection)
        self.detections = 0  # changes found, either way
        self.increases = 0  # of which the mean went up
        self.last_detection: int | None = None  # n_seen at the last change
        self.last_increase = False  # the last update's change (if any) was an increase
        self.last_before = math.nan  # the mean before and after the last change, as the detector saw them
        self.last_after = math.nan

    def state(self) -> dict[str, Any]:
        """Everything the detector knows, as JSON-able values (see :func:`detector_from_state`)."""
        learned = {k: getattr(self, k) for k in self._learned}
        for k, v in learned.items():
            if isinstance(v, float) and not math.isfinite(v):
                learned[k] = None  # strict JSON has no NaN
            elif isinstance(v, list):
                learned[k] = [list(map(list, row)) if isinstance(row, (list, tuple)) else row for row in v]
        return {"format": CHANGE_FORMAT, "kind": self.kind, "params": {k: getattr(self, k) for k in self._params},
                "state": learned}

    def _load(self, learned: dict[str, Any]) -> None:
        for k in self._learned:
            v = learned[k]
            setattr(self, k, math.nan if v is None and k.startswith("last_") and k != "last_detection" else v)

    def __getstate__(self) -> dict[str, Any]:
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        fresh = detector_from_state(state)
        self.__dict__.update(fresh.__dict__)

    def summary(self) -> dict[str, Any]:
        return {"labels": self.n_seen, "detections": self.detections, "increases": self.increases,
                "last_detection": self.last_detection, "mean": self.mean}

    @property
    def mean(self) -> float:
        raise NotImplementedError


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, found {value!r}")
    return value


class ADWIN(_Base):
    """ADaptive WINdowing (ADWIN2); ``update`` returns True when the window was cut."""

    kind = "adwin"
    _params = ("delta", "clock", "max_buckets", "min_window_length", "grace_period", "reset_after_change")
    _learned = ("width", "total", "variance", "rows", "tick", "n_seen", "detections", "increases",
                "last_detection", "last_before", "last_after")

    def __init__(self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5, min_window_length: int = 5,
                 grace_period: int = 10, reset_after_change: bool = True) -> None:
        self.delta = _positive("delta", delta)
        if self.delta >= 1:
            raise ValueError(f"delta must be < 1, found {delta!r}")
        self.clock = int(clock)
        self.max_buckets = int(max_buckets)
        self.min_window_length = int(min_window_length)
        self.grace_period = int(grace_period)
        self.reset_after_change = bool(reset_after_change)
        if self.clock < 1 or self.max_buckets < 2 or self.min_window_length < 1:
            raise ValueError("clock must be >= 1, max_buckets >= 2 and min_window_length >= 1")
        self._reset_counts()
        self._empty()

    def _empty(self) -> None:
        self.width = 0
        self.total = 0.0
        self.variance = 0.0  # sum of squared deviations from the mean over the window
        # rows[i] = [totals, variances] of the buckets holding 2**i values each, oldest first;
        # every value of row i+1 is older than every value of row i
        self.rows: list[list[list[float]]] = []
        self.tick = 0

    @property
    def mean(self) -> float:
        return self.total / self.width if self.width else math.nan

    def update(self, x: float) -> bool:
        x = float(x)
        self.n_seen += 1
        self._insert(x)
        self.tick += 1
        self.last_increase = False
        if self.tick % self.clock or self.width <= self.grace_period:
            return False
        changed = self._detect()
        if changed:
            self.detections += 1
            self.increases += int(self.last_increase)
            self.last_detection = self.n_seen
            if self.reset_after_change:
                self._empty()
        return changed

    def _insert(self, x: float) -> None:
        if self.width:
            mean = self.total / self.width
            self.variance += self.width * (x - mean) ** 2 / (self.width + 1)
        self.width += 1
        self.total += x
        if not self.rows:
            self.rows.append([[], []])
        self.rows[0][0].append(x)
        self.rows[0][1].append(0.0)
        i = 0
        while len(self.rows[i][0]) > self.max_buckets:  # merge the two oldest into the next row
            totals, variances = self.rows[i]
            n = float(2 ** i)
            t1, t2 = totals[0], totals[1]
            v = variances[0] + variances[1] + n * n * (t1 / n - t2 / n) ** 2 / (2 * n)
            del totals[:2], variances[:2]
            if i + 1 == len(self.rows):
                self.rows.append([[], []])
            self.rows[i + 1][0].append(t1 + t2)
            self.rows[i + 1][1].append(v)
            i += 1

    def _delete_oldest(self) -> int:
        i = len(self.rows) - 1
        totals, variances = self.rows[i]
        n1 = 2 ** i
        t = totals[0]
        self.width -= n1
        self.total -= t
        if self.width:
            u1 = t / n1
            self.variance -= variances[0] + n1 * self.width * (u1 - self.total / self.width) ** 2 / (n1 + self.width)
            self.variance = max(self.variance, 0.0)
        else:
            self.variance = 0.0
        del totals[0], variances[0]
        if not totals:
            self.rows.pop()
        return n1

    def _cut(self, n0: float, n1: float, u0: float, u1: float) -> bool:
        m = 1.0 / (n0 - self.min_window_length + 1) + 1.0 / (n1 - self.min_window_length + 1)
        dd = math.log(2.0 * math.log(self.width) / self.delta)
        v = self.variance / self.width
        eps = math.sqrt(2.0 * m * v * dd) + 2.0 / 3.0 * dd * m
        return abs(u0 / n0 - u1 / n1) > eps

    def _detect(self) -> bool:
        changed = False
        cutting = True
        while cutting and self.width > self.grace_period:
            cutting = False
            n0, u0 = 0.0, 0.0
            n1, u1 = float(self.width), self.total
            last_row = 0
            done = False
            for i in range(len(self.rows) - 1, -1, -1):  # oldest row first
                totals = self.rows[i][0]
                n2 = float(2 ** i)
                for k, u2 in enumerate(totals):  # oldest bucket first
                    if i == last_row and k == len(totals) - 1:  # the newest bucket: no split after it
                        done = True
                        break
                    n0 += n2
                    n1 -= n2
                    u0 += u2
                    u1 -= u2
                    if n0 >= self.min_window_length and n1 >= self.min_window_length and self._cut(n0, n1, u0, u1):
                        if not changed:
                            self.last_increase = u1 / n1 > u0 / n0
                            self.last_before, self.last_after = u0 / n0, u1 / n1
                        changed = cutting = True
                        self._delete_oldest()
                        done = True
                        break
                if done:
                    break
        return changed

    @classmethod
    def _from(cls, params: dict[str, Any], learned: dict[str, Any]) -> ADWIN:
        out = cls(**params)
        out._load(learned)
        out.rows = [[list(map(float, r[0])), list(map(float, r[1]))] for r in out.rows]
        return out


class PageHinkley(_Base):
    """One-sided Page-Hinkley test for an increase of the mean; restarts after a detection."""

    kind = "page_hinkley"
    _params = ("delta", "threshold", "alpha", "min_instances")
    _learned = ("n", "x_mean", "cum", "cum_min", "x_sum", "n_at_min", "sum_at_min", "n_seen", "detections",
                "increases", "last_detection", "last_before", "last_after")

    def __init__(self, delta: float = 0.005, threshold: float = 50.0, alpha: float = 1 - 1e-4,
                 min_instances: int = 30) -> None:
        self.delta = float(delta)
        if not (math.isfinite(self.delta) and self.delta >= 0):
            raise ValueError(f"delta must be a finite number >= 0, found {delta!r}")
        self.threshold = _positive("threshold", threshold)
        self.alpha = float(alpha)
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], found {alpha!r}")
        self.min_instances = int(min_instances)
        self._reset_counts()
        self._restart()

    def _restart(self) -> None:
        self.n = 0
        self.x_mean = 0.0
        self.cum = 0.0
        self.cum_min = 0.0
        self.x_sum = 0.0
        self.n_at_min = 0  # values up to the running minimum of the sum: before the change
        self.sum_at_min = 0.0

    @property
    def mean(self) -> float:
        return self.x_mean if self.n else math.nan

    def update(self, x: float) -> bool:
        x = float(x)
        self.n_seen += 1
        self.n += 1
        self.x_mean += (x - self.x_mean) / self.n
        self.x_sum += x
        self.cum = self.alpha * self.cum + x - self.x_mean - self.delta
        if self.cum <= self.cum_min:
            self.cum_min, self.n_at_min, self.sum_at_min = self.cum, self.n, self.x_sum
        self.last_increase = False
        if self.n >= self.min_instances and self.cum - self.cum_min > self.threshold:
            self.last_before = self.sum_at_min / self.n_at_min if self.n_at_min else math.nan
            self.last_after = (self.x_sum - self.sum_at_min) / (self.n - self.n_at_min)
            self.detections += 1
            self.increases += 1
            self.last_detection = self.n_seen
            self.last_increase = True
            self._restart()
            return True
        return False

    @classmethod
    def _from(cls, params: dict[str, Any], learned: dict[str, Any]) -> PageHinkley:
        out = cls(**params)
        out._load(learned)
        return out


DETECTORS: dict[str, type[ADWIN] | type[PageHinkley]] = {"adwin": ADWIN, "page_hinkley": PageHinkley}


def make_detector(kind: str, **params: Any) -> ChangeDetector:
    """A fresh detector of ``kind`` (``adwin`` or ``page_hinkley``) with ``params``."""
    try:
        cls = DETECTORS[kind]
    except KeyError:
        raise ValueError(f"unknown change detector {kind!r}; expected one of {', '.join(DETECTORS)}") from None
    return cls(**params)


def detector_from_state(state: dict[str, Any]) -> ChangeDetector:
    """The detector whose :meth:`~ADWIN.state` is ``state``."""
    if not isinstance(state, dict) or state.get("format") != CHANGE_FORMAT:
        raise ValueError(f"not a change-detector state (expected format {CHANGE_FORMAT!r})")
    kind = state.get("kind")
    if kind not in DETECTORS:
        raise ValueError(f"unknown change detector {kind!r}; expected one of {', '.join(DETECTORS)}")
    return DETECTORS[kind]._from(dict(state["params"]), dict(state["state"]))

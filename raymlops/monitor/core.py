"""The streaming monitor core: a reference, mergeable state on its bins, and drift verdicts.

Pure numpy/scipy; the monitor actor (the Ray adapter) owns one :class:`MonitorState`, feeds it
batches with :meth:`MonitorState.update`, merges replicas' states with
:meth:`MonitorState.merge` and asks :func:`summarize` for a :class:`DriftSummary`.

The state's memory does not grow with the rows it has seen: per feature it keeps the counts on
the reference bins, exact running sums (count, sum, sum of squares) and a bounded reservoir
sample of current values (Algorithm R), so small windows can use a sample-based test.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import NotFittedError, NotFound, ValidationError
from raymlops.stats.bins import as_float_array, bin_counts, quantile_edges
from raymlops.stats.drift import CORRECTIONS, chi2_test, correct, ks_test, psi

__all__ = [
    "CHI2_MIN_ROWS",
    "REFERENCE_SAMPLE_SIZE",
    "DriftSummary",
    "FeatureDrift",
    "FeatureReference",
    "Moments",
    "MonitorState",
    "Reference",
    "summarize",
]

#: how many reference values each feature keeps for sample-based tests
REFERENCE_SAMPLE_SIZE = 2000
#: from this many current rows on, :func:`summarize` tests binned counts (chi-square), below it
#: the reservoir sample (Kolmogorov-Smirnov)
CHI2_MIN_ROWS = 1000
_REFERENCE_FORMAT = "raymlops.reference/1"


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _frozen(values: npt.ArrayLike, dtype: type[np.generic]) -> npt.NDArray[Any]:
    arr = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


# --------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FeatureReference:
    """What the monitor remembers of one numeric reference feature.

    ``edges`` are the interior bin edges, ``ref_counts`` the reference counts on them
    (``len(edges) + 2`` buckets, the last for missing values), ``mean``/``std`` the moments of
    the finite values and ``sample`` up to :data:`REFERENCE_SAMPLE_SIZE` of them, drawn at
    random. The arrays are read-only copies.
    """

    name: str
    edges: np.ndarray
    ref_counts: np.ndarray
    mean: float
    std: float
    sample: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"feature name must be a non-empty string, got {self.name!r}")
        edges = _frozen(self.edges, np.float64)
        counts = _frozen(self.ref_counts, np.int64)
        sample = _frozen(self.sample, np.float64)
        where = f"feature {self.name!r}"
        if edges.ndim != 1 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise ValidationError(f"{where}: edges must be a finite, strictly increasing 1-D array")
        if counts.shape != (edges.size + 2,) or np.any(counts < 0) or counts.sum() == 0:
            raise ValidationError(
                f"{where}: ref_counts must be {edges.size + 2} non-negative counts (one per interval "
                f"plus missing) with a positive total, got shape {counts.shape}"
            )
        if sample.ndim != 1 or sample.size == 0 or not np.all(np.isfinite(sample)):
            raise ValidationError(f"{where}: sample must be a non-empty 1-D array of finite values")
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std >= 0):
            raise ValidationError(f"{where}: mean and std must be finite and std >= 0")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "ref_counts", counts)
        object.__setattr__(self, "sample", sample)
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "std", float(self.std))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureReference):
            return NotImplemented
        return (
            self.name == other.name
            and self.mean == other.mean
            and self.std == other.std
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.ref_counts, other.ref_counts)
            and np.array_equal(self.sample, other.sample)
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: equal by value, not hashable

    @property
    def rows(self) -> int:
        """Number of reference rows (missing included)."""
        return int(self.ref_counts.sum())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists, not arrays)."""
        return {
            "name": self.name,
            "edges": self.edges.tolist(),
            "ref_counts": self.ref_counts.tolist(),
            "mean": self.mean,
            "std": self.std,
            "sample": self.sample.tolist(),
        }


@dataclass(frozen=True)
class Reference:
    """The reference distribution of every monitored feature, keyed by feature name."""

    features: dict[str, FeatureReference]

    def __post_init__(self) -> None:
        features = dict(self.features)
        if not features:
            raise ValidationError("a reference needs at least one feature")
        for key, feature in features.items():
            if not isinstance(feature, FeatureReference) or feature.name != key:
                raise ValidationError(f"features[{key!r}] must be a FeatureReference named {key!r}")
        object.__setattr__(self, "features", features)

    @classmethod
    def from_columns(cls, columns: Mapping[str, npt.ArrayLike], n_bins: int = 10, seed: int = 0) -> Reference:
        """Build a reference from equal-length numeric columns (NaN/None count as missing).

        Each feature gets up to ``n_bins`` quantile bins and a sample of up to
        :data:`REFERENCE_SAMPLE_SIZE` finite values drawn with ``numpy.random.default_rng(seed)``.
        """
        n_bins = _check_int(n_bins, "n_bins", 1)
        seed = _check_int(seed, "seed", 0)
        arrays = _numeric_columns(columns)
        if not arrays:
            raise ValidationError("columns is empty; a reference needs at least one feature")
        rng = np.random.default_rng(seed)
        features: dict[str, FeatureReference] = {}
        for name, values in arrays.items():
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                raise ValidationError(f"column {name!r} has no finite values to build a reference from")
            edges = quantile_edges(finite, n_bins)
            size = min(REFERENCE_SAMPLE_SIZE, finite.size)
            features[name] = FeatureReference(
                name=name,
                edges=edges,
                ref_counts=bin_counts(values, edges),
                mean=float(finite.mean()),
                std=float(finite.std()),
                sample=rng.choice(finite, size=size, replace=False),
            )
        return cls(features)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.features)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` reads it back."""
        return {"format": _REFERENCE_FORMAT, "features": [f.to_dict() for f in self.features.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Read back what :meth:`to_dict` wrote; malformed input raises :class:`ValidationError`."""
        if not isinstance(data, Mapping) or data.get("format") != _REFERENCE_FORMAT:
            raise ValidationError(f"not a raymlops reference: expected format {_REFERENCE_FORMAT!r}")
        items = data.get("features")
        if not isinstance(items, list):
            raise ValidationError("reference 'features' must be a list")
        features: dict[str, FeatureReference] = {}
        for i, item in enumerate(items):
            try:
                feature = FeatureReference(
                    name=item["name"],
                    edges=np.asarray(item["edges"], dtype=np.float64),
                    ref_counts=np.asarray(item["ref_counts"], dtype=np.int64),
                    mean=float(item["mean"]),
                    std=float(item["std"]),
                    sample=np.asarray(item["sample"], dtype=np.float64),
                )
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, ValidationError):
                    raise
                raise ValidationError(f"reference feature #{i} is malformed: {exc!r}") from exc
            if feature.name in features:
                raise ValidationError(f"reference lists feature {feature.name!r} twice")
            features[feature.name] = feature
        return cls(features)


def _numeric_columns(columns: Mapping[str, npt.ArrayLike]) -> dict[str, npt.NDArray[np.float64]]:
    """Validate a batch of columns: string names, numeric 1-D values, one common length."""
    if not isinstance(columns, Mapping):
        raise ValidationError(f"columns must be a mapping of name -> array, got {type(columns).__name__}")
    arrays: dict[str, npt.NDArray[np.float64]] = {}
    for name, values in columns.items():
        if not isinstance(name, str) or not name:
            raise ValidationError(f"column names must be non-empty strings, got {name!r}")
        arrays[name] = as_float_array(values, name=f"column {name!r}")
    lengths = {name: arr.size for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValidationError(f"columns must all have the same length, got {lengths}")
    return arrays


# --------------------------------------------------------------------------------------------
# Streaming state
# --------------------------------------------------------------------------------------------

_EXACT_LIMIT = 1e300  # beyond this, magnitudes go to a plain float (no risk of overflow mid-sum)


class _ExactSum:
    """Exact running sum of floats (Shewchuk's non-overlapping partials, as ``math.fsum``).

    The value is the correctly rounded sum of everything added, so it does not depend on the
    order of additions or on how states were merged. At most a few dozen partials are kept.
    """

    __slots__ = ("_partials", "_special")

    def __init__(self) -> None:
        self._partials: list[float] = []
        self._special = 0.0  # inf/nan and huge magnitudes, summed plainly

    def add(self, x: float) -> None:
        if not abs(x) <= _EXACT_LIMIT:
            self._special += x
            return
        partials = self._partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    def merged(self, other: _ExactSum) -> _ExactSum:
        out = _ExactSum()
        out._partials = list(self._partials)
        out._special = self._special + other._special
        for y in other._partials:
            out.add(y)
        return out

    @property
    def value(self) -> float:
        return math.fsum(self._partials) + self._special


@dataclass(frozen=True)
class Moments:
    """Running moments of a feature's finite current values."""

    count: int
    sum: float
    sum_sq: float

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (``ddof=0``)."""
        if not self.count:
            return math.nan
        mean = self.sum / self.count
        return math.sqrt(max(self.sum_sq / self.count - mean * mean, 0.0))


class _FeatureAccumulator:
    """Counts, moments and reservoir of one feature; fixed size whatever the rows seen."""

    __slots__ = ("counts", "count", "total", "total_sq", "seen", "reservoir")

    def __init__(self, n_buckets: int, reservoir_size: int) -> None:
        self.counts = np.zeros(n_buckets, dtype=np.int64)
        self.count = 0  # finite values, i.e. the values behind total/total_sq/reservoir
        self.total = _ExactSum()
        self.total_sq = _ExactSum()
        self.seen = 0
        self.reservoir = np.empty(reservoir_size, dtype=np.float64)

    @property
    def sample(self) -> npt.NDArray[np.float64]:
        return self.reservoir[: min(self.seen, self.reservoir.size)]

    def offer(self, values: npt.NDArray[np.float64], rng: np.random.Generator) -> None:
        """Algorithm R over ``values``, vectorised: item ``t`` (0-based, over the whole stream)
        replaces slot ``j ~ U{0..t}`` when ``j < k``; a slot hit twice keeps the later item."""
        k = self.reservoir.size
        start = self.seen
        n_fill = min(max(k - start, 0), values.size)
        self.reservoir[start : start + n_fill] = values[:n_fill]
        rest = values[n_fill:]
        if rest.size:
            t = np.arange(start + n_fill, start + values.size, dtype=np.int64)
            j = rng.integers(0, t + 1)
            hit = j < k
            slots, items = j[hit][::-1], rest[hit][::-1]
            unique_slots, last = np.unique(slots, return_index=True)
            self.reservoir[unique_slots] = items[last]
        self.seen = start + values.size


class MonitorState:
    """Streaming, mergeable drift state of current data on a reference's bins.

    ``update`` adds a batch; ``merge`` combines two states built on the same reference into a
    new one, exactly for counts and moments, and with a uniform sample of the union for the
    reservoirs. ``reservoir_size`` bounds the current values kept per feature; ``seed`` seeds
    the reservoir's random generator, so the same batches give the same state.
    """

    def __init__(self, reference: Reference, reservoir_size: int = 1000, seed: int = 0) -> None:
        if not isinstance(reference, Reference):
            raise ValidationError(f"reference must be a Reference, got {type(reference).__name__}")
        self.reference = reference
        self.reservoir_size = _check_int(reservoir_size, "reservoir_size", 1)
        self.seed = _check_int(seed, "seed", 0)
        self._rng = np.random.default_rng(self.seed)
        self._rows = 0
        self._features = {
            name: _FeatureAccumulator(f.ref_counts.size, self.reservoir_size) for name, f in reference.features.items()
        }

    @property
    def rows(self) -> int:
        """Rows seen so far (over all updates and merges)."""
        return self._rows

    def update(self, columns: Mapping[str, npt.ArrayLike]) -> None:
        """Add a batch: one equal-length numeric column per reference feature.

        The batch is validated in full before anything changes, so a bad batch leaves the state
        as it was. A zero-row batch is a no-op.
        """
        if not isinstance(columns, Mapping):
            raise ValidationError(f"columns must be a mapping of name -> array, got {type(columns).__name__}")
        expected = set(self.reference.features)
        missing = sorted(expected - set(columns))
        extra = sorted(set(columns) - expected, key=str)
        if missing or extra:
            raise ValidationError(
                f"batch columns do not match the reference features: missing {missing}, extra {extra}"
            )
        arrays = _numeric_columns(columns)
        n_rows = next(iter(arrays.values())).size
        if n_rows == 0:
            return
        binned = {name: bin_counts(values, self.reference.features[name].edges) for name, values in arrays.items()}
        for name, acc in self._features.items():
            values = arrays[name]
            finite = values[np.isfinite(values)]
            acc.counts += binned[name]
            acc.count += finite.size
            if finite.size:
                acc.total.add(float(np.sum(finite)))
                acc.total_sq.add(float(np.dot(finite, finite)))
                acc.offer(finite, self._rng)
        self._rows += n_rows

    def merge(self, other: MonitorState) -> MonitorState:
        """A new state holding both states' data; neither input changes."""
        if not isinstance(other, MonitorState):
            raise ValidationError(f"can only merge another MonitorState, got {type(other).__name__}")
        if other.reservoir_size != self.reservoir_size:
            raise ValidationError(
                f"cannot merge states with different reservoir sizes ({self.reservoir_size} and {other.reservoir_size})"
            )
        if other.reference is not self.reference and other.reference != self.reference:
            raise ValidationError("cannot merge states built on different references")
        out = MonitorState(self.reference, self.reservoir_size, self.seed)
        entropy = [self.seed, other.seed, self._rows, other._rows]
        out._rng = np.random.default_rng(np.random.SeedSequence(entropy))
        out._rows = self._rows + other._rows
        for name, acc in out._features.items():
            a, b = self._features[name], other._features[name]
            acc.counts = a.counts + b.counts
            acc.count = a.count + b.count
            acc.total = a.total.merged(b.total)
            acc.total_sq = a.total_sq.merged(b.total_sq)
            acc.seen = a.seen + b.seen
            merged = _merge_samples(a.sample, a.seen, b.sample, b.seen, self.reservoir_size, out._rng)
            acc.reservoir[: merged.size] = merged
        return out

    def _feature(self, name: str) -> _FeatureAccumulator:
        try:
            return self._features[name]
        except KeyError:
            raise NotFound(f"no feature {name!r} in the monitor state; features: {list(self._features)}") from None

    def counts(self, feature: str) -> npt.NDArray[np.int64]:
        """Current counts on the reference bins of ``feature`` (last bucket: missing)."""
        return self._feature(feature).counts.copy()

    def moments(self, feature: str) -> Moments:
        """Count, sum and sum of squares of the finite current values of ``feature``."""
        acc = self._feature(feature)
        return Moments(count=acc.count, sum=acc.total.value, sum_sq=acc.total_sq.value)

    def reservoir(self, feature: str) -> npt.NDArray[np.float64]:
        """A uniform sample (without replacement) of the finite current values of ``feature``."""
        return self._feature(feature).sample.copy()


def _merge_samples(
    a: npt.NDArray[np.float64],
    n_a: int,
    b: npt.NDArray[np.float64],
    n_b: int,
    k: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Uniform sample of up to ``k`` from two streams of ``n_a`` and ``n_b`` items, given a
    uniform sample of each: how many come from ``a`` is hypergeometric (``n_a`` good of
    ``n_a + n_b``), then that many are drawn from ``a``'s sample and the rest from ``b``'s."""
    size = min(k, n_a + n_b)
    if size == 0:
        return np.empty(0, dtype=np.float64)
    if max(n_a, n_b) < 10**9:
        from_a = int(rng.hypergeometric(n_a, n_b, size))
    else:  # numpy's hypergeometric stops at 1e9; at that scale the binomial is as good
        from_a = int(rng.binomial(size, n_a / (n_a + n_b)))
    from_a = min(max(from_a, size - b.size), a.size)
    picked = np.concatenate(
        [rng.choice(a, size=from_a, replace=False), rng.choice(b, size=size - from_a, replace=False)]
    )
    return rng.permutation(picked)


# --------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    """The drift verdict on one feature; ``test`` is ``"ks"`` or ``"chi2"``."""

    feature: str
    test: str
    statistic: float
    p_value: float
    adjusted_p_value: float
    psi: float
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    """Drift verdicts on every feature of a window; ``method`` is the p-value correction used."""

    rows: int
    features: tuple[FeatureDrift, ...]
    drifted_features: tuple[str, ...]
    share_drifted: float
    dataset_drift: bool
    method: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "rows": self.rows,
            "method": self.method,
            "dataset_drift": self.dataset_drift,
            "share_drifted": self.share_drifted,
            "drifted_features": list(self.drifted_features),
            "features": [asdict(f) for f in self.features],
        }


def _check_fraction(value: float, name: str, *, low_open: bool, high_open: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)
        ok = (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValidationError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def summarize(
    reference: Reference,
    state: MonitorState,
    alpha: float = 0.05,
    correction: str = "bonferroni",
    dataset_drift_share: float = 0.5,
    min_rows: int = 30,
) -> DriftSummary:
    """Test every feature of ``state`` against ``reference`` and decide on drift.

    Below :data:`CHI2_MIN_ROWS` rows a feature is tested with Kolmogorov-Smirnov (reservoir vs
    reference sample), from then on with a chi-square homogeneity test on the binned counts
    (missing bucket included); a feature with no finite current values also gets chi-square.
    P-values are corrected across features with ``correction`` (``"bonferroni"`` or ``"bh"``);
    a feature drifts when its adjusted p-value is below ``alpha``, and the dataset drifts when
    the share of drifted features is at least ``dataset_drift_share``. With fewer than
    ``min_rows`` rows nothing is flagged, though the p-values are still reported.
    """
    alpha = _check_fraction(alpha, "alpha", low_open=True, high_open=True)
    share_needed = _check_fraction(dataset_drift_share, "dataset_drift_share", low_open=True, high_open=False)
    min_rows = _check_int(min_rows, "min_rows", 0)
    if correction not in CORRECTIONS:
        raise ValidationError(f"correction must be one of {', '.join(CORRECTIONS)}; got {correction!r}")
    if not isinstance(state, MonitorState):
        raise ValidationError(f"state must be a MonitorState, got {type(state).__name__}")
    if state.reference is not reference and state.reference != reference:
        raise ValidationError("the monitor state was built on a different reference")
    if state.rows == 0:
        raise NotFittedError("the monitor state has no rows yet; call update() before summarize()")

    raw: list[tuple[str, str, float, float, float]] = []
    for name, ref in reference.features.items():
        counts = state.counts(name)
        current = state.reservoir(name)
        if state.rows < CHI2_MIN_ROWS and current.size > 0:
            test, (statistic, p_value) = "ks", ks_test(ref.sample, current)
        else:
            test, (statistic, p_value) = "chi2", chi2_test(ref.ref_counts, counts)
        raw.append((name, test, statistic, p_value, psi(ref.ref_counts, counts)))

    adjusted = correct([r[3] for r in raw], correction)
    enough = state.rows >= min_rows
    features = tuple(
        FeatureDrift(
            feature=name,
            test=test,
            statistic=statistic,
            p_value=p_value,
            adjusted_p_value=float(adj),
            psi=psi_value,
            drifted=bool(enough and adj < alpha),
        )
        for (name, test, statistic, p_value, psi_value), adj in zip(raw, adjusted, strict=True)
    )
    drifted = tuple(f.feature for f in features if f.drifted)
    share = len(drifted) / len(features)
    return DriftSummary(
        rows=state.rows,
        features=features,
        drifted_features=drifted,
        share_drifted=share,
        dataset_drift=bool(enough and share >= share_needed),
        method=correction,
    )

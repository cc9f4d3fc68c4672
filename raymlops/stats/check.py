"""Statistical validation of a dataset against a reference, from their profiles (pure: no Ray).

:func:`check` compares two :class:`~raymlops.stats.profile.Profile` objects column by column
and returns a :class:`DriftReport` with every score, not only a verdict:

- numeric columns: Kolmogorov-Smirnov (statistic and p-value, on the reference's fine bins, see
  :func:`raymlops.stats.drift.ks_binned`), Wasserstein-1 distance normalised by the reference
  standard deviation, and PSI on the reference's deciles;
- categorical columns (strings, booleans, integers with few values): chi-square test of
  homogeneity (statistic and p-value), Jensen-Shannon distance, and PSI on the categories.

Which score decides is :class:`DriftSettings`' ``numeric_test`` / ``categorical_test``. The
default, ``auto``, follows Evidently's presets: while either side has at most ``small_sample`` rows a
p-value test (KS / chi-square) at level ``alpha`` after a multiple-testing correction across
the columns tested that way (Bonferroni by default, Holm with ``holm``, Benjamini-Hochberg with
``bh``); above it a distance (Wasserstein / Jensen-Shannon) of at least 0.1, since on millions
of rows every p-value test finds some difference. PSI is always reported with its band (< 0.1
stable, 0.1-0.2 moderate, >= 0.2 significant). The dataset verdict is
:mod:`raymlops.stats.verdict`'s ``dataset_rule``: by default the dataset drifts when any column
drifts after the correction (family-wise); ``share`` is Evidently's rule, at least
``drift_share`` of the columns drifted at the uncorrected level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError
from raymlops.stats.bins import coarse_edges, edges_digest, regroup
from raymlops.stats.drift import (
    CORRECTIONS,
    chi2_test,
    jensen_shannon,
    ks_binned,
    psi,
    wasserstein_binned,
)
from raymlops.stats.profile import ColumnProfile, Profile
from raymlops.stats.verdict import DATASET_RULES, dataset_drift, distance_drifted, feature_drift

__all__ = ["NUMERIC_TESTS", "CATEGORICAL_TESTS", "ColumnDrift", "DriftReport", "DriftSettings", "check", "psi_band"]

NUMERIC_TESTS = ("auto", "ks", "wasserstein", "psi")
CATEGORICAL_TESTS = ("auto", "chi2", "jensenshannon", "psi")
P_VALUE_TESTS = ("ks", "chi2")
REPORT_FORMAT = "raymlops.drift/1"
#: a column whose missing values rose by more than this share of its rows is said (the live
#: monitor's ``max_missing_rate_increase`` default): the drift tests compare the values that are
#: there, so a join that blanks half a column reads as no drift
MISSING_INCREASE = 0.05


@dataclass(frozen=True)
class DriftSettings:
    """Which test decides per column type, and its threshold. Defaults: Evidently's presets."""

    numeric_test: str = "auto"
    categorical_test: str = "auto"
    small_sample: int = 1000  # auto: p-value tests while either side has at most this many rows, distances above
    alpha: float = 0.05  # p-value tests: drift when the corrected p-value is below alpha
    correction: str = "bonferroni"  # bonferroni | holm | bh | none
    wasserstein: float = 0.1  # drift when the normalised distance is at least this
    jensenshannon: float = 0.1
    psi: float = 0.1  # drift when PSI is at least this (when psi decides)
    drift_share: float = 0.5  # dataset_rule "share": at least this share of columns drift (uncorrected)
    dataset_rule: str = "any"  # any | share (raymlops.stats.verdict)
    columns: tuple[str, ...] | None = None  # only these columns (default: every column of both)

    def __post_init__(self) -> None:
        if self.numeric_test not in NUMERIC_TESTS:
            raise ValidationError(f"numeric_test must be one of {', '.join(NUMERIC_TESTS)}, got {self.numeric_test!r}")
        if self.categorical_test not in CATEGORICAL_TESTS:
            raise ValidationError(f"categorical_test must be one of {', '.join(CATEGORICAL_TESTS)}, "
                                  f"got {self.categorical_test!r}")
        if self.correction not in (*CORRECTIONS, "none"):
            raise ValidationError(f"correction must be one of {', '.join((*CORRECTIONS, 'none'))}, "
                                  f"got {self.correction!r}")
        if self.dataset_rule not in DATASET_RULES:
            raise ValidationError(f"dataset_rule must be one of {', '.join(DATASET_RULES)}, got {self.dataset_rule!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ValidationError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not 0.0 < self.drift_share <= 1.0:
            raise ValidationError(f"drift_share must be in (0, 1], got {self.drift_share!r}")
        for name in ("wasserstein", "jensenshannon", "psi"):
            if not getattr(self, name) > 0:
                raise ValidationError(f"{name} threshold must be > 0, got {getattr(self, name)!r}")
        if self.small_sample < 0:
            raise ValidationError(f"small_sample must be >= 0, got {self.small_sample!r}")
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(self.columns))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["columns"] = None if self.columns is None else list(self.columns)
        return d



def _kind_shown(col: ColumnProfile) -> str:
    """A column's kind as a reason it is not tested: its Arrow type where the kind is ``other``
    (a date, a time, a list: "not tested: date32[day] column", as Evidently leaves dates out)."""
    return col.type if col.kind == "other" else col.kind

def _encoding(arrow_type: str) -> str:
    """An Arrow type name without its offset width (``large_string`` is ``string``)."""
    return arrow_type.removeprefix("large_")


def psi_band(value: float | None) -> str | None:
    if value is None or not math.isfinite(value):
        return None
    return "stable" if value < 0.1 else "moderate" if value < 0.2 else "significant"


@dataclass
class ColumnDrift:
    """One column's comparison: the deciding test, its score and threshold, and every score."""

    column: str
    kind: str  # numeric | categorical | skipped
    test: str | None = None  # the deciding test
    score: float | None = None  # its statistic: p-value for ks/chi2, the distance otherwise
    threshold: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    drifted: bool = False
    scores: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    current: dict[str, Any] = field(default_factory=dict)
    approximate: bool = False  # current counted on its own bins and re-binned, not on the reference's
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftReport:
    """The result of :func:`check`: per-column results and the dataset verdict."""

    columns: list[ColumnDrift]
    settings: DriftSettings
    reference_rows: int
    current_rows: int
    schema_changes: list[str] = field(default_factory=list)
    #: columns of the reference the current data lacks: drift whatever the tests say (a model fed
    #: the reference's columns cannot take the current data; a renamed column is one of them)
    missing_columns: list[str] = field(default_factory=list)

    @property
    def tested(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.test is not None]

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        tested = self.tested
        return len(self.drifted_columns) / len(tested) if tested else 0.0

    @property
    def missing_value_changes(self) -> list[str]:
        """``"column: missing values a% -> b%"`` of each column whose missing share rose by more than
        :data:`MISSING_INCREASE` (a data-quality finding beside the drift verdict, as ``monitor check``'s)."""
        out = []
        for c in self.columns:
            before, now = float(c.reference.get("null_share", 0.0)), float(c.current.get("null_share", 0.0))
            if now - before > MISSING_INCREASE:
                out.append(f"{c.column}: missing values {before:.1%} -> {now:.1%}")
        return out

    @property
    def dataset_drift(self) -> bool:
        return bool(self.missing_columns) or dataset_drift(
            [c.drifted for c in self.tested], rule=self.settings.dataset_rule, share=self.settings.drift_share)

    def summary(self) -> str:
        lost = self.missing_columns
        return (f"{len(self.drifted_columns)} of {len(self.tested)} columns drifted"
                + (f" ({', '.join(self.drifted_columns[:5])}{', ...' if len(self.drifted_columns) > 5 else ''})"
                   if self.drifted_columns else "")
                + (f"; {len(lost)} column{'s' if len(lost) > 1 else ''} of the reference missing "
                   f"({', '.join(lost[:5])}{', ...' if len(lost) > 5 else ''})" if lost else "")
                + f"; dataset drift: {'yes' if self.dataset_drift else 'no'}"
                + "".join(f"; {change}" for change in self.missing_value_changes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "dataset_drift": self.dataset_drift,
            "share": self.share,
            "drifted_columns": self.drifted_columns,
            "tested": len(self.tested),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "schema_changes": list(self.schema_changes),
            "missing_columns": list(self.missing_columns),
            "missing_value_changes": self.missing_value_changes,
            "settings": self.settings.to_dict(),
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftReport:
        if d.get("format") != REPORT_FORMAT:
            raise ValidationError(f"not a raymlops drift report (format {d.get('format')!r})")
        s = dict(d["settings"])
        s["columns"] = None if s.get("columns") is None else tuple(s["columns"])
        return cls(columns=[ColumnDrift(**c) for c in d["columns"]], settings=DriftSettings(**s),
                   reference_rows=int(d["reference_rows"]), current_rows=int(d["current_rows"]),
                   schema_changes=list(d["schema_changes"]), missing_columns=list(d.get("missing_columns", [])))


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _side(c: ColumnProfile) -> dict[str, Any]:
    out: dict[str, Any] = {"count": c.count, "nulls": c.nulls, "null_share": c.nulls / c.count if c.count else 0.0}
    if c.mean is not None:
        out |= {"mean": c.mean, "std": c.std, "min": c.min, "max": c.max}
    return out


def _cdf_at(c: ColumnProfile, points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``c``'s share of finite values below each point, linear inside its own fine bins."""
    total = c.counts.sum()
    assert c.min is not None and c.max is not None
    xs = np.concatenate([[c.min], c.edges, [c.max]])
    cdf = np.concatenate([[0.0], np.cumsum(c.counts) / total])
    if xs[-1] <= xs[0]:  # a constant column
        return np.where(points >= xs[0], 1.0, 0.0)
    return np.asarray(np.interp(points, xs, cdf, left=0.0, right=1.0), dtype=np.float64)


def _counts_on_reference(cur: ColumnProfile, ref: ColumnProfile) -> tuple[npt.NDArray[np.float64], bool]:
    """``(counts of cur on ref's fine bins, approximate)``: exact when cur was counted on them."""
    if cur.ref_counts is not None and cur.ref_edges == edges_digest(ref.edges):
        return cur.ref_counts.astype(np.float64), False
    total = float(cur.counts.sum())
    cdf = np.concatenate([[0.0], _cdf_at(cur, np.asarray(ref.edges)), [1.0]])
    return np.diff(cdf) * total, True


def _numeric(ref: ColumnProfile, cur: ColumnProfile, out: ColumnDrift) -> None:
    out.kind = "numeric"
    if ref.finite == 0 or cur.finite == 0:
        out.note = "no finite values on " + ("either side" if ref.finite == cur.finite == 0
                                             else "the reference side" if ref.finite == 0 else "the current side")
        return
    cur_counts, approx = _counts_on_reference(cur, ref)
    ref_counts = ref.counts.astype(np.float64)
    out.approximate = approx
    d, p = ks_binned(ref_counts, cur_counts)
    assert ref.min is not None and ref.max is not None and cur.min is not None and cur.max is not None
    w = wasserstein_binned(ref.edges, ref_counts, cur_counts, min(ref.min, cur.min), max(ref.max, cur.max),
                           ref.std or 0.0)
    _, picks = coarse_edges(ref.edges, ref.counts)
    psi_value = psi(regroup(ref.counts, picks), regroup(np.rint(cur_counts).astype(np.int64), picks)) \
        if picks.size else 0.0
    out.scores = {"ks_statistic": d, "ks_p_value": p, "wasserstein_normed": w, "psi": psi_value,
                  "psi_band": psi_band(psi_value)}
    cur_inf, ref_inf = (c.infinite / c.count if c.count else 0.0 for c in (cur, ref))
    if cur_inf > ref_inf:  # an infinity is no measurement (a division by zero upstream): said whatever its share
        out.note = f"{cur.infinite} +-inf values ({cur_inf:.1%}; the reference: {ref_inf:.1%}), left out of the test"


def _categorical(ref: ColumnProfile, cur: ColumnProfile, out: ColumnDrift) -> None:
    out.kind = "categorical"
    assert ref.categories is not None and cur.categories is not None
    keys = sorted(set(ref.categories) | set(cur.categories), key=lambda k: (str(type(k)), str(k)))
    r = np.asarray([ref.categories.get(k, 0) for k in keys], dtype=np.float64)
    c = np.asarray([cur.categories.get(k, 0) for k in keys], dtype=np.float64)
    if r.sum() == 0 or c.sum() == 0:
        out.note = "no values on " + ("the reference side" if r.sum() == 0 else "the current side")
        return
    stat, p = chi2_test(r, c)
    new = [k for k in keys if ref.categories.get(k, 0) == 0]
    out.scores = {"chi2_statistic": stat, "chi2_p_value": p, "jensenshannon": jensen_shannon(r, c),
                  "psi": psi(r, c), "psi_band": psi_band(psi(r, c)), "categories": len(keys),
                  "new_categories": [str(k) for k in new[:10]]}


_NUMERIC_SCORE = {"ks": "ks_p_value", "wasserstein": "wasserstein_normed", "psi": "psi"}
_CATEGORICAL_SCORE = {"chi2": "chi2_p_value", "jensenshannon": "jensenshannon", "psi": "psi"}


def _choose(kind: str, settings: DriftSettings, rows: int) -> str:
    """``rows``: the smaller sample's rows (either small: the p-value test)."""
    small = rows <= settings.small_sample
    if kind == "numeric":
        return ("ks" if small else "wasserstein") if settings.numeric_test == "auto" else settings.numeric_test
    return ("chi2" if small else "jensenshannon") if settings.categorical_test == "auto" else settings.categorical_test


def check(current: Profile, reference: Profile, settings: DriftSettings | None = None) -> DriftReport:
    """Compare ``current`` with ``reference`` column by column (see the module docstring)."""
    settings = settings or DriftSettings()
    names = [n for n in reference.columns if n in current.columns]
    changes = [f"column {n!r} is missing" for n in reference.columns if n not in current.columns]
    changes += [f"column {n!r} is new" for n in current.columns if n not in reference.columns]
    if settings.columns is not None:
        unknown = [n for n in settings.columns if n not in reference.columns and n not in current.columns]
        if unknown:
            raise ValidationError(f"drift columns: {unknown[0]!r} is in neither profile (columns: "
                                  f"{', '.join(reference.columns)})")
        names = [n for n in names if n in settings.columns]
    results: list[ColumnDrift] = []
    smaller = min(current.rows, reference.rows)  # either sample small: the p-value test
    for name in names:
        ref, cur = reference.columns[name], current.columns[name]
        out = ColumnDrift(column=name, kind="skipped", reference=_side(ref), current=_side(cur))
        if _encoding(ref.type) != _encoding(cur.type):  # string vs large_string: one type, two encodings
            changes.append(f"column {name!r}: type {ref.type} -> {cur.type}")
        if ref.categories is not None and cur.categories is not None and "categorical" in (ref.kind, cur.kind):
            _categorical(ref, cur, out)
            table = _CATEGORICAL_SCORE
        elif ref.numeric and cur.numeric:
            _numeric(ref, cur, out)
            table = _NUMERIC_SCORE
        else:
            out.note = out.note or (f"not tested: {_kind_shown(ref)} column" if ref.kind == cur.kind
                                    else f"not tested: {_kind_shown(ref)} in the reference, {_kind_shown(cur)} now")
            results.append(out)
            continue
        if out.scores:
            test = _choose(out.kind, settings, smaller)
            if test not in table:  # e.g. categorical_test 'chi2' does not apply to numbers
                test = _choose(out.kind, DriftSettings(small_sample=settings.small_sample), smaller)
            out.test = test
            out.score = _finite(out.scores[table[test]])
            if test in P_VALUE_TESTS:
                out.p_value = out.score
                out.threshold = settings.alpha
            else:
                out.threshold = {"wasserstein": settings.wasserstein, "jensenshannon": settings.jensenshannon,
                                 "psi": settings.psi}[test]
                chi2_p = out.scores.get("chi2_p_value")
                out.drifted = out.score is not None and distance_drifted(
                    test, out.score, out.threshold, categories=out.kind == "categorical",
                    p_value=math.nan if chi2_p is None else chi2_p, alpha=settings.alpha)
        results.append(out)
    _adjust(results, settings)
    lost = [n for n in reference.columns if n not in current.columns
            and (settings.columns is None or n in settings.columns)]
    return DriftReport(columns=results, settings=settings, reference_rows=reference.rows,
                       current_rows=current.rows, schema_changes=changes, missing_columns=lost)


def _adjust(results: Sequence[ColumnDrift], settings: DriftSettings) -> None:
    tested = [r for r in results if r.test in P_VALUE_TESTS and r.p_value is not None]
    if not tested:
        return
    raw = np.asarray([r.p_value for r in tested], dtype=np.float64)
    adjusted, flags = feature_drift(raw, True, False, alpha=settings.alpha, correction=settings.correction,
                                    rule=settings.dataset_rule)
    for r, p, flag in zip(tested, adjusted.tolist(), flags.tolist(), strict=True):
        r.p_adjusted = float(p)
        r.drifted = bool(flag)

"""Reference vs current plot data for reports: bars, counts and heights per dataset (plain JSON).

Pure numpy/pandas, no plotting (:mod:`raymlops.monitor.plots` draws what this computes). Two
sources give one shape:

- :func:`rows_histogram` / :func:`rows_histograms`: both datasets whole (an offline check).
  A numeric column is binned over the **union** of both datasets' ranges, equal-width bins
  (Freedman-Diaconis width on the pooled values, at most ``max_bins``) aligned so that the
  reference's min and max are bin edges: a bar lies wholly inside or wholly outside the
  reference range, and rows outside it are drawn where they are. A numeric column whose values
  are all integers with at most ``max_values`` distinct ones gets a bar per value; a categorical
  column a bar per category of the union of both datasets' categories.
- :func:`column_histogram` / :func:`histograms`: a monitor's binned state (the live report),
  which holds counts on the reference's fine quantile grid and no rows. Fine buckets are merged
  into bins of about equal *width* (at most ``max_bins``, none a sliver), and the mass below and
  above the reference range, which the state cannot place, is drawn as bars of its own.

The shape (every value JSON):

``kind``
    ``numeric`` (a density over ``edges``), ``integer`` (a share per value of ``values``) or
    ``categorical`` (a share per label).
``source`` / ``binning``
    ``rows`` or ``state``; one line saying how the bars were chosen.
``edges`` (numeric), ``values`` (integer), ``labels``
    The main bars: their edges, their values, their names.
``reference`` / ``current``
    Rows per main bar.
``inside``
    Per main bar: True where it lies in the reference's range (numeric, integer) or is one of
    its categories (categorical).
``extra_labels``, ``reference_extra`` / ``current_extra``
    Bars off the main axis, drawn as shares: ``missing`` (NaN, None; infinities for numeric
    columns), and from a state ``below reference range`` / ``above reference range``.
``reference_rows`` / ``current_rows``
    Rows of each dataset: its main counts plus its extra counts, always.
``reference_range``
    ``[min, max]`` of the reference's finite values (numeric, integer), else None.
``outside``
    ``{"reference" | "current": {"below", "above", "missing", "unseen"}}``: rows below / above the
    reference range, missing, or of a category the reference lacks.

:func:`heights` turns counts into what is drawn: for each dataset on its own, a numeric bar's
density ``count / (rows * width)``, any other bar's share ``count / rows``; so each dataset's
areas and shares add up to 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from raymlops.exceptions import ValidationError
from raymlops.monitor.columns import CATEGORICAL, ColumnReference, _to_float, check_int, labels_of
from raymlops.monitor.state import StreamState
from raymlops.stats.offline import time_as_float

__all__ = ["column_histogram", "heights", "histograms", "rows_histogram", "rows_histograms"]

NUMERIC_KIND, INTEGER_KIND, CATEGORICAL_KIND = "numeric", "integer", "categorical"
MISSING, BELOW, ABOVE, REST, OTHER = "missing", "below reference range", "above reference range", "(rest)", "(other)"


# --------------------------------------------------------------------------------- heights


def heights(hist: Mapping[str, Any]) -> dict[str, list[float]]:
    """What is drawn for ``hist``, each dataset normalised on its own: ``reference`` /
    ``current`` per main bar (numeric: density, else share of rows), ``reference_extra`` /
    ``current_extra`` per extra bar (share of rows)."""
    out: dict[str, list[float]] = {}
    width = np.diff(np.asarray(hist["edges"], dtype=np.float64)) if hist["kind"] == NUMERIC_KIND else None
    for which in ("reference", "current"):
        rows = max(float(hist[f"{which}_rows"]), 1.0)
        main = np.asarray(hist[which], dtype=np.float64) / rows
        out[which] = (main / width if width is not None else main).tolist()
        out[f"{which}_extra"] = (np.asarray(hist[f"{which}_extra"], dtype=np.float64) / rows).tolist()
    return out


# --------------------------------------------------------------------------------- raw rows


def _as_float(values: Any, name: str) -> npt.NDArray[np.float64]:
    if isinstance(values, pd.Series):
        if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values) or (
                values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("date", "datetime")):
            return time_as_float(values)  # a time column named in the check: its integer time, as tested
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.asarray(values)
    if arr.dtype.kind in "mM":
        return time_as_float(arr)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=False).ravel()
    return _to_float(arr.ravel(), name)


def _is_categorical(values: Any) -> bool:
    if isinstance(values, pd.Series):
        return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return False
    if arr.dtype.kind == "O":
        try:
            _to_float(arr.ravel(), "")
            return False
        except ValidationError:
            return True
    return True


def rows_histogram(reference: Any, current: Any, categorical: bool | None = None, max_bins: int = 40,
                   max_values: int = 50, max_categories: int = 30, name: str = "column") -> dict[str, Any]:
    """The plot data of one column from both datasets' values (see the module docstring).

    ``categorical`` None: categorical when either side holds strings, booleans or objects.
    """
    max_bins = check_int(max_bins, "max_bins", 1)
    max_values = check_int(max_values, "max_values", 1)
    max_categories = check_int(max_categories, "max_categories", 2)
    if categorical is None:
        categorical = _is_categorical(reference) or _is_categorical(current)
    if categorical:
        return _rows_categorical(reference, current, max_categories)
    ref, cur = _as_float(reference, name), _as_float(current, name)
    ref_ok, cur_ok = np.isfinite(ref), np.isfinite(cur)
    rf, cf = ref[ref_ok], cur[cur_ok]
    union = np.concatenate([rf, cf])
    distinct = np.unique(union)
    if union.size and distinct.size <= max_values and np.all(distinct == np.floor(distinct)):
        out = _rows_integer(rf, cf, distinct)
    else:
        out = _rows_numeric(rf, cf, union, max_bins)
    lo, hi = (float(rf.min()), float(rf.max())) if rf.size else (math.nan, math.nan)
    n_ref_missing, n_cur_missing = int(ref.size - rf.size), int(cur.size - cf.size)
    extra = [MISSING] if n_ref_missing or n_cur_missing else []
    has_inf = bool(np.isinf(ref).any() or np.isinf(cur).any())

    def outside(x: npt.NDArray[np.float64], missing: int) -> dict[str, int]:
        if not rf.size:
            return {"below": 0, "above": int(x.size), "missing": missing, "unseen": 0}
        return {"below": int((x < lo).sum()), "above": int((x > hi).sum()), "missing": missing, "unseen": 0}

    out.update(
        source="rows", extra_labels=[("missing or infinite" if has_inf else MISSING)] if extra else [],
        reference_extra=[n_ref_missing] if extra else [], current_extra=[n_cur_missing] if extra else [],
        reference_rows=int(ref.size), current_rows=int(cur.size),
        reference_range=[lo, hi] if rf.size else None,
        outside={"reference": outside(rf, n_ref_missing), "current": outside(cf, n_cur_missing)})
    return out


def _rows_integer(rf: npt.NDArray[np.float64], cf: npt.NDArray[np.float64],
                  values: npt.NDArray[np.float64]) -> dict[str, Any]:
    lo, hi = (rf.min(), rf.max()) if rf.size else (math.inf, -math.inf)
    ref_c = np.bincount(np.searchsorted(values, rf), minlength=values.size)
    cur_c = np.bincount(np.searchsorted(values, cf), minlength=values.size)
    return {"kind": INTEGER_KIND, "binning": f"one bar per integer value ({values.size} values in either dataset)",
            "values": values.tolist(), "labels": [str(int(v)) for v in values.tolist()],
            "reference": ref_c.tolist(), "current": cur_c.tolist(),
            "inside": ((values >= lo) & (values <= hi)).tolist()}


def _bin_count(union: npt.NDArray[np.float64], max_bins: int) -> int:
    """Freedman-Diaconis on the pooled values (Sturges when the IQR is 0), capped."""
    n = union.size
    span = float(union.max() - union.min())
    q25, q75 = np.quantile(union, [0.25, 0.75])
    if span <= 0:
        return 1
    fd_width = 2.0 * float(q75 - q25) * n ** (-1.0 / 3.0)
    k = math.ceil(span / fd_width) if fd_width > 0 else math.ceil(math.log2(n)) + 1
    return max(1, min(int(k), max_bins))


def _numeric_edges(rf: npt.NDArray[np.float64], union: npt.NDArray[np.float64],
                   max_bins: int) -> npt.NDArray[np.float64]:
    """Edges over the union of both ranges. With a reference range ``[lo, hi]``: equal-width bins
    from ``lo`` to ``hi``, and bins of the same width out from them (to or past the union's min
    and max), so that no bar is a sliver and none straddles ``lo`` or ``hi``."""
    if not union.size:
        return np.array([0.0, 1.0])
    umin, umax = float(union.min()), float(union.max())
    k = _bin_count(union, max_bins)
    if not (rf.size and rf.max() > rf.min()):
        return np.linspace(umin, umax, k + 1) if umax > umin else np.array([umin - 0.5, umin + 0.5])
    lo, hi = float(rf.min()), float(rf.max())
    width = (umax - umin) / k
    while True:
        k_in = max(1, round((hi - lo) / width))
        w_out = max(width, (hi - lo) / k_in) if k_in > 1 else width  # outside bins: as wide as inside ones
        k_below, k_above = math.ceil((lo - umin) / w_out), math.ceil((umax - hi) / w_out)
        if k_below + k_in + k_above <= max(max_bins, 3):
            break
        width *= (k_below + k_in + k_above) / max_bins
    inner = np.linspace(lo, hi, k_in + 1)
    below = lo - w_out * np.arange(k_below, 0, -1)
    above = hi + w_out * np.arange(1, k_above + 1)
    return np.concatenate([below, inner, above])


def _rows_numeric(rf: npt.NDArray[np.float64], cf: npt.NDArray[np.float64], union: npt.NDArray[np.float64],
                  max_bins: int) -> dict[str, Any]:
    edges = np.unique(_numeric_edges(rf, union, max_bins))  # huge magnitude, tiny width: values may repeat
    if edges.size < 2:
        edges = np.array([edges[0], np.nextafter(edges[0], np.inf)])
    n_bars = edges.size - 1
    lo, hi = (float(rf.min()), float(rf.max())) if rf.size else (math.nan, math.nan)
    # bars are [a, b), except that the reference's max belongs to the bar ending there (a bar is
    # wholly inside or wholly outside the reference range) and the last bar is [a, b]
    hi_edge = int(np.searchsorted(edges, hi)) if rf.size else -1
    at_hi = hi_edge > 0 and hi_edge < edges.size and edges[hi_edge] == hi

    def count(x: npt.NDArray[np.float64]) -> list[int]:
        idx = np.searchsorted(edges, x, side="right") - 1
        if at_hi:
            idx[x == hi] = hi_edge - 1
        np.clip(idx, 0, n_bars - 1, out=idx)
        return np.bincount(idx, minlength=n_bars).tolist()

    inside = ((edges[:-1] >= lo) & (edges[1:] <= hi)) if rf.size else np.zeros(n_bars, dtype=bool)
    if rf.size and rf.max() == rf.min():  # a one-value reference: the bar holding it
        inside = (edges[:-1] <= lo) & (lo <= edges[1:])
    return {"kind": NUMERIC_KIND,
            "binning": f"{n_bars} equal-width bins over both datasets' range (Freedman-Diaconis, "
                       f"at most {max_bins}), with the reference's min and max as edges",
            "edges": edges.tolist(), "labels": [f"[{a:.4g}, {b:.4g})" for a, b in zip(edges[:-1], edges[1:],
                                                                                      strict=True)],
            "reference": count(rf), "current": count(cf), "inside": inside.tolist()}


def _labels(values: Any) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.bool_]]:
    arr = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.asarray(values).ravel()
    return labels_of(arr)


def _rows_categorical(reference: Any, current: Any, max_categories: int) -> dict[str, Any]:
    ref_l, ref_miss = _labels(reference)
    cur_l, cur_miss = _labels(current)
    ref_s = pd.Series(ref_l[~ref_miss], dtype=object).value_counts(sort=False)
    cur_s = pd.Series(cur_l[~cur_miss], dtype=object).value_counts(sort=False)
    table = pd.DataFrame({"reference": ref_s, "current": cur_s}).fillna(0).astype(np.int64)
    table["in_ref"] = table.index.isin(ref_s.index)
    share = table["reference"] / max(ref_l.size, 1) + table["current"] / max(cur_l.size, 1)
    table["share"] = share
    table["label"] = table.index.astype(str)
    # reference categories first (most frequent first), then the current's new ones
    table = table.sort_values(["in_ref", "reference", "current", "label"], ascending=[False, False, False, True])
    labels = table["label"].tolist()
    ref_c, cur_c, inside = table["reference"].tolist(), table["current"].tolist(), table["in_ref"].tolist()
    binning = f"one bar per category of either dataset ({len(labels)})"
    if len(labels) > max_categories:
        keep = set(table.sort_values(["share", "label"], ascending=[False, True]).index[: max_categories - 1])
        kept = [i for i, lab in enumerate(table.index) if lab in keep]
        rest = sorted(set(range(len(labels))) - set(kept))
        binning = f"one bar per category ({len(labels)}): the {max_categories - 1} most frequent, the rest summed"
        labels = [labels[i] for i in kept] + [REST]
        ref_c = [ref_c[i] for i in kept] + [sum(ref_c[i] for i in rest)]
        cur_c = [cur_c[i] for i in kept] + [sum(cur_c[i] for i in rest)]
        inside = [inside[i] for i in kept] + [all(inside[i] for i in rest)]
    n_ref_missing, n_cur_missing = int(ref_miss.sum()), int(cur_miss.sum())
    extra = bool(n_ref_missing or n_cur_missing)
    unseen = int(table.loc[~table["in_ref"], "current"].sum())
    return {"kind": CATEGORICAL_KIND, "source": "rows", "binning": binning, "labels": [str(x) for x in labels],
            "reference": [int(x) for x in ref_c], "current": [int(x) for x in cur_c],
            "inside": [bool(x) for x in inside], "extra_labels": [MISSING] if extra else [],
            "reference_extra": [n_ref_missing] if extra else [], "current_extra": [n_cur_missing] if extra else [],
            "reference_rows": int(ref_l.size), "current_rows": int(cur_l.size), "reference_range": None,
            "outside": {"reference": {"below": 0, "above": 0, "missing": n_ref_missing, "unseen": 0},
                        "current": {"below": 0, "above": 0, "missing": n_cur_missing, "unseen": unseen}}}


def rows_histograms(reference: Any, current: Any, kinds: Mapping[str, str], max_bins: int = 40,
                    max_values: int = 50, max_categories: int = 30) -> dict[str, dict[str, Any]]:
    """:func:`rows_histogram` of every column named in ``kinds`` (name -> ``numeric`` or
    ``categorical``, as the check judged it) that both tables (DataFrames or mappings of arrays) hold."""
    out = {}
    for name, kind in kinds.items():
        if name in reference and name in current:
            out[name] = rows_histogram(reference[name], current[name], categorical=kind == CATEGORICAL,
                                       max_bins=max_bins, max_values=max_values, max_categories=max_categories,
                                       name=name)
    return out


# --------------------------------------------------------------------------------- binned state


def _equal_width_runs(edges: npt.NDArray[np.float64], max_bins: int) -> npt.NDArray[np.int64]:
    """Indices into ``edges`` where merged bins start/end (first 0, last len-1): runs of fine
    bins at least ``span / max_bins`` wide, so that no bar is a sliver."""
    target = (float(edges[-1]) - float(edges[0])) / max_bins
    cuts = [0]
    for i in range(1, edges.size):
        if edges[i] - edges[cuts[-1]] >= target * (1 - 1e-9):
            cuts.append(i)
    last = edges.size - 1
    if cuts[-1] != last:
        if len(cuts) > 1 and edges[last] - edges[cuts[-1]] < target / 2:
            cuts[-1] = last  # a short tail joins the bar before it
        else:
            cuts.append(last)
    return np.asarray(cuts, dtype=np.int64)


def _state_integer(col: ColumnReference, ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64]) -> dict[str, Any]:
    """A discrete column (a bucket per reference value): a bar per value, as the offline plots draw
    integer columns; rows outside the reference's values (below, above, missing) as extra bars."""
    values = col.edges[:-1]
    missing = bool(ref[-1] or cur[-1])
    n = 3 if missing else 2
    return {"kind": INTEGER_KIND, "source": "state",
            "binning": f"one bar per integer value of the reference ({values.size} values); rows outside its "
                       "range as bars of their own",
            "values": values.tolist(), "labels": [f"{v:.4g}" for v in values.tolist()],
            "reference": ref[1:-2].tolist(), "current": cur[1:-2].tolist(), "inside": [True] * values.size,
            "extra_labels": [BELOW, ABOVE, MISSING][:n],
            "reference_extra": [int(ref[0]), int(ref[-2]), int(ref[-1])][:n],
            "current_extra": [int(cur[0]), int(cur[-2]), int(cur[-1])][:n],
            "reference_range": [col.ref_min, col.ref_max],
            "outside": {side: {"below": int(c[0]), "above": int(c[-2]), "missing": int(c[-1]), "unseen": 0}
                        for side, c in (("reference", ref), ("current", cur))}}


def _state_numeric(col: ColumnReference, ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64],
                   max_bins: int) -> dict[str, Any]:
    if col.discrete:
        return _state_integer(col, ref, cur)
    fine = col.edges  # buckets: 0 below, 1 .. len(fine)-1 interior, len(fine) above, last missing
    cuts = _equal_width_runs(fine, max_bins)
    edges = fine[cuts]
    edges[-1] = col.ref_max if col.ref_max > edges[-2] else edges[-1]  # draw up to the max, not next(max)

    def merged(c: npt.NDArray[np.int64]) -> list[int]:
        return np.add.reduceat(c[1:-2], cuts[:-1]).tolist()

    def outside(c: npt.NDArray[np.int64]) -> dict[str, int]:
        return {"below": int(c[0]), "above": int(c[-2]), "missing": int(c[-1]), "unseen": 0}

    n_bars = edges.size - 1
    missing = bool(ref[-1] or cur[-1])
    return {"kind": NUMERIC_KIND, "source": "state",
            "binning": f"{n_bars} bins of about equal width, merged from the reference's {fine.size - 1} "
                       "quantile buckets; rows outside the reference range as bars of their own",
            "edges": edges.tolist(), "labels": [f"[{a:.4g}, {b:.4g})" for a, b in zip(edges[:-1], edges[1:],
                                                                                      strict=True)],
            "reference": merged(ref), "current": merged(cur), "inside": [True] * n_bars,
            # below / above always (the state cannot place those rows); missing where there are any
            "extra_labels": [BELOW, ABOVE, MISSING][: 3 if missing else 2],
            "reference_extra": [int(ref[0]), int(ref[-2]), int(ref[-1])][: 3 if missing else 2],
            "current_extra": [int(cur[0]), int(cur[-2]), int(cur[-1])][: 3 if missing else 2],
            "reference_range": [col.ref_min, col.ref_max],
            "outside": {"reference": outside(ref), "current": outside(cur)}}


def _state_categorical(col: ColumnReference, ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64],
                       max_bins: int) -> dict[str, Any]:
    labels = [*col.shown_categories, OTHER]  # the last bucket (missing) is an extra bar
    ref_l, cur_l = ref[:-1].tolist(), cur[:-1].tolist()
    inside = [True] * len(col.categories) + [not col.complete]
    binning = (f"the reference's {len(col.categories)} categories and {OTHER} (values it "
               f"{'lacks' if col.complete else 'does not list'})")
    if len(labels) > max_bins:
        share = ref[:-1] / max(int(ref.sum()), 1) + cur[:-1] / max(int(cur.sum()), 1)
        keep = sorted(np.argsort(-share, kind="stable")[: max_bins - 1].tolist())
        rest = sorted(set(range(len(labels))) - set(keep))
        labels = [labels[i] for i in keep] + [REST]
        ref_l = [ref_l[i] for i in keep] + [int(sum(ref_l[i] for i in rest))]
        cur_l = [cur_l[i] for i in keep] + [int(sum(cur_l[i] for i in rest))]
        inside = [inside[i] for i in keep] + [all(inside[i] for i in rest)]
        binning += f", the {max_bins - 1} most frequent, the rest summed"
    unseen = int(cur[-2]) if col.complete else 0
    missing = bool(ref[-1] or cur[-1])
    return {"kind": CATEGORICAL_KIND, "source": "state", "binning": binning, "labels": labels,
            "reference": ref_l, "current": cur_l, "inside": inside, "extra_labels": [MISSING] if missing else [],
            "reference_extra": [int(ref[-1])] if missing else [], "current_extra": [int(cur[-1])] if missing else [],
            "reference_range": None,
            "outside": {"reference": {"below": 0, "above": 0, "missing": int(ref[-1]), "unseen": 0},
                        "current": {"below": 0, "above": 0, "missing": int(cur[-1]), "unseen": unseen}}}


def column_histogram(state: StreamState, name: str, slice_index: int | None = None,
                     max_bins: int = 20) -> dict[str, Any]:
    """One column's plot data from ``state`` (all rows, or one slice); see the module docstring."""
    max_bins = check_int(max_bins, "max_bins", 2)
    ref_state = state.reference
    col = ref_state.column(name)
    ref = ref_state.column_counts(name, slice_index)
    cur = state.column_counts(name, slice_index)
    build = _state_categorical if col.kind == CATEGORICAL else _state_numeric
    out = build(col, ref, cur, max_bins)
    out.update(reference_rows=int(ref.sum()), current_rows=int(cur.sum()))
    return out


def histograms(state: StreamState, max_bins: int = 20) -> dict[str, dict[str, Any]]:
    """Every monitored column's plot data over all rows of ``state``."""
    if not isinstance(state, StreamState):
        raise ValidationError(f"state must be a StreamState, got {type(state).__name__}")
    return {c.name: column_histogram(state, c.name, None, max_bins) for c in state.reference.columns}

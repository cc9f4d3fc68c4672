"""Drift of one whole table against another, with exact tests (pure: no Ray, no files).

:func:`check_tables` compares every column of two tables with :mod:`raymlops.stats.exact`
(exact two-sample KS for continuous columns, chi-square on the exact support for categorical
and low-cardinality integer columns; that module's docstring says which column gets which
test, and why), and returns plain JSON::

    {"drift", "rows", "share_drifted", "drifted_features", "correction", "dataset_rule",
     "features": {name: {"test", "statistic", "p_value", "adjusted_p_value", "drift", "kind", ...}},
     "slices": {slice: {"drift", "rows", "judged", "drifted_features", "features": {...}}},
     "not_tested": {name: reason}, "anomalies": {name: [finding, ...]}}

``anomalies`` are a column whose values changed class (numbers in the reference, text in the
current: a value that does not parse), and the live monitor's data-quality checks on the whole
current table, with its limits (``max_missing_rate_increase``, ``max_out_of_range_rate``, ``max_unseen_rate``): a column
whose values went missing says nothing to a drift test (it tests the values that are there), so
a column that is now all or half empty is named here. They are reported beside the drift
verdict, as the live monitor raises them as anomaly alerts beside its drift alerts.

Time columns (timestamps and dates) are points on a time line that moves on: last month's
against this week's always differ, so, as in Evidently (where a datetime column is no feature)
and NannyML (where the timestamp is a column of its own), they are left out of the features and
listed under ``not_tested``. Named in ``columns`` they are tested, as continuous values (their
integer time). Durations and times of day are ordinary continuous columns. A column without a
name (the index ``DataFrame.to_csv`` writes) is not tested either, and listed there.

Which test *decides* a feature follows the monitor settings, as the live monitor's windows do
(:class:`raymlops.config.MonitorConfig`): with ``auto``, the p-value test (KS or chi-square)
while either dataset has at most ``small_window_rows`` rows and a distance above (Wasserstein for continuous columns,
Jensen-Shannon for categorical and discrete ones), because on millions of rows every p-value
test finds some difference. The p-value test's result is always reported. P-values are
corrected across the features (and, with slices, across every (slice, feature) test), and the
dataset verdict is :mod:`raymlops.stats.verdict`'s rule (``dataset_rule``, by default a
family-wise decision: any feature drifted after the correction).

This module imports neither pandas nor the monitor package, so ``raymlops monitor check``
starts fast; :mod:`raymlops.monitor.offline` adds plot data for reports.
"""

from __future__ import annotations

import datetime
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from raymlops.config import MonitorConfig
from raymlops.exceptions import ValidationError
from raymlops.features import delimiter_hint
from raymlops.stats.coerce import numbers_read_as_text
from raymlops.stats.exact import CATEGORICAL, CONTINUOUS, DISCRETE, KS_EXACT_MAX_N, ColumnTest, compare
from raymlops.stats.sidecar import preload_scipy
from raymlops.stats.slicing import slice_labels, slice_note, unmatched_note
from raymlops.stats.verdict import (
    dataset_drift,
    deciding_test,
    distance_drifted,
    feature_drift,
    quality_checks,
    quality_limits,
    scaled_test,
    share_beyond_noise,
)

__all__ = ["check_tables"]

P_VALUE_TESTS = ("ks", "chi2")


def _arrow_like(data: Any) -> bool:
    """An Arrow table, or a table that reads its columns when asked (``column_names`` and
    ``column(name)``, as :class:`raymlops.data.tables.ParquetColumns`)."""
    return isinstance(data, pa.Table) or (hasattr(data, "column_names") and callable(getattr(data, "column", None)))


def _rows(data: Any) -> int:
    """Rows of a table, a DataFrame or a mapping of equal-length columns (its first column's)."""
    if _arrow_like(data) or hasattr(data, "columns"):
        return len(data)
    return len(next(iter(data.values()), ()))


def _column_names(data: Any) -> list[str]:
    if _arrow_like(data):
        return list(data.column_names)
    return [str(c) for c in data.columns] if hasattr(data, "columns") else list(data)


class _ArrowColumns(Mapping[str, Any]):
    """name -> column of an Arrow table, converted when asked (inside the worker that tests it, so
    only the columns being tested are held twice; a table that reads its columns when asked reads
    it there too): numeric columns as numpy (missing as NaN), the others as the Arrow column."""

    def __init__(self, table: Any, names: Sequence[str]) -> None:
        self._table, self._names = table, list(dict.fromkeys(names))

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        col = self._table.column(name)
        t = col.type
        if pa.types.is_temporal(t) and not pa.types.is_interval(t):  # as its integer time (see the docstring)
            col = col.cast(pa.int32() if t.bit_width == 32 else pa.int64())
        elif pa.types.is_decimal(t):  # a database export's numbers: compared as the doubles they are closest to
            col = col.cast(pa.float64())
        elif pa.types.is_null(t):  # no value at all (a CSV column left blank): missing numbers, not a category
            return np.full(len(col), math.nan)
        elif not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            return col
        return _numeric_numpy(col)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _numeric_numpy(col: pa.ChunkedArray) -> np.ndarray:
    """A numeric Arrow column as numpy, missing values as NaN (integers with nulls become floats):
    a view of the Arrow buffer when it is one chunk without nulls. Not ``to_numpy()``: pyarrow
    imports pandas for it, half a second of start-up."""
    if col.null_count:
        import pyarrow.compute as pc

        col = pc.fill_null(col.cast(pa.float64()), math.nan)
    t = col.type
    kind = "f" if pa.types.is_floating(t) else "i" if pa.types.is_signed_integer(t) else "u"
    dtype = np.dtype(f"{kind}{t.bit_width // 8}")
    parts = [np.frombuffer(c.buffers()[1], dtype=dtype, count=len(c), offset=c.offset * dtype.itemsize)
             for c in col.chunks if len(c)]
    if not parts:
        return np.empty(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _is_pandas(values: Any) -> bool:
    return type(values).__module__.startswith("pandas")


def _is_time_column(data: Any, name: str) -> bool:
    """Whether column ``name`` holds timestamps or dates (see the module docstring)."""
    if _arrow_like(data):
        t = data.schema.field(name).type
        return bool(pa.types.is_timestamp(t) or pa.types.is_date(t))
    values = data[name]
    dtype = getattr(values, "dtype", None)
    if _is_pandas(values):  # a pandas Series (tz-aware ones too)
        import pandas as pd

        return bool(pd.api.types.is_datetime64_any_dtype(values)) or (  # or Python dates / datetimes
            values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("date", "datetime"))
    if dtype is not None and np.dtype(dtype).kind == "M":
        return True
    if dtype is not None and np.dtype(dtype) == object:  # an array of Python dates, datetimes or Timestamps
        first = next((v for v in values if v is not None), None)
        return isinstance(first, (datetime.date, np.datetime64))
    return False


def _nested_type(data: Any, name: str) -> str | None:
    """The Arrow type of a list, struct, map or union column (not a feature: nothing to test), else None."""
    if not _arrow_like(data):
        return None
    t = data.schema.field(name).type
    return str(t) if pa.types.is_nested(t) else None


def time_as_float(values: Any) -> np.ndarray:
    """Timestamps, dates or durations (numpy or pandas) as their integer time in doubles, missing as NaN."""
    if getattr(getattr(values, "dtype", None), "kind", "O") == "O":  # Python dates, datetimes or Timestamps
        import pandas as pd

        values = pd.Series(pd.to_datetime(np.asarray(values, dtype=object), utc=True))
    if _is_pandas(values) and getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    arr = np.asarray(values)
    out = arr.view(np.int64).astype(np.float64)
    out[np.isnat(arr)] = math.nan
    return out


def _arrays(data: Any, names: Sequence[str]) -> Mapping[str, Any]:
    """name -> numpy float array (numeric columns, missing as NaN) or a pyarrow / object array."""
    if _arrow_like(data):
        return _ArrowColumns(data, names)
    out: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        s = data[name]
        if getattr(getattr(s, "dtype", None), "kind", "") in ("m", "M") or _is_time_column(data, name):
            out[name] = time_as_float(s)
        elif hasattr(s, "to_numpy"):  # a pandas Series
            import pandas as pd

            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                out[name] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                out[name] = s.to_numpy(dtype=object)
        else:
            out[name] = np.asarray(s)
    return out


def _take(cols: Mapping[str, Any], mask: np.ndarray) -> dict[str, Any]:
    idx = np.flatnonzero(mask)
    out = {}
    for k in cols:
        v = cols[k]
        out[k] = v.take(pa.array(idx)) if isinstance(v, (pa.Array, pa.ChunkedArray)) else v[idx]
    return out


def _decide(t: ColumnTest, rows: int, cfg: MonitorConfig) -> tuple[str, float, bool]:
    """``(test, statistic, drifted by distance)`` of one column (the module docstring says which)."""
    test = scaled_test(deciding_test(t.kind, min(rows, t.reference_rows) <= cfg.small_window_rows, cfg),
                       t.ref_constant, t.kind == DISCRETE)
    if t.kind == CONTINUOUS and test in ("chi2", "js"):  # on bins in the live monitor; here KS tests the raw values
        test = "ks"
    value = {"ks": t.statistic, "chi2": t.statistic, "wasserstein": t.wasserstein, "js": t.js, "psi": t.psi}[test]
    threshold = {"wasserstein": cfg.wasserstein_threshold, "js": cfg.js_threshold,
                 "psi": cfg.psi_threshold}.get(test, math.nan)
    sure = not t.p_value_upper >= 2 * cfg.alpha  # (as _family: a draw of U alone flags nothing)
    return test, value, distance_drifted(test, value, threshold, categories=t.kind != CONTINUOUS,
                                         p_value=t.p_value if sure else 1.0, alpha=cfg.alpha)


def _psi_band(value: float, bands: Sequence[float]) -> str:
    if not math.isfinite(value):
        return "unknown"
    return "significant" if value >= bands[1] else "moderate" if value >= bands[0] else "stable"


def _testable(t: ColumnTest) -> bool:
    """Values on both sides. A column with none on one side has nothing to test: it is left out of
    the family (its p-value would be a made-up 1, and it would count in the correction)."""
    return t.values > 0 and t.reference_values > 0


def _untestable(t: ColumnTest) -> str:
    """Why :func:`_testable` left ``t`` out, for ``not_tested``."""
    if t.reference_values == 0:
        return (f"no values in the reference (all {t.reference_rows} rows missing); the current data has values in "
                f"{1 - t.missing_rate:.1%} of its rows" if t.values else "no values on either side")
    return f"no values in the current data (all {t.rows} rows missing; the reference: {t.ref_missing_rate:.1%})"


def _family(groups: list[list[ColumnTest]], rows: list[int], judged: list[bool], cfg: MonitorConfig
            ) -> list[dict[str, dict[str, Any]]]:
    """The features of each group of one family (p-values corrected jointly), as JSON."""
    flat = [(g, t) for g, tests in enumerate(groups) for t in tests if _testable(t)]
    decided = [_decide(t, rows[g], cfg) for g, t in flat]
    by_p, by_d = [d[0] in P_VALUE_TESTS for d in decided], [d[2] for d in decided]
    adjusted, flags = feature_drift([t.p_value for _, t in flat], by_p, by_d, alpha=cfg.alpha,
                                    correction=cfg.correction, rule=cfg.dataset_rule)
    # a randomised p-value flags a column only where P(T >= t), corrected alike, is below 2 alpha too: a
    # draw of U within a large atom is no evidence (one rare row in 300 was flagged so; stats.randomised)
    flags &= feature_drift([t.p_value_upper for _, t in flat], by_p, by_d, alpha=2 * cfg.alpha,
                           correction=cfg.correction, rule=cfg.dataset_rule)[1]
    out: list[dict[str, dict[str, Any]]] = [{} for _ in groups]
    for (g, t), (test, value, _), adj, flag in zip(flat, decided, adjusted.tolist(), flags.tolist(), strict=True):
        out[g][t.column] = {
            "test": test, "statistic": value, "p_value": t.p_value, "p_value_upper": t.p_value_upper,
            "adjusted_p_value": adj,
            "drift": bool(judged[g] and flag), "kind": t.kind,
            "p_value_test": "ks" if t.kind == CONTINUOUS else "chi2", "ks": t.statistic if t.kind == CONTINUOUS
            else None, "chi2": t.statistic if t.kind != CONTINUOUS else None, "wasserstein": t.wasserstein,
            "js": t.js, "psi": t.psi, "psi_band": _psi_band(t.psi, cfg.psi_bands), "rows": t.rows,
            "reference_rows": t.reference_rows, "missing_rate": t.missing_rate, "ref_missing_rate": t.ref_missing_rate,
            "out_of_range_rate": t.out_of_range_rate, "unseen_rate": t.unseen_rate, "categories": t.categories,
            "mean": t.mean, "std": t.std, "unseen_expected": t.unseen_expected,
        }
    return out


def _type_of(data: Any, name: str) -> tuple[str, str]:
    """``(class, type)`` of a column: its class is number, text, time, empty (no values) or other."""
    if _arrow_like(data):
        t = data.schema.field(name).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        cls = ("empty" if pa.types.is_null(t) else  # no values: the missing rate says it
               "number" if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) else
               "text" if pa.types.is_string(t) or pa.types.is_large_string(t) else
               "time" if pa.types.is_temporal(t) else "other")
        return cls, str(t)
    dtype = getattr(data[name], "dtype", None)
    kind = getattr(dtype, "kind", "O")
    return {"i": "number", "u": "number", "f": "number", "M": "time", "m": "time"}.get(kind, "other"), str(dtype)


def _infinite_share(data: Any, name: str) -> float:
    """The share of ``name``'s values that are +-inf (0 for a column of no floats)."""
    values = _arrays(data, [name])[name]
    arr = values.to_numpy(zero_copy_only=False) if isinstance(values, (pa.Array, pa.ChunkedArray)) else values
    arr = np.asarray(arr)
    return float(np.isinf(arr).mean()) if arr.dtype.kind == "f" and arr.size else 0.0


def _beyond_noise(rate: float, limit: float, f: Mapping[str, Any]) -> bool:
    """:func:`~raymlops.stats.verdict.share_beyond_noise` of a column's out-of-range share."""
    n = round((f.get("rows") or 0) * (1 - (f["missing_rate"] if f["missing_rate"] == f["missing_rate"] else 0)))
    return share_beyond_noise(round(rate * n), n, limit)


def _anomalies(features: Mapping[str, Mapping[str, Any]], cfg: MonitorConfig, reference: Any, current: Any
               ) -> dict[str, list[str]]:
    """The data-quality findings of each column (the live monitor's limits, :func:`quality_checks`),
    and a column whose values changed class (numbers read as text: a value that does not parse)."""
    text = {"missing": lambda f, limit: f"missing values {f['ref_missing_rate']:.1%} -> {f['missing_rate']:.1%} "
                                         f"(limit: +{limit:.0%})",
            "out_of_range": lambda f, limit: f"{f['out_of_range_rate']:.1%} of the values outside the reference's "
                                              f"range (limit: {limit:.1%})",
            "unseen": lambda f, limit: (
                "the reference has no values in this column" if f["ref_missing_rate"] == 1.0 else
                f"{f['unseen_rate']:.1%} of the values "
                + ("are categories the reference does not have" if f["kind"] == CATEGORICAL
                   else "never occur in the reference") + f" (limit: {limit:.0%})")}
    out: dict[str, list[str]] = {}
    for name, f in features.items():
        (ref_class, ref_type), (cur_class, cur_type) = _type_of(reference, name), _type_of(current, name)
        found = [f"type {ref_type} -> {cur_type}"] if ref_class != cur_class and "empty" not in (ref_class, cur_class) \
            else []
        ref_rows, ref_missing = f.get("reference_rows") or 0, f["ref_missing_rate"]
        ref_values = round(ref_rows * (1 - ref_missing)) if ref_missing == ref_missing else 0  # (NaN: none)
        found += [text[what](f, limit) for what, value, limit in quality_checks(
            f["missing_rate"], f["ref_missing_rate"], f["out_of_range_rate"], f["unseen_rate"], quality_limits(cfg),
            ref_values, f.get("unseen_expected", 0.0)) if what != "out_of_range" or _beyond_noise(value, limit, f)]
        if f["kind"] != CATEGORICAL and (f["missing_rate"] or 0) > 0:  # ±inf counts as missing in the tests
            cur_inf, ref_inf = _infinite_share(current, name), _infinite_share(reference, name)
            if cur_inf > ref_inf:  # an infinity is no measurement (a division by zero upstream): no limit
                found.append(f"{cur_inf:.1%} of the values are +-inf (the reference: {ref_inf:.1%}); left out of "
                             "the tests, as missing values")
        if found:
            out[name] = found
    return out


def _clean(obj: Any) -> Any:
    """JSON-friendly: NaN/inf become None, numpy scalars plain numbers."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def check_tables(reference: Any, current: Any, config: MonitorConfig | None = None,
                 slice_columns: Sequence[str] = (), columns: Sequence[str] | None = None,
                 threads: int | None = None) -> dict[str, Any]:
    """Drift of ``current`` against ``reference`` (Arrow tables, pandas DataFrames or mappings of
    arrays; see the module docstring). ``threads``: columns tested at once (default: the CPUs)."""
    # Small samples' exact KS is scipy.stats' ks_2samp: scipy.stats (most of a second) is imported on a thread
    # while their columns are read. Large samples need it only for some p-values, after the columns' passes
    # (imported beside them it slowed them more than its import: 2 x 1 M x 30 floats 2.44-2.77 s, 2.12-2.17).
    small = max(_rows(reference), _rows(current)) <= KS_EXACT_MAX_N
    loading = preload_scipy() if small else None
    # The import holds the GIL for long stretches; a short switch interval hands it to the column workers.
    interval = sys.getswitchinterval()
    if loading is not None:
        sys.setswitchinterval(min(interval, 2e-4))
    try:
        return _check_tables(reference, current, config or MonitorConfig(), slice_columns, columns, threads)
    finally:
        if loading is not None:
            loading.join()
            sys.setswitchinterval(interval)


def _check_tables(reference: Any, current: Any, cfg: MonitorConfig, slice_columns: Sequence[str],
                  columns: Sequence[str] | None, threads: int | None) -> dict[str, Any]:
    slices = list(slice_columns) or list(cfg.slice_columns)
    ref_names, cur_names = _column_names(reference), _column_names(current)
    for which, names_ in (("reference", ref_names), ("current", cur_names)):  # a whole row as one category
        if hint := delimiter_hint(names_):
            raise ValidationError(f"the {which} data ({names_[0]!r}): {hint.removeprefix('; ')}")
    not_tested: dict[str, str] = {}  # by default, every column but the slices' and these (the module docstring)
    if columns is None:
        for i, c in enumerate(ref_names):
            if c == "":
                not_tested[c] = "a column without a name" + (": pandas writes its index so (DataFrame.to_csv(path, "
                                                             "index=False) leaves it out)" if i == 0 else "")
            elif c not in slices and _is_time_column(reference, c):
                not_tested[c] = "a time column: timestamps and dates move on between datasets; name it in " \
                                "columns to test it"
            elif c not in slices and (nested := _nested_type(reference, c)) is not None:
                not_tested[c] = f"a nested column ({nested}): no test compares lists or records"
        not_tested.update((c, "only in the current data: nothing to compare it with") for c in cur_names
                          if c not in ref_names and c not in slices)
    names = list(columns) if columns is not None else [c for c in ref_names if c not in slices and c not in not_tested]
    for c in names if columns is not None else ():
        if c in ref_names and (nested := _nested_type(reference, c)) is not None:
            raise ValidationError(f"column {c!r} is a nested column ({nested}): no test compares lists or records")
    neither = [c for c in (*names, *slices) if c not in cur_names and c not in ref_names]
    if neither:  # a typo in --column / --slice, most likely
        raise ValidationError(f"neither table has columns {neither}; the reference's: "
                              f"{', '.join(ref_names[:12])}{', ...' if len(ref_names) > 12 else ''}")
    for which, have in (("current", cur_names), ("reference", ref_names)):
        lacking = [c for c in (*names, *slices) if c not in have]
        if lacking:
            folded = {n.casefold(): n for n in have}
            near = [f"{folded[c.casefold()]!r} for {c!r}" for c in lacking if c.casefold() in folded]
            hint = f"; it has {', '.join(near[:5])} (another case)" if near else delimiter_hint(have)
            raise ValidationError(f"the {which} data lacks columns {lacking}{hint}")
    n_ref, n_cur = _rows(reference), _rows(current)
    if n_cur == 0:
        raise ValidationError("the current data has no rows")
    if n_ref == 0:
        raise ValidationError("the reference data has no rows")
    categorical = [c for c in cfg.categorical if c in names]
    ref_cols, cur_cols = numbers_read_as_text(_arrays(reference, [*names, *slices]), _arrays(current, [
        *names, *slices]), [c for c in names if c not in categorical])
    times = [c for c in names if c not in categorical and _is_time_column(reference, c)]  # named: continuous

    def run(r: Mapping[str, Any], c: Mapping[str, Any]) -> list[ColumnTest]:
        return compare(r, c, columns=names, categorical=categorical, discrete_max_values=cfg.discrete_max_values,
                       n_bins=cfg.n_bins, threads=threads, continuous=times, randomise=cfg.p_values == "randomised")

    overall_tests = run(ref_cols, cur_cols)
    judged = min(n_cur, n_ref) >= max(cfg.min_rows, 1)  # either side too small: no verdict
    overall = _family([overall_tests], [n_cur], [judged], cfg)[0]
    empty = {t.column: t for t in overall_tests if not _testable(t)}
    not_tested.update((name, _untestable(t)) for name, t in empty.items())
    quality = {name: {"kind": t.kind, "missing_rate": t.missing_rate, "ref_missing_rate": t.ref_missing_rate,
                      "out_of_range_rate": t.out_of_range_rate,
                      # every value of a column the reference has none of is one the reference never saw
                      "unseen_rate": 1.0 - t.missing_rate if t.reference_values == 0 else t.unseen_rate}
               for name, t in empty.items()}  # their quality still counts (an emptied or filled column is news)
    drifted = [n for n, f in overall.items() if f["drift"]]
    result: dict[str, Any] = {
        "drift": bool(judged and dataset_drift([f["drift"] for f in overall.values()], rule=cfg.dataset_rule,
                                               share=cfg.dataset_drift_share)),
        "judged": judged,  # False: scores only (the live monitor's rule for small windows)
        "not_judged": None if judged else f"the {'current' if n_cur <= n_ref else 'reference'} data has "
        f"{min(n_cur, n_ref)} rows, fewer than monitor.min_rows ({cfg.min_rows}): scores only, no verdict",
        "rows": {"reference": int(n_ref), "current": int(n_cur)},
        "share_drifted": len(drifted) / len(overall) if overall else 0.0,
        "drifted_features": drifted,
        "correction": cfg.correction,
        "dataset_rule": cfg.dataset_rule,
        "alpha": cfg.alpha,
        "engine": "exact",
        "features": overall,
        "slices": (cut := _slices(ref_cols, cur_cols, slices, cfg, run) if slices else ({}, None))[0],
        "slice_note": "; ".join(filter(None, [slice_note(ref_cols, slices, cfg.max_slices), cut[1]])) or None
        if slices else None,
        "not_tested": not_tested,
        "anomalies": _anomalies({**overall, **quality}, cfg, reference, current),
    }
    return dict(_clean(result))


def _slices(ref_cols: Mapping[str, Any], cur_cols: Mapping[str, Any], slices: Sequence[str], cfg: MonitorConfig,
            run: Any) -> tuple[dict[str, Any], str | None]:
    """Each slice (a combination of the slice columns' values; the ``max_slices`` most frequent in
    the reference, the rest ``other``) tested on its own rows, one family for all of them; and a
    word for the current rows in slices the reference has no rows of (:func:`unmatched_note`)."""
    def labels(cols: Mapping[str, Any]) -> np.ndarray:  # "col=value[,col=value]", as the live monitor names them
        parts = [np.asarray([f"{s}={v}" for v in slice_labels(cols[s]).tolist()], dtype=object) for s in slices]
        return np.asarray([",".join(x) for x in zip(*parts, strict=True)], dtype=object)

    ref_l, cur_l = labels(ref_cols), labels(cur_cols)
    values, counts = np.unique(ref_l, return_counts=True)
    keep = [str(v) for v in values[np.argsort(-counts, kind="stable")][: cfg.max_slices]]
    kept = np.isin(cur_l, keep)
    # (with more reference values than max_slices, they are judged in 'other', beside its reference rows)
    unmatched = unmatched_note(cur_l[~kept], cur_l.size) if len(keep) == len(values) else None
    ref_l = np.where(np.isin(ref_l, keep), ref_l, "other")
    cur_l = np.where(kept, cur_l, "other")
    order = keep + (["other"] if len(keep) < len(values) or not kept.all() else [])
    groups, rows, judged, present = [], [], [], []
    for name in order:
        rm, cm = ref_l == name, cur_l == name
        n = int(cm.sum())
        if n == 0 or not rm.any():
            continue
        groups.append(run(_take(ref_cols, rm), _take(cur_cols, cm)))
        rows.append(n)
        judged.append(n >= max(cfg.min_rows, 1))
        present.append(name)
    features = _family(groups, rows, judged, cfg) if groups else []
    out = {}
    for name, n, ok, feats in zip(present, rows, judged, features, strict=True):
        flags = [f["drift"] for f in feats.values()]
        out[name] = {"drift": bool(ok and dataset_drift(flags, rule=cfg.dataset_rule, share=cfg.dataset_drift_share)),
                     "rows": n, "judged": ok, "drifted_features": [k for k, f in feats.items() if f["drift"]],
                     "features": feats}
    return out, unmatched

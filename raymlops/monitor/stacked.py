"""Window verdicts of every column of all rows and of every non-empty slice at once.

The counts of all rows and of each non-empty slice are stacked into ``(groups, buckets)``
matrices, and each statistic is a few whole-array numpy passes over them (``cumsum`` for the
CDFs, differences of the running totals for the coarse counts, the count statistics of
:mod:`raymlops.stats.drift` (chi-square only for the columns it may judge), p-values from array
forms of the Kolmogorov and chi-square distributions): a window close costs a few dozen numpy
calls, not a Python loop over columns x slices. The definitions are those of
:mod:`raymlops.monitor.verdicts` (whose per-column code is the reference implementation the
tests hold this equal to, to rounding).
"""

from __future__ import annotations

import weakref
from dataclasses import fields
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.config import MonitorConfig
from raymlops.monitor.reference import CATEGORICAL, PREDICTION, MonitorReference
from raymlops.monitor.state import StreamState, moment_tables
from raymlops.monitor.verdicts import ColumnVerdict, WindowVerdict, lazy_slice
from raymlops.stats.drift import chi2_rows, distance_from_shares, ks_p_values, row_shares
from raymlops.stats.verdict import deciding_test, feature_drift_families

__all__ = ["evaluate_stacked", "evaluate_stacked_many"]

# A window is judged on every column of every slice at once: the counts of all rows and of each
# non-empty slice are stacked into ``(groups, buckets)`` matrices, and each statistic is a few
# whole-array numpy passes over them (``cumsum`` for the CDFs and, by differences, the coarse
# counts; :mod:`raymlops.stats.drift`'s count statistics). The per-column definitions
# are those of :func:`binned_ks`, :func:`binned_wasserstein` and the count statistics; the
# results agree with them to rounding (sums over zero-padded rows may add in another order).

#: test names, indexed by the codes the stacked path selects with
_TESTS = ("ks", "chi2", "wasserstein", "js", "psi")
_TEST_NAMES = np.array(_TESTS, dtype=object)
_KS, _CHI2, _WASSERSTEIN, _JS, _PSI = range(len(_TESTS))


class _Layout:
    """Gather tables of one reference's buckets, and its own side of every statistic; built once
    per reference (which never changes) and cached, so a window close only reads its counts.

    ``fine`` holds, per numeric column, where the running total of all buckets stands after each of
    its buckets before the missing one (below, interior, above), padded with the last; ``row_widths``
    the bin widths ``diff(edges)`` padded with zeros; ``coarse_start`` / ``coarse_end``, per column
    and coarse bucket (padded with empty runs), where the running total stands before its first
    bucket and after its last (a coarse bucket is a run of adjacent buckets), so its count is one
    difference. Group 0 is all rows, group ``1 + s`` slice ``s``. It holds about as much memory as
    one state.
    """

    __slots__ = ("above", "all_numeric", "below", "buckets", "categorical", "chi2_columns", "coarse_end",
                 "coarse_start", "fine", "is_discrete", "is_feature", "is_numeric", "kinds", "local", "missing",
                 "n_coarse", "names", "numeric", "numeric_list", "offsets", "other", "prediction", "ref", "ref_mean",
                 "any_constant", "by_category", "ref_constant", "ref_scale", "ref_taken", "row_widths", "unseen")

    def __init__(self, reference: MonitorReference) -> None:
        cols = reference.columns
        self.names = [c.name for c in cols]
        self.kinds = [c.kind for c in cols]
        self.offsets = reference.offsets.astype(np.int64)
        self.numeric = np.array([i for i, c in enumerate(cols) if c.kind != CATEGORICAL], dtype=np.int64)
        numeric = [cols[i] for i in self.numeric.tolist()]
        self.buckets = reference.n_buckets
        width = max((c.edges.size + 1 for c in numeric), default=1)
        self.fine = np.empty((len(numeric), width), dtype=np.int64)
        widths = np.zeros((len(numeric), width), dtype=np.float64)  # the last stays 0 (see row_widths)
        for j, (i, c) in enumerate(zip(self.numeric.tolist(), numeric, strict=True)):
            # running totals after each fine bucket; past the column's last one, its last again
            self.fine[j] = self.offsets[i] + 1 + np.minimum(np.arange(width), c.edges.size)
            widths[j, : c.edges.size - 1] = np.diff(c.edges)
        #: each numeric column's bin widths ``diff(edges)`` padded with zeros to one per fine edge, all
        #: columns in a row (the trapezoids' factors, :meth:`_Stats._numeric`)
        self.row_widths = widths.ravel()
        self.below = self.offsets[self.numeric]
        self.above = self.below + np.array([c.edges.size for c in numeric], dtype=np.int64)
        self.missing = self.offsets + reference.sizes - 1
        self.ref_mean = np.array([c.mean for c in numeric], dtype=np.float64)
        self.ref_scale = np.array([c.std if c.std > 0 else 1.0 for c in numeric], dtype=np.float64)
        #: numeric columns with one value in every reference row: no scale for Wasserstein (verdict.scaled_test)
        self.ref_constant = np.array([c.kind != CATEGORICAL and c.std == 0 for c in cols], dtype=bool)
        self.any_constant = bool(self.ref_constant.any())
        self.unseen = np.array([c.kind == CATEGORICAL and c.complete for c in cols], dtype=bool)
        self.other = self.offsets + np.array([len(c.categories) for c in cols], dtype=np.int64)
        self.n_coarse = max(c.n_coarse for c in cols)
        runs = np.arange(self.n_coarse)
        self.coarse_start = np.stack([self.offsets[i] + np.searchsorted(c.coarse, runs, side="left")
                                      for i, c in enumerate(cols)])
        self.coarse_end = np.stack([self.offsets[i] + np.searchsorted(c.coarse, runs, side="right")
                                    for i, c in enumerate(cols)])
        self.is_numeric = np.array([c.kind != CATEGORICAL for c in cols], dtype=bool)
        self.is_discrete = np.array([c.discrete for c in cols], dtype=bool)
        #: the columns chi-square may judge: categorical and discrete ones
        self.chi2_columns = np.flatnonzero(~self.is_numeric | self.is_discrete)
        #: the same as a mask: a distance over these columns' categories needs chi-square p < alpha too
        self.by_category = ~self.is_numeric | self.is_discrete
        self.is_feature = np.array([c.name != PREDICTION for c in cols], dtype=bool)
        self.prediction = self.names.index(PREDICTION) if PREDICTION in self.names else None
        self.numeric_list = self.is_numeric.tolist()
        self.categorical = np.flatnonzero(~self.is_numeric)
        self.all_numeric = bool(self.is_numeric.all())
        sizes = set(reference.sizes.tolist())
        #: ``(buckets per column, coarse starts, coarse ends)`` when every column is numeric with
        #: the same number of buckets (the usual reference): :meth:`side` then takes running totals
        #: per column, and the coarse runs' bounds index them (column ``c``'s total after ``k`` of
        #: its buckets is at ``c * (size + 1) + k``)
        self.local: tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None
        if self.all_numeric and len(sizes) == 1:
            size = sizes.pop()
            shift = (np.arange(len(cols), dtype=np.int64) * (size + 1) - self.offsets)[:, None]
            self.local = (size, self.coarse_start + shift, self.coarse_end + shift)
        self.ref = self.side(np.concatenate([reference.counts.sum(axis=0, keepdims=True), reference.counts])).frozen()
        self.ref_taken: dict[bytes, _Side] = {}

    def ref_side(self, groups: npt.NDArray[np.int64]) -> _Side:
        """The reference side of ``groups`` (indices into its groups). A stream's passes mostly
        stack the same groups (every slice of the same number of windows), so the last few are
        kept rather than gathered again at every pass; the sides are never written to."""
        if groups.size == self.ref.n.shape[0] and np.array_equal(groups, np.arange(groups.size)):
            return self.ref
        key = groups.tobytes()
        side = self.ref_taken.get(key)
        if side is None:
            if len(self.ref_taken) >= _REF_SIDES_KEPT:
                self.ref_taken.pop(next(iter(self.ref_taken)))
            side = self.ref_taken[key] = self.ref.take(groups).frozen()
        return side

    def side(self, counts: npt.NDArray[np.int64]) -> _Side:
        """One side (reference or current) of every statistic, from ``(groups, buckets)`` counts."""
        if self.local is not None:
            return self._side_by_column(counts, *self.local)
        # running totals in integers (numpy's integer cumsum runs about 3 times as fast as one that
        # casts to doubles as it goes); every total and difference is exact, and so is each one's
        # conversion to a double, so the statistics read the same doubles as from double totals
        running = np.empty((counts.shape[0], self.buckets + 1), dtype=np.int64)
        running[:, 0] = 0
        np.cumsum(counts, axis=1, out=running[:, 1:])
        # each numeric column's CDF at its fine edges: running totals less the total before it
        below = np.take(running, self.fine, axis=1)
        below -= running[:, self.below][..., None]
        n = below[..., -1].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            cdf = np.divide(below, n[..., None])  # no values: 0 / 0, NaN
        coarse = np.take(running, self.coarse_end, axis=1)  # (groups, columns, coarse buckets), C order
        coarse -= np.take(running, self.coarse_start, axis=1)
        rows = np.add.reduceat(counts, self.offsets, axis=1)
        return _Side(counts, cdf, n, coarse.astype(np.float64), rows)

    def _side_by_column(self, counts: npt.NDArray[np.int64], size: int, starts: npt.NDArray[np.int64],
                        ends: npt.NDArray[np.int64]) -> _Side:
        """:meth:`side` when every column is numeric with ``size`` buckets: running totals within
        each column (``(groups, columns, 1 + size)``, from 0), so a CDF is a column's totals after
        each bucket but the missing one, divided by the last of them, with no subtraction, and a
        column's rows its last total. Every total is an integer, exact in doubles, so each value
        is the one :meth:`side` gets from the running totals over all buckets."""
        g = counts.shape[0]
        local = np.empty((g, len(self.names), size + 1), dtype=np.int64)
        local[..., 0] = 0
        np.cumsum(counts.reshape(g, -1, size), axis=-1, out=local[..., 1:])
        n = local[..., size - 1].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            cdf = np.divide(local[..., 1:size], n[..., None])  # no values: 0 / 0, NaN
        flat = local.reshape(g, -1)
        coarse = np.take(flat, ends, axis=1)  # (groups, columns, coarse buckets), C order
        coarse -= np.take(flat, starts, axis=1)
        return _Side(counts, cdf, n, coarse.astype(np.float64), local[..., size].copy())


class _Side:
    """Counts, CDFs at the fine edges and their totals (missing values excluded), coarse counts
    and rows per column, of ``groups`` stacked count rows."""

    __slots__ = ("_shares", "cdf", "coarse", "counts", "n", "rows")

    def __init__(self, counts: npt.NDArray[np.int64], cdf: npt.NDArray[np.float64], n: npt.NDArray[np.float64],
                 coarse: npt.NDArray[np.float64], rows: npt.NDArray[np.int64]) -> None:
        self.counts, self.cdf, self.n, self.coarse, self.rows = counts, cdf, n, coarse, rows
        self._shares: tuple[npt.NDArray[np.float64], ...] | None = None

    def shares(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The coarse counts' :func:`row_shares`, computed once: a reference side is compared with
        the current side of every pass."""
        if self._shares is None:
            self._shares = row_shares(self.coarse)
        total, p, clipped = self._shares
        return total, p, clipped

    def take(self, groups: npt.NDArray[np.int64]) -> _Side:
        return _Side(self.counts[groups], self.cdf[groups], self.n[groups], self.coarse[groups], self.rows[groups])

    def frozen(self) -> _Side:
        """This side, its arrays made read-only (a reference side is shared by every pass)."""
        for name in ("cdf", "coarse", "counts", "n", "rows"):
            getattr(self, name).flags.writeable = False
        return self


#: reference sides of stacked groups kept per reference (:meth:`_Layout.ref_side`)
_REF_SIDES_KEPT = 4

_LAYOUTS: weakref.WeakKeyDictionary[MonitorReference, _Layout] = weakref.WeakKeyDictionary()


def _layout(reference: MonitorReference) -> _Layout:
    layout = _LAYOUTS.get(reference)
    if layout is None:
        layout = _LAYOUTS[reference] = _Layout(reference)
    return layout


class _Stats:
    """Every statistic of every column (axis 1) of every group (axis 0) of a window, and the test
    each one is judged by (``code``, an index into ``_TESTS``) with its statistic and p-value.
    Divisions by zero rows give NaN on purpose (``0 / 0``), as the per-column code's guards do."""

    def __init__(self, lay: _Layout, ref: _Side, cur: _Side, mean: npt.NDArray[np.float64],
                 std: npt.NDArray[np.float64], cfg: MonitorConfig) -> None:
        g, k = cur.rows.shape
        num = lay.numeric
        self.rows, self.ref_rows = cur.rows, ref.rows
        self.js, self.psi = distance_from_shares(ref.shares(), cur.coarse)
        self._chi2(lay, ref, cur, cfg)
        self.missing_rate = cur.counts[:, lay.missing] / cur.rows
        self.ref_missing_rate = ref.counts[:, lay.missing] / ref.rows
        self.unseen_rate = np.where(lay.unseen, cur.counts[:, lay.other] / cur.rows, np.nan)
        self.ks, self.ks_p, self.wasserstein, self.out_of_range_rate, self.mean, self.std = np.full(
            (6, g, k), np.nan)
        self.ks_p[:] = 1.0
        if num.size:
            self._numeric(lay, ref, cur, mean)
            self.mean[:, num], self.std[:, num] = mean, std
        self._choose(lay, cfg)

    def _chi2(self, lay: _Layout, ref: _Side, cur: _Side, cfg: MonitorConfig) -> None:
        """Chi-square of the columns that may be judged by it (categorical and discrete ones, numeric
        ones with ``numeric_test: chi2``); it is in no verdict otherwise (NaN, p-value 1)."""
        cat = lay.chi2_columns
        if cfg.numeric_test == "chi2" or cat.size == len(lay.names):
            self.chi2, self.chi2_p = chi2_rows(ref.coarse, cur.coarse)
            return
        self.chi2, self.chi2_p = np.full(self.rows.shape, np.nan), np.ones(self.rows.shape)
        if cat.size:  # np.take keeps C order, so each row adds in the same order however many are stacked
            self.chi2[:, cat], self.chi2_p[:, cat] = chi2_rows(np.take(ref.coarse, cat, axis=1),
                                                               np.take(cur.coarse, cat, axis=1))

    def _numeric(self, lay: _Layout, ref: _Side, cur: _Side, mean: npt.NDArray[np.float64]) -> None:
        """KS (largest CDF gap at the fine edges) and Wasserstein (trapezoids between the CDFs,
        at least the gap of the means) of every numeric column, as :func:`binned_ks` and
        :func:`binned_wasserstein` compute them one at a time (an empty side: NaN, p-value 1)."""
        num = lay.numeric
        n, m = ref.n, cur.n
        gap = ref.cdf - cur.cdf
        np.abs(gap, out=gap)
        d = gap.max(axis=-1)
        # trapezoids: each gap plus the next, times the bin's width, halved (a multiplication by 0.5:
        # the same real number as a division by 2, so the same rounding, at a third of its cost),
        # as whole-buffer passes (a row's last sum pairs it with the next row's first; its width is
        # 0 and the sum leaves it out), then summed row by row as before
        g, k, w = gap.shape
        flat = gap.reshape(-1)
        trapezoids = np.empty(flat.size, dtype=np.float64)
        trapezoids[-1] = 0.0
        np.add(flat[:-1], flat[1:], out=trapezoids[:-1])
        per_group = trapezoids.reshape(g, k * w)
        np.multiply(per_group, lay.row_widths, out=per_group)
        trapezoids *= 0.5
        area = trapezoids.reshape(g, k, w)[..., :-1].sum(axis=-1)
        mean_gap = np.where(np.isfinite(mean), np.abs(mean - lay.ref_mean), 0.0)
        self.ks[:, num] = d
        self.ks_p[:, num] = np.where((n == 0) | (m == 0), 1.0, ks_p_values(d, n, m, method="stephens"))
        self.wasserstein[:, num] = np.where(mean_gap > area, mean_gap, area) / lay.ref_scale
        self.out_of_range_rate[:, num] = (cur.counts[:, lay.below] + cur.counts[:, lay.above]) / cur.rows[:, num]

    def _choose(self, lay: _Layout, cfg: MonitorConfig) -> None:
        """The test of each column (Evidently's defaults for ``auto``), its statistic and p-value."""
        small = np.minimum(self.rows, self.ref_rows) <= cfg.small_window_rows  # either sample small

        def code(kind: str) -> npt.NDArray[np.int64]:  # each kind's test for small and large groups
            return np.where(small, _TESTS.index(deciding_test(kind, True, cfg)),
                            _TESTS.index(deciding_test(kind, False, cfg)))

        num, disc, cat = code("numeric"), code("discrete"), code(CATEGORICAL)
        chosen = np.where(lay.is_numeric, np.where(lay.is_discrete, disc, num), cat)  # of every group
        if lay.any_constant:  # Wasserstein over a constant reference: the p-value test (verdict.scaled_test)
            chosen = np.where(lay.ref_constant & (chosen == _WASSERSTEIN), np.where(lay.is_discrete, _CHI2, _KS),
                              chosen)
        self.code = chosen if chosen.shape == small.shape else np.broadcast_to(chosen, small.shape)
        self.statistic = np.choose(self.code, [self.ks, self.chi2, self.wasserstein, self.js, self.psi])
        self.p_value = np.where(lay.is_numeric & ~lay.is_discrete & (self.code != _CHI2), self.ks_p, self.chi2_p)


#: ColumnVerdict's fields in order (for :func:`_verdict`)
_FIELDS = tuple(f.name for f in fields(ColumnVerdict))
_new = object.__new__


def _verdict(values: tuple[Any, ...]) -> ColumnVerdict:
    """A ColumnVerdict of its field values in order, without the frozen ``__init__``'s one
    ``object.__setattr__`` per field: a window of 12 slices x 30 columns builds 360 of them, and
    this halves their cost. The result is the same frozen value (equal to ``ColumnVerdict(*values)``)."""
    verdict: ColumnVerdict = _new(ColumnVerdict)
    verdict.__dict__.update(zip(_FIELDS, values, strict=True))
    return verdict


class _Table:
    """The ColumnVerdict fields of every column (axis 1) of every group (axis 0) of one stacked
    pass, as the arrays they were computed in (:class:`~raymlops.monitor.verdicts.ColumnTable`):
    a slice verdict keeps its group's row and builds its ColumnVerdicts only when they are read."""

    __slots__ = ("_anomalous", "all_numeric", "bands", "code", "floats", "kinds", "names", "numeric")

    def __init__(self, lay: _Layout, st: _Stats, adjusted: npt.NDArray[np.float64], drift: npt.NDArray[np.bool_],
                 cfg: MonitorConfig) -> None:
        self.names, self.kinds, self.numeric, self.all_numeric = lay.names, lay.kinds, lay.numeric_list, lay.all_numeric
        self.bands = tuple(cfg.psi_bands)
        self.code = st.code
        self._anomalous: tuple[tuple[float, float, float], npt.NDArray[np.bool_]] | None = None
        #: ColumnVerdict's fields after ``test``, in order, by name (``psi_band`` is derived from ``psi``)
        self.floats: dict[str, npt.NDArray[Any]] = {
            "statistic": st.statistic, "p_value": st.p_value, "adjusted_p_value": adjusted, "drift": drift,
            "ks": st.ks, "wasserstein": st.wasserstein, "js": st.js, "psi": st.psi, "rows": st.rows,
            "missing_rate": st.missing_rate, "ref_missing_rate": st.ref_missing_rate,
            "out_of_range_rate": st.out_of_range_rate, "unseen_rate": st.unseen_rate, "mean": st.mean, "std": st.std}

    def values(self, row: int, name: str) -> npt.NDArray[np.float64]:
        return self.floats[name][row].astype(np.float64)

    def anomalous(self, row: int, limits: tuple[float, float, float]) -> list[int]:
        """The columns of row ``row`` whose missing-rate increase, out-of-range rate or unseen rate
        is finite and above its limit (``limits``, in that order), as
        :meth:`~raymlops.monitor.verdicts.SliceVerdict.anomalous` finds them from the row's values: the
        same comparisons, made once for every row of the pass (each window's all-rows row reads it)."""
        cached = self._anomalous
        if cached is None or cached[0] != limits:
            f = self.floats
            with np.errstate(invalid="ignore"):
                rates = np.stack([f["missing_rate"] - f["ref_missing_rate"], f["out_of_range_rate"], f["unseen_rate"]])
                bound = np.array(limits, dtype=np.float64)[:, None, None]
                cached = self._anomalous = (limits, ((rates > bound) & np.isfinite(rates)).any(axis=0))
        return np.flatnonzero(cached[1][row]).tolist()

    def verdicts(self, row: int) -> tuple[ColumnVerdict, ...]:
        """Row ``row``'s ColumnVerdicts, in column order."""
        a = {name: v[row].tolist() for name, v in self.floats.items()}
        psi = self.floats["psi"][row]
        low, high = self.bands
        with np.errstate(invalid="ignore"):  # NaN: "unknown", as psi_band says
            band = np.where(~np.isfinite(psi), "unknown", np.where(
                psi >= high, "significant", np.where(psi >= low, "moderate", "stable"))).tolist()
        mean, std = a["mean"], a["std"]
        if not self.all_numeric:
            mean, std = ([v if is_num else None for v, is_num in zip(x, self.numeric, strict=True)]
                         for x in (mean, std))
        fields = (self.names, self.kinds, _TEST_NAMES[self.code[row]].tolist(), a["statistic"], a["p_value"],
                  a["adjusted_p_value"], a["drift"], a["ks"], a["wasserstein"], a["js"], a["psi"], band, a["rows"],
                  a["missing_rate"], a["ref_missing_rate"], a["out_of_range_rate"], a["unseen_rate"], mean, std)
        return tuple(_verdict(values) for values in zip(*fields, strict=True))


def _family(lay: _Layout, st: _Stats, families: list[tuple[int, int]], judged: npt.NDArray[np.bool_],
            cfg: MonitorConfig) -> _Table:
    """Correct the p-values of each family of rows of ``st`` (``families``: consecutive
    ``(start, stop)`` row ranges covering every row) jointly, every family in one set of whole-array
    passes; returns every row's verdicts as a table. ``judged``: per row."""
    p, code, stat = st.p_value, st.code, st.statistic
    thresholds = np.array([np.nan, np.nan, cfg.wasserstein_threshold, cfg.js_threshold, cfg.psi_threshold])
    by_distance = np.isfinite(stat) & (stat >= thresholds[code])
    # a distance over categories needs its chi-square p-value below alpha too (verdict.distance_drifted)
    over_categories = lay.by_category & ((code == _JS) | (code == _PSI))
    by_distance &= ~over_categories | (p < cfg.alpha)
    adjusted, flags = feature_drift_families(p, (code == _KS) | (code == _CHI2), by_distance, families,
                                             alpha=cfg.alpha, correction=cfg.correction, rule=cfg.dataset_rule)
    return _Table(lay, st, adjusted, judged[:, None] & flags, cfg)


def _slices(lay: _Layout, table: _Table, judged: npt.NDArray[np.bool_], cfg: MonitorConfig
            ) -> list[tuple[tuple[str, ...], float, bool, bool]]:
    """Per row of ``table``: the drifted features, their share, the dataset verdict and the
    prediction's drift flag, as :func:`~raymlops.monitor.verdicts._slice` finds them."""
    drift = table.floats["drift"]
    features = drift & lay.is_feature
    count = features.sum(axis=1)
    n = int(lay.is_feature.sum())
    share = count / n if n else np.zeros(count.shape)
    dataset = (count > 0) if cfg.dataset_rule == "any" else (share >= cfg.dataset_drift_share) & (n > 0)
    dataset &= judged
    pred = drift[:, lay.prediction] if lay.prediction is not None else np.zeros(count.shape, dtype=bool)
    names = lay.names
    return [(tuple(names[j] for j in np.flatnonzero(features[row]).tolist()) if c else (), sh, d, pr)
            for row, (c, sh, d, pr) in enumerate(zip(count.tolist(), share.tolist(), dataset.tolist(), pred.tolist(),
                                                     strict=True))]


def evaluate_stacked(state: StreamState, cfg: MonitorConfig, ref: MonitorReference) -> WindowVerdict:
    """Every column of all rows and of each non-empty slice in whole-array passes."""
    return evaluate_stacked_many([state], cfg, ref)[0]


def evaluate_stacked_many(states: list[StreamState], cfg: MonitorConfig, ref: MonitorReference
                          ) -> list[WindowVerdict]:
    """:func:`evaluate_stacked` of several windows' states at once: the groups (all rows, then
    each non-empty slice) of every window are stacked into one set of matrices, so the statistics
    cost one round of numpy calls for all of them; each window is then judged (corrected) alone.
    Every statistic is computed row by row (reductions along the last axis), so a window's
    verdict is the same, to the last bit, as when it is evaluated alone."""
    lay = _layout(ref)
    _, mean, std = moment_tables(states)  # (window, group, numeric column)
    slice_rows = [state.slice_rows() for state in states]
    rows = [int(r.sum()) for r in slice_rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        if ref.slice_columns:
            present = [np.flatnonzero(r > 0) for r in slice_rows]
            groups = [np.concatenate([[0], p + 1]) for p in present]
            # each window's all-rows counts, then its present slices' (written in place: no pieces to join)
            cur = np.empty((sum(g.size for g in groups), ref.n_buckets), dtype=np.int64)
            first = 0
            for state, p in zip(states, present, strict=True):
                np.sum(state.counts, axis=0, out=cur[first])
                np.take(state.counts, p, axis=0, out=cur[first + 1: first + 1 + p.size])
                first += 1 + p.size
            every = np.concatenate(groups)
            owner = np.repeat(np.arange(len(states)), [g.size for g in groups])
            st = _Stats(lay, lay.ref_side(every), lay.side(cur), mean[owner, every], std[owner, every], cfg)
        else:  # one slice: its counts are all rows'
            present = [np.empty(0, dtype=np.int64)] * len(states)
            cur = np.concatenate([state.counts for state in states])
            st = _Stats(lay, lay.ref_side(np.zeros(len(states), dtype=np.int64)), lay.side(cur), mean[:, 0], std[:, 0],
                        cfg)
        # one family per window (all rows) and one per window's slices (every (slice, feature)
        # test), each corrected alone, all judged in one pass
        families: list[tuple[int, int]] = []
        judged_rows: list[bool] = []
        first = 0
        for n, r, p in zip(rows, slice_rows, present, strict=True):
            families.append((first, first + 1))
            judged_rows.append(n > 0 and n >= cfg.min_rows)
            if p.size:
                families.append((first + 1, first + 1 + p.size))
                judged_rows += (r[p] >= max(cfg.min_rows, 1)).tolist()
            first += 1 + p.size
        judged = np.array(judged_rows, dtype=bool)
        table = _family(lay, st, families, judged, cfg)
        summaries = _slices(lay, table, judged, cfg)
    out = []
    first = 0
    for n, r, p in zip(rows, slice_rows, present, strict=True):
        overall = lazy_slice("all", n, n > 0 and n >= cfg.min_rows, table, first, *summaries[first])
        if not ref.slice_columns:
            out.append(WindowVerdict(rows=n, correction=cfg.correction, overall=overall))
            first += 1
            continue
        sizes = r[p]
        ok = sizes >= max(cfg.min_rows, 1)
        slices = tuple(lazy_slice(ref.slices[s], m, o, table, first + 1 + i, *summaries[first + 1 + i])
                       for i, (s, m, o) in enumerate(zip(p.tolist(), sizes.tolist(), ok.tolist(), strict=True)))
        out.append(WindowVerdict(rows=n, correction=cfg.correction, overall=overall, slices=slices))
        first += 1 + p.size
    return out

"""Differential monitoring: champion vs challenger on the same requests (shadow or canary).

Each version's predictions are counted per label (prediction distribution), and rows that
carry request ids are paired across versions in a bounded pending map; a pair counts towards
agreement overall and in the champion row's slice. At the end of each window the prediction
distributions are compared (Jensen-Shannon distance), as are the agreement rate and each
slice's agreement against the overall one; beyond the configured bounds, an alert.

Which version is the champion follows serving: each batch from a replica says the *role* it was
served in (``champion``, ``challenger`` for a canary answer, ``shadow`` for a challenger's copy)
and the traffic table's ``epoch`` (:meth:`DifferentialTracker.follow`). The champion is the
version of the newest champion batch by epoch, so after ``models promote`` / ``rollback`` or a
challenger swap the new champion's rows count as champion rows (drift windows, label store) and
a replica still serving the older table for a moment cannot switch it back (only a long run of
such batches, with none from the current champion, does: the control actor restarted). Without roles (an
older replica, a direct ``ingest``), the configured champion or the first version seen is it.
Trackers of several monitor shards merge (:meth:`DifferentialTracker.merged`).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from typing import Any

import numpy as np

from raymlops.config import MonitorDifferentialConfig
from raymlops.monitor.alerts import Alert
from raymlops.monitor.reference import labels_of
from raymlops.stats.agreement import labels_agree
from raymlops.stats.drift import compare_rows

__all__ = ["CHAMPION", "ROLES", "DifferentialTracker"]

_MAX_LABELS = 100  # distinct prediction labels counted per version; the rest is "(other)"
CHAMPION = "champion"
ROLES = (CHAMPION, "challenger", "shadow")
#: champion rows kept while no other version answers (a shadow's copies of them come in just after)
_ALONE_PENDING = 2_000
_EPOCH_RESET_BATCHES = 50  # older-epoch champion batches in a row, none of the current one: epochs restarted


def _bins(values: np.ndarray, width: float) -> np.ndarray:
    """A regression's predictions as the labels of ``width``-wide bins (their distribution is
    compared on these: every float is a value of its own)."""
    f = np.asarray(values, dtype=np.float64)
    out = np.full(f.size, "<missing>", dtype=object)
    ok = np.isfinite(f)
    out[ok] = np.floor(f[ok] / width).astype(np.int64).astype(str)
    return out


class DifferentialTracker:
    """``regression``: predictions are numbers; with ``cfg.tolerance`` two of them agree within
    it and distributions are compared on bins that wide (without it: equal values, as labels)."""

    def __init__(self, cfg: MonitorDifferentialConfig, slices: tuple[str, ...], regression: bool = False) -> None:
        self.cfg = cfg
        self.slices = slices
        self.tolerance = cfg.tolerance if regression else None
        self.champion: str | None = cfg.champion
        self.pending: OrderedDict[str, tuple[str, str, int]] = OrderedDict()  # rid -> (version, label, slice)
        self.challengers_seen: set[str] = set()  # versions compared with this champion so far
        self.alone: deque[tuple[str, list[str], np.ndarray, np.ndarray]] = deque()  # the champion's latest batches
        self.alone_rows = 0
        self.reset()
        self.last: dict[str, Any] | None = None
        self._init_roles()

    def _init_roles(self) -> None:
        self.champion_epoch = -1  # epoch of the traffic table that named the champion (-1: none yet)
        self.following = False  # True once a batch came with its role: no more guessing the champion
        self.roles: dict[str, tuple[int, str]] = {}  # version -> (epoch, role) of its newest batch
        self.role_rows: Counter[str] = Counter()  # rows by the role they were served in (cumulative)
        self.switches = 0
        self.stale_batches = 0  # champion batches of an older epoch in a row

    def follow(self, version: str, role: str, epoch: int, rows: int) -> None:
        """A batch of ``rows`` rows of ``version`` served as ``role`` by traffic table ``epoch``;
        call before :meth:`is_champion` / :meth:`add` of that batch."""
        if role not in ROLES:
            role = "challenger" if role == "canary" else role
        self.following = True
        self.role_rows[role] += int(rows)
        seen = self.roles.get(version)
        if seen is None or epoch >= seen[0]:
            self.roles[version] = (int(epoch), role)
        if len(self.roles) > _MAX_LABELS:  # bounded: forget the oldest versions
            for v, _ in sorted(self.roles.items(), key=lambda kv: kv[1][0])[: len(self.roles) - _MAX_LABELS]:
                del self.roles[v]
        if role == CHAMPION:
            if epoch >= self.champion_epoch:
                if version != self.champion:
                    self._switch(version)
                self.champion_epoch = int(epoch)
                self.stale_batches = 0
            elif version != self.champion:
                # an older table's champion: a replica that has not swapped yet, or the route's
                # control actor restarted and counts epochs from 1 again; only the second goes on
                self.stale_batches += 1
                if self.stale_batches > _EPOCH_RESET_BATCHES:
                    self._switch(version)
                    self.champion_epoch = int(epoch)
                    self.stale_batches = 0
            else:
                self.stale_batches = 0
        elif version == self.champion and epoch > self.champion_epoch:
            self._switch(None)  # demoted by a newer table; its successor's rows are still on the way
            self.champion_epoch = int(epoch)

    def _switch(self, version: str | None) -> None:
        """A new champion: pairs and distributions of the old pairing no longer compare it."""
        if self.champion is not None:
            self.switches += 1
        self.champion = version
        self.pending.clear()
        self.alone.clear()
        self.alone_rows = 0
        self.challengers_seen.clear()
        self.reset()
    def reset(self) -> None:
        self.dist: dict[str, Counter[str]] = {}
        self.pairs = np.zeros(len(self.slices), dtype=np.int64)
        self.agree = np.zeros(len(self.slices), dtype=np.int64)

    def is_champion(self, version: str | None) -> bool:
        if version is None:
            return True
        if self.champion is None and not self.following:
            self.champion = version
        return version == self.champion

    def add(self, version: str, predictions: Any, request_ids: list[str] | None, slices: Any) -> None:
        values = np.asarray(predictions).ravel()
        labels, _ = labels_of(values)
        counted = labels if self.tolerance is None else _bins(values, self.tolerance)
        if version != self.champion and version not in self.challengers_seen:
            # a challenger's first rows: the champion's distribution of this window restarts with them,
            # so that the rows it served alone (never shown to the challenger) are not compared
            self.challengers_seen.add(version)
            self.dist.pop(self.champion, None)  # type: ignore[arg-type]
        counter = self.dist.setdefault(version, Counter())
        for lab, c in zip(*np.unique(counted.astype(str), return_counts=True), strict=True):
            key = str(lab) if (str(lab) in counter or len(counter) < _MAX_LABELS) else "(other)"
            counter[key] += int(c)
        if request_ids is None:
            return
        if version == self.champion and len(self.dist) < 2 and not self.pending:
            # alone, with nothing waiting to pair: its latest batches are kept whole (no work per row on
            # the monitor's update), for a shadow whose copies of them come in just after
            self.alone.append((version, request_ids, labels, np.asarray(slices)))
            self.alone_rows += len(request_ids)
            while self.alone_rows - len(self.alone[0][1]) >= min(self.cfg.pending_size, _ALONE_PENDING):
                self.alone_rows -= len(self.alone.popleft()[1])
            return
        while self.alone:  # another version answers: the champion's kept rows wait for it too
            kept, ids, labs, sls = self.alone.popleft()
            self.pending.update(zip(ids, zip([kept] * len(ids), labs.tolist(), sls.tolist(), strict=True), strict=True))
        self.alone_rows = 0
        slice_list = np.asarray(slices).tolist()
        for rid, lab, s in zip(request_ids, labels.tolist(), slice_list, strict=True):
            other = self.pending.pop(rid, None)
            if other is None:
                self.pending[rid] = (version, lab, int(s))
                continue
            if other[0] == version:  # the same version twice: keep the newer row waiting
                self.pending[rid] = (version, lab, int(s))
                continue
            champ_slice = int(s) if version == self.champion else other[2]
            self.pairs[champ_slice] += 1
            self.agree[champ_slice] += int(labels_agree(lab, other[1], self.tolerance))
        while len(self.pending) > self.cfg.pending_size:
            self.pending.popitem(last=False)

    def evaluate(self, ts: float, window: int) -> list[Alert]:
        """Judge the window's pairs and distributions, then start afresh."""
        cfg = self.cfg
        champ = self.champion
        others = [v for v in self.dist if v != champ]
        report: dict[str, Any] = {"champion": champ, "challengers": {}}
        alerts: list[Alert] = []
        total_pairs = int(self.pairs.sum())
        agreement = float(self.agree.sum() / total_pairs) if total_pairs else math.nan
        for v in others:
            distance = math.nan
            if champ in self.dist:
                labels = sorted(set(self.dist[champ]) | set(self.dist[v]))
                a = np.array([self.dist[champ][lab] for lab in labels], dtype=np.float64)
                b = np.array([self.dist[v][lab] for lab in labels], dtype=np.float64)
                if a.sum() > 0 and b.sum() > 0:
                    distance = float(compare_rows(a, b)[2])
            report["challengers"][v] = {"prediction_distance": distance, "rows": int(sum(self.dist[v].values()))}
            if math.isfinite(distance) and distance > cfg.max_prediction_distance \
                    and sum(self.dist[v].values()) >= cfg.min_pairs:
                alerts.append(Alert(
                    kind="differential", key=f"differential:distance:{v}", severity="warning",
                    message=f"challenger {v} predicts differently from champion {champ}: Jensen-Shannon "
                            f"distance {distance:.3f} > {cfg.max_prediction_distance}",
                    value=distance, threshold=cfg.max_prediction_distance, ts=ts, window=window))
        report["pairs"] = total_pairs
        report["agreement"] = agreement
        slice_agreement = {}
        if total_pairs >= cfg.min_pairs:
            if agreement < cfg.min_agreement:
                alerts.append(Alert(
                    kind="differential", key="differential:agreement", severity="warning",
                    message=f"champion and challenger agree on {agreement:.1%} of {total_pairs} requests "
                            f"(< {cfg.min_agreement:.1%})",
                    value=agreement, threshold=cfg.min_agreement, ts=ts, window=window))
            for s, name in enumerate(self.slices):
                if len(self.slices) == 1 or self.pairs[s] == 0:
                    continue
                rate = float(self.agree[s] / self.pairs[s])
                slice_agreement[name] = rate
                if self.pairs[s] >= max(cfg.min_pairs // 4, 1) and agreement - rate > cfg.max_slice_agreement_gap:
                    alerts.append(Alert(
                        kind="differential", key=f"differential:slice:{name}", severity="warning",
                        message=f"in slice {name} champion and challenger agree on {rate:.1%}, "
                                f"{agreement - rate:.1%} below the overall {agreement:.1%}",
                        value=agreement - rate, threshold=cfg.max_slice_agreement_gap, ts=ts, window=window,
                        slice=name))
        report["slice_agreement"] = slice_agreement
        self.last = report
        self.reset()
        return alerts

    def status(self) -> dict[str, Any]:
        pairs = int(self.pairs.sum())
        return {"champion": self.champion, "champion_epoch": self.champion_epoch,
                "versions": {v: int(sum(c.values())) for v, c in self.dist.items()},
                "roles": {v: {"role": r, "epoch": e} for v, (e, r) in sorted(self.roles.items())},
                "rows_by_role": dict(self.role_rows), "champion_switches": self.switches,
                "pairs": pairs, "agreement": float(self.agree.sum() / pairs) if pairs else None,
                "pending": len(self.pending), "last_window": self.last}

    def merged(self, others: list[DifferentialTracker]) -> DifferentialTracker:
        """One tracker holding every shard's counts (the champion of the newest epoch); the
        pending maps are not copied, only their sizes are (``pending`` of the status)."""
        trackers = [self, *others]
        out = DifferentialTracker(self.cfg, self.slices)
        out.tolerance = self.tolerance
        newest = max(trackers, key=lambda t: t.champion_epoch)
        out.champion, out.champion_epoch = newest.champion, newest.champion_epoch
        out.following = any(t.following for t in trackers)
        out.pending = _Sized(sum(len(t.pending) for t in trackers))  # type: ignore[assignment]
        out.switches = max(t.switches for t in trackers)
        for t in trackers:
            for v, counter in t.dist.items():
                out.dist.setdefault(v, Counter()).update(counter)
            out.pairs += t.pairs
            out.agree += t.agree
            out.role_rows.update(t.role_rows)
            for v, (e, r) in t.roles.items():
                if v not in out.roles or e >= out.roles[v][0]:
                    out.roles[v] = (e, r)
        lasts = [t.last for t in trackers if t.last is not None]
        out.last = lasts[-1] if lasts else None
        return out


class _Sized:
    """Stands in for a pending map in a merged (read-only) view: only its size."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

"""The monitor checkpoint format: numeric arrays + one JSON document, versioned; never a pickle.

A checkpoint is one ``bytes`` blob: an ``.npz`` archive (:func:`numpy.savez`) holding every
numeric array of a :class:`~raymlops.monitor.monitor.Monitor` under a flat key
(``current.counts``, ``recent.3.sums``, ``performance.window.pos``, ...) and one more entry,
``__doc__``, the UTF-8 bytes of a JSON document (as a ``uint8`` array) holding

- ``format``: :data:`FORMAT` (``raymlops.monitor-checkpoint/2``);
- the schema: the reference (columns, kinds, edges, categories, slices; its counts are an array),
  the monitor config the state was built with;
- every scalar counter, the window history (verdicts and alerts), the label and pairing stores'
  ids and labels, the change detectors' states;
- ``arrays``: every array key with its dtype and shape.

Loading (:func:`load`) reads the archive with ``allow_pickle=False``, checks the format id, that
the archive holds exactly the arrays the document lists with those dtypes and shapes, and that
each shape is the one the reference and config imply; anything else is a
:class:`ValidationError` naming what is wrong (wrong format version, missing or unexpected
array, shape mismatch, malformed document). Classes can move or change their Python layout
without breaking a checkpoint; a change of what is stored gets a new format id.

The exact sums of the streaming state are integers of up to a few hundred bytes (multiples of
2**-1074); each is stored as its little-endian two's-complement bytes, one row of a ``uint8``
matrix per sum. JSON values keep NaN and infinities (Python's ``json`` writes and reads them).

A *view* (``view=True``, what a monitor shard sends for a merged status,
:mod:`raymlops.monitor.shards`) leaves out the label store, the early labels, the labelled ids
and the pending pairs, keeping their sizes and counters; it loads with stand-ins that only know
those sizes (a view is for reading, never for ingesting).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from raymlops.config import MonitorConfig
from raymlops.exceptions import ValidationError
from raymlops.monitor.alerts import Alert, AlertBook
from raymlops.monitor.challenger_labels import ChallengerLabels
from raymlops.monitor.differential import DifferentialTracker
from raymlops.monitor.labels import EarlyLabels, LabelCounts
from raymlops.monitor.performance import LabelStore, PerformanceTracker, PerformanceWindow
from raymlops.monitor.reference import MonitorReference
from raymlops.monitor.slo import SLOTracker
from raymlops.monitor.state import ExactSums, StreamState
from raymlops.monitor.verdicts import ColumnVerdict, SliceVerdict, WindowReport, WindowVerdict
from raymlops.stats.cbpe import ExpectedCounts
from raymlops.stats.change import detector_from_state

if TYPE_CHECKING:
    from raymlops.monitor.monitor import Monitor

__all__ = ["FORMAT", "SizedEarlyLabels", "SizedStore", "dump", "load"]

FORMAT = "raymlops.monitor-checkpoint/2"
_DOC = "__doc__"
_SHIFT = 1074
M = TypeVar("M", bound="Monitor")


class SizedStore:
    """Stands in for a label store or pending map in a view: its size and evictions only."""

    def __init__(self, n: int, evicted: int = 0, replaced: int = 0) -> None:
        self.n, self.evicted, self.replaced = int(n), int(evicted), int(replaced)

    def __len__(self) -> int:
        return self.n


class SizedEarlyLabels(SizedStore):
    """Stands in for the early-label store in a view: its size and outcome counters."""

    def __init__(self, n: int, expired: int, pushed_out: int, ttl_s: float) -> None:
        super().__init__(n)
        self.expired, self.pushed_out, self.ttl_s = int(expired), int(pushed_out), float(ttl_s)


# --------------------------------------------------------------------------------- writing


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, set, frozenset, tuple)):
        return obj.tolist() if isinstance(obj, np.ndarray) else list(obj)
    return str(obj)


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, npt.NDArray[Any]] = {}

    def put(self, key: str, values: npt.ArrayLike, dtype: Any) -> str:
        if key in self.arrays or key == _DOC:
            raise ValueError(f"checkpoint array key {key!r} used twice")
        self.arrays[key] = np.ascontiguousarray(np.asarray(values, dtype=dtype))
        return key

    def blob(self, doc: dict[str, Any]) -> bytes:
        doc["arrays"] = {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in self.arrays.items()}
        text = json.dumps(doc, default=_json_default, separators=(",", ":"))
        buf = io.BytesIO()
        entries: dict[str, Any] = {_DOC: np.frombuffer(text.encode(), dtype=np.uint8), **self.arrays}
        np.savez(buf, **entries)
        return buf.getvalue()


def _exact_bytes(sums: ExactSums) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    sums._settle()
    ints = sums.ints
    width = max([(abs(i).bit_length() + 8) // 8 for i in ints] + [1])
    raw = b"".join(i.to_bytes(width, "little", signed=True) for i in ints)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(ints), width), np.asarray(sums.special, dtype=np.float64)


def _put_state(w: _Writer, prefix: str, state: StreamState) -> dict[str, Any]:
    w.put(f"{prefix}.counts", state.counts, np.int64)
    w.put(f"{prefix}.finite", state.finite, np.int64)
    for name in ("sums", "sums_sq"):
        ints, special = _exact_bytes(getattr(state, name))
        w.put(f"{prefix}.{name}", ints, np.uint8)
        w.put(f"{prefix}.{name}_special", special, np.float64)
    return {"key": prefix}


def _put_reference(w: _Writer, prefix: str, ref: MonitorReference) -> dict[str, Any]:
    doc = ref.to_dict()
    doc.pop("counts")
    w.put(f"{prefix}.counts", ref.counts, np.int64)
    return doc


def _alert(a: Alert) -> dict[str, Any]:
    return {"kind": a.kind, "key": a.key, "severity": a.severity, "message": a.message, "value": a.value,
            "threshold": a.threshold, "ts": a.ts, "window": a.window, "slice": a.slice, "details": a.details}


def _report(r: WindowReport) -> dict[str, Any]:
    return {"index": r.index, "started": r.started, "ended": r.ended, "verdict": asdict(r.verdict),
            "prediction": None if r.prediction is None else asdict(r.prediction),
            "positive_rates": r.positive_rates, "alerts": [_alert(a) for a in r.alerts]}


def _put_window(w: _Writer, prefix: str, win: PerformanceWindow) -> None:
    for name, dtype in (("n", np.int64), ("correct", np.int64), ("abs_err", np.float64), ("pos", np.float64),
                        ("neg", np.float64)):
        w.put(f"{prefix}.{name}", getattr(win, name), dtype)


def _put_expected(w: _Writer, prefix: str, counts: ExpectedCounts) -> int:
    for name, dtype in (("n", np.int64), ("correct", np.float64), ("pos", np.float64), ("neg", np.float64)):
        w.put(f"{prefix}.{name}", getattr(counts, name), dtype)
    return counts.bins


def _put_values(w: _Writer, key: str, values: npt.NDArray[Any]) -> dict[str, Any]:
    """Predictions: a plain array when numpy stores it without pickling, else a JSON list."""
    if values.dtype.kind in "biufU":
        w.put(key, values, values.dtype)
        return {"array": key}
    return {"list": values.tolist()}


def _performance(w: _Writer, p: PerformanceTracker, view: bool) -> dict[str, Any]:
    _put_window(w, "performance.baseline_window", p.baseline_window)
    _put_window(w, "performance.window", p.window)
    doc: dict[str, Any] = {
        "counts": vars(p.counts), "last_outcomes": p.last_outcomes, "baseline": p.baseline, "last": p.last,
        "windows_closed": p.windows_closed, "early_lists": p.early_lists, "matched": p.matched,
        "unmatched": p.unmatched, "store_replaced": p.store.replaced,
        "store_evicted": p.store.evicted, "early_expired": p.early.expired, "early_pushed_out": p.early.pushed_out,
    }
    if view:
        doc["sizes"] = {"store": len(p.store), "early": len(p.early), "labelled": len(p.labelled)}
    else:
        assert isinstance(p.store, LabelStore) and isinstance(p.early, EarlyLabels)
        items = p.store.items
        doc["store"] = {"ids": list(items), "predictions": [v[0] for v in items.values()]}
        w.put("performance.store.scores", [v[1] for v in items.values()], np.float64)
        w.put("performance.store.slices", [v[2] for v in items.values()], np.int64)
        early = p.early.items
        doc["early"] = {"ids": list(early), "labels": [v[0] for v in early.values()]}
        w.put("performance.early.deadlines", [v[1] for v in early.values()], np.float64)
        doc["labelled"] = list(p.labelled.ids)
    doc["challengers"] = p.challengers.to_dict(view)
    c = p.concept
    doc["concept"] = {"labels": c.labels, "alarms": c.alarms,
                      "detectors": {where: {k: d.state() for k, d in dets.items()}
                                    for where, dets in c.detectors.items()}}
    e = p.estimated
    doc["estimated"] = {"reference": e.reference, "reference_source": e.reference_source, "last": e.last,
                        "windows": e.windows, "rows": e.rows, "rows_without_scores": e.rows_without_scores,
                        "bins": [_put_expected(w, "estimated.window", e.window),
                                 _put_expected(w, "estimated.labelled", e.labelled)]}
    return doc


def _differential(w: _Writer, d: DifferentialTracker, view: bool) -> dict[str, Any]:
    w.put("differential.pairs", d.pairs, np.int64)
    w.put("differential.agree", d.agree, np.int64)
    doc: dict[str, Any] = {
        "champion": d.champion, "champion_epoch": d.champion_epoch, "following": d.following,
        "roles": [[v, e, r] for v, (e, r) in d.roles.items()], "role_rows": dict(d.role_rows),
        "switches": d.switches, "stale_batches": d.stale_batches, "last": d.last,
        "dist": [[v, list(c.items())] for v, c in d.dist.items()],
    }
    if view:
        doc["pending_size"] = len(d.pending)
    else:
        doc["pending"] = {"ids": list(d.pending), "entries": [[v, lab] for v, lab, _ in d.pending.values()]}
        w.put("differential.pending.slices", [s for _, _, s in d.pending.values()], np.int64)
    return doc


def dump(monitor: Monitor, *, view: bool = False) -> bytes:
    """``monitor``'s state as a checkpoint blob (see the module docstring); ``view``: without
    the label and pairing stores (their sizes only), for a merged read-only view."""
    w = _Writer()
    doc: dict[str, Any] = {"format": FORMAT, "view": bool(view),
                           "config": monitor.config.model_dump(mode="json"),
                           "reference": _put_reference(w, "reference", monitor.reference)}
    m = monitor
    doc["scalars"] = {"window_index": m.window_index, "window_started": m.window_started, "rows_total": m.rows_total,
                      "batches": m.batches, "challenger_rows": m.challenger_rows}
    doc["current"] = _put_state(w, "current", m.current)
    doc["recent"] = [_put_state(w, f"recent.{i}", s) for i, s in enumerate(m.recent)]
    doc["history"] = [_report(r) for r in m.history]
    doc["alerts"] = {"last_fired": m.alerts.last_fired, "totals": dict(m.alerts.totals),
                     "recent": [_alert(a) for a in m.alerts.recent], "keep": m.alerts.recent.maxlen}
    doc["performance"] = _performance(w, m.performance, view)
    doc["differential"] = _differential(w, m.differential, view)
    w.put("slo.ring", m.slo.ring, np.float64)
    w.put("slo.ring_id", m.slo.ring_id, np.int64)
    doc["slo"] = {"total_requests": m.slo.total_requests, "total_errors": m.slo.total_errors}
    doc["pred_baseline"] = [_put_values(w, f"pred_baseline.{i}", a) for i, a in enumerate(m.pred_baseline)]
    doc["pred_reference"] = None if m.pred_reference is None else _put_reference(w, "pred_reference",
                                                                                  m.pred_reference)
    doc["pred_state"] = None if m.pred_state is None else _put_state(w, "pred_state", m.pred_state)
    w.put("pos", m.pos, np.int64)
    w.put("pred_n", m.pred_n, np.int64)
    return w.blob(doc)


# --------------------------------------------------------------------------------- reading


class _Reader:
    """The archive's arrays, each handed out once, with its dtype and shape checked."""

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError(f"a monitor checkpoint is bytes, got {type(data).__name__}")
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as npz:
                files = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise ValidationError(f"unreadable monitor checkpoint (not an .npz archive of arrays): {exc}") from exc
        raw = files.pop(_DOC, None)
        if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValidationError(f"not a monitor checkpoint: no {_DOC!r} document (expected format {FORMAT!r})")
        try:
            doc = json.loads(raw.tobytes().decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValidationError(f"monitor checkpoint: its JSON document is unreadable: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise ValidationError(f"not a monitor checkpoint of format {FORMAT!r} (found format {found!r})")
        listed = doc.get("arrays")
        if not isinstance(listed, dict):
            raise ValidationError("monitor checkpoint: the document lists no arrays")
        missing = sorted(set(listed) - set(files))
        if missing:
            raise ValidationError(f"monitor checkpoint: missing array {missing[0]!r}"
                                  + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        extra = sorted(set(files) - set(listed))
        if extra:
            raise ValidationError(f"monitor checkpoint: unexpected array {extra[0]!r} (not in its document)")
        for key, spec in listed.items():
            arr = files[key]
            if not isinstance(spec, dict) or [*arr.shape] != spec.get("shape") or arr.dtype.str != spec.get("dtype"):
                raise ValidationError(f"monitor checkpoint: array {key!r} is {arr.dtype.str} {list(arr.shape)}, "
                                      f"its document says {spec!r}")
        self.doc: dict[str, Any] = doc
        self.files = files
        self.used: set[str] = set()

    def get(self, key: str, shape: tuple[int | None, ...] | None = None, kind: str | None = None) -> npt.NDArray[Any]:
        if key not in self.files:
            raise ValidationError(f"monitor checkpoint: missing array {key!r}")
        arr = self.files[key]
        if kind is not None and arr.dtype.kind not in kind:
            raise ValidationError(f"monitor checkpoint: array {key!r} has dtype {arr.dtype}, expected kind {kind!r}")
        if shape is not None and (arr.ndim != len(shape)
                                  or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True))):
            want = tuple("*" if s is None else s for s in shape)
            raise ValidationError(f"monitor checkpoint: array {key!r} has shape {arr.shape}, expected {want}")
        self.used.add(key)
        return arr.copy()

    def finish(self) -> None:
        unused = sorted(set(self.files) - self.used)
        if unused:
            raise ValidationError(f"monitor checkpoint: unexpected array {unused[0]!r}")


def _exact_sums(r: _Reader, key: str, cells: int) -> ExactSums:
    ints = r.get(key, (cells, None), "u")
    special = r.get(f"{key}_special", (cells,), "f")
    out = ExactSums(cells)
    out.ints = [int.from_bytes(row.tobytes(), "little", signed=True) for row in ints]
    out.special = [float(x) for x in special.tolist()]
    return out


def _get_state(r: _Reader, ref: MonitorReference, doc: Mapping[str, Any]) -> StreamState:
    prefix = str(doc["key"])
    state = StreamState(ref)
    cells = state.finite.size
    state.counts = r.get(f"{prefix}.counts", state.counts.shape, "i")
    state.finite = r.get(f"{prefix}.finite", (cells,), "i")
    state.sums = _exact_sums(r, f"{prefix}.sums", cells)
    state.sums_sq = _exact_sums(r, f"{prefix}.sums_sq", cells)
    return state


def _get_reference(r: _Reader, prefix: str, doc: dict[str, Any]) -> MonitorReference:
    counts = r.get(f"{prefix}.counts", None, "i")
    return MonitorReference.from_dict({**doc, "counts": counts.tolist()})


def _from_alert(d: Mapping[str, Any]) -> Alert:
    return Alert(kind=str(d["kind"]), key=str(d["key"]), severity=str(d["severity"]), message=str(d["message"]),
                 value=_float(d["value"]), threshold=_float(d["threshold"]), ts=_float(d["ts"]),
                 window=int(d["window"]), slice=str(d["slice"]), details=dict(d["details"]))


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _from_slice(d: Mapping[str, Any]) -> SliceVerdict:
    return SliceVerdict(**{**d, "columns": tuple(ColumnVerdict(**c) for c in d["columns"]),
                           "drifted": tuple(d["drifted"])})


def _from_report(d: Mapping[str, Any]) -> WindowReport:
    v = d["verdict"]
    verdict = WindowVerdict(rows=int(v["rows"]), correction=str(v["correction"]), overall=_from_slice(v["overall"]),
                            slices=tuple(_from_slice(s) for s in v["slices"]))
    return WindowReport(index=int(d["index"]), started=float(d["started"]), ended=float(d["ended"]), verdict=verdict,
               prediction=None if d["prediction"] is None else _from_slice(d["prediction"]),
               positive_rates=dict(d["positive_rates"]), alerts=tuple(_from_alert(a) for a in d["alerts"]))


def _get_window(r: _Reader, prefix: str, n_slices: int, regression: bool) -> PerformanceWindow:
    win = PerformanceWindow(n_slices, regression)
    for name in ("n", "correct", "abs_err", "pos", "neg"):
        setattr(win, name, r.get(f"{prefix}.{name}", getattr(win, name).shape, "if"))
    return win


def _get_expected(r: _Reader, prefix: str, n_slices: int, bins: int) -> ExpectedCounts:
    out = ExpectedCounts(n_slices, bins)
    for name in ("n", "correct", "pos", "neg"):
        setattr(out, name, r.get(f"{prefix}.{name}", getattr(out, name).shape, "if"))
    return out


def _load_performance(r: _Reader, cfg: MonitorConfig, slices: tuple[str, ...], doc: dict[str, Any],
                      view: bool) -> PerformanceTracker:
    p = PerformanceTracker(cfg.performance, slices)
    n = len(slices)
    p.baseline_window = _get_window(r, "performance.baseline_window", n, p.regression)
    p.window = _get_window(r, "performance.window", n, p.regression)
    p.counts = LabelCounts(**{k: int(v) for k, v in doc["counts"].items()})
    p.last_outcomes = [str(o) for o in doc["last_outcomes"]]
    p.baseline, p.last, p.early_lists = doc["baseline"], doc["last"], dict(doc.get("early_lists", {}))
    p.windows_closed, p.matched, p.unmatched = int(doc["windows_closed"]), int(doc["matched"]), int(doc["unmatched"])
    if view:
        sizes = doc["sizes"]
        p.store = SizedStore(sizes["store"], doc["store_evicted"], doc.get("store_replaced", 0))  # type: ignore[assignment]
        p.early = SizedEarlyLabels(sizes["early"], doc["early_expired"], doc["early_pushed_out"],  # type: ignore[assignment]
                                   cfg.performance.early_label_ttl_s)
        p.labelled = SizedStore(sizes["labelled"])  # type: ignore[assignment]
    else:
        ids, preds = doc["store"]["ids"], doc["store"]["predictions"]
        scores = r.get("performance.store.scores", (len(ids),), "f").tolist()
        store_slices = r.get("performance.store.slices", (len(ids),), "i").tolist()
        if len(preds) != len(ids) or any(not 0 <= s < n for s in store_slices):
            raise ValidationError("monitor checkpoint: the label store's ids, predictions and slices disagree")
        p.store.items = dict(zip(map(str, ids), zip(preds, scores, store_slices, strict=True), strict=True))
        p.store.evicted, p.store.replaced = int(doc["store_evicted"]), int(doc.get("store_replaced", 0))
        eids, labels = doc["early"]["ids"], doc["early"]["labels"]
        deadlines = r.get("performance.early.deadlines", (len(eids),), "f").tolist()
        if len(labels) != len(eids):
            raise ValidationError("monitor checkpoint: the early labels' ids and labels disagree")
        p.early.items = dict(zip(map(str, eids), zip(labels, deadlines, strict=True), strict=True))
        p.early.expired, p.early.pushed_out = int(doc["early_expired"]), int(doc["early_pushed_out"])
        p.labelled.ids = dict.fromkeys(map(str, doc["labelled"]))
    p.challengers = ChallengerLabels.from_dict(doc.get("challengers"), cfg.performance.label_store_size, p.regression)
    c, cd = p.concept, doc["concept"]
    c.labels, c.alarms = int(cd["labels"]), int(cd["alarms"])
    c.detectors = {str(where): {str(k): detector_from_state(s) for k, s in dets.items()}
                   for where, dets in cd["detectors"].items()}
    e, ed = p.estimated, doc["estimated"]
    e.reference, e.reference_source, e.last = dict(ed["reference"]), str(ed["reference_source"]), ed["last"]
    e.windows, e.rows, e.rows_without_scores = int(ed["windows"]), int(ed["rows"]), int(ed["rows_without_scores"])
    e.window = _get_expected(r, "estimated.window", n, int(ed["bins"][0]))
    e.labelled = _get_expected(r, "estimated.labelled", n, int(ed["bins"][1]))
    return p


def _load_differential(r: _Reader, cfg: MonitorConfig, slices: tuple[str, ...], doc: dict[str, Any],
                       view: bool) -> DifferentialTracker:
    d = DifferentialTracker(cfg.differential, slices, regression=cfg.performance.task == "regression")
    n = len(slices)
    d.champion, d.champion_epoch, d.following = doc["champion"], int(doc["champion_epoch"]), bool(doc["following"])
    d.roles = {str(v): (int(e), str(role)) for v, e, role in doc["roles"]}
    d.role_rows = Counter({str(k): int(v) for k, v in doc["role_rows"].items()})
    d.switches, d.stale_batches, d.last = int(doc["switches"]), int(doc["stale_batches"]), doc["last"]
    d.dist = {str(v): Counter({str(lab): int(c) for lab, c in items}) for v, items in doc["dist"]}
    d.challengers_seen = {v for v in d.dist if v != d.champion}  # rebuilt: those of the open window
    d.pairs = r.get("differential.pairs", (n,), "i")
    d.agree = r.get("differential.agree", (n,), "i")
    if view:
        d.pending = SizedStore(doc["pending_size"])  # type: ignore[assignment]
    else:
        ids, entries = doc["pending"]["ids"], doc["pending"]["entries"]
        pslices = r.get("differential.pending.slices", (len(ids),), "i").tolist()
        if len(entries) != len(ids):
            raise ValidationError("monitor checkpoint: the pending pairs' ids and entries disagree")
        d.pending = OrderedDict((str(rid), (str(v), str(lab), int(s)))
                                for rid, (v, lab), s in zip(ids, entries, pslices, strict=True))
    return d


def _values(r: _Reader, d: Mapping[str, Any]) -> npt.NDArray[Any]:
    if "array" in d:
        return r.get(str(d["array"]), (None,), "biufU")
    return np.asarray(d["list"], dtype=object)


def load(data: bytes, cls: type[M], clock: Callable[[], float], config: MonitorConfig | None = None) -> M:
    """The monitor a :func:`dump` blob holds (``cls``: the :class:`Monitor` class), on ``clock``;
    ``config`` replaces its ``config`` (the trackers keep the one they were built with)."""
    r = _Reader(data)
    doc = r.doc
    try:
        view = bool(doc["view"])
        cfg = MonitorConfig.model_validate(doc["config"])
        ref = _get_reference(r, "reference", doc["reference"])
        mon = cls(ref, cfg, clock=clock)
        s = doc["scalars"]
        mon.window_index, mon.window_started = int(s["window_index"]), float(s["window_started"])
        mon.rows_total, mon.batches, mon.challenger_rows = int(s["rows_total"]), int(s["batches"]), \
            int(s["challenger_rows"])
        mon.current = _get_state(r, ref, doc["current"])
        mon.recent = deque((_get_state(r, ref, d) for d in doc["recent"]), maxlen=cfg.long_term_windows)
        mon.history = deque((_from_report(d) for d in doc["history"]), maxlen=cfg.history)
        a = doc["alerts"]
        book = AlertBook(cfg.alerts.cooldown_s, keep=int(a["keep"]))
        book.last_fired = {str(k): float(v) for k, v in a["last_fired"].items()}
        book.totals = Counter({str(k): int(v) for k, v in a["totals"].items()})
        book.restore(_from_alert(x) for x in a["recent"])
        mon.alerts = book
        mon.performance = _load_performance(r, cfg, ref.slices, doc["performance"], view)
        mon.differential = _load_differential(r, cfg, ref.slices, doc["differential"], view)
        slo = SLOTracker(cfg.slo)
        slo.ring = r.get("slo.ring", slo.ring.shape, "f")
        slo.ring_id = r.get("slo.ring_id", slo.ring_id.shape, "i")
        slo.total_requests, slo.total_errors = int(doc["slo"]["total_requests"]), int(doc["slo"]["total_errors"])
        mon.slo = slo
        mon.pred_baseline = [_values(r, d) for d in doc["pred_baseline"]]
        if doc["pred_reference"] is not None:
            mon.pred_reference = _get_reference(r, "pred_reference", doc["pred_reference"])
        if doc["pred_state"] is not None:
            if mon.pred_reference is None:
                raise ValidationError("monitor checkpoint: a prediction state without its reference")
            mon.pred_state = _get_state(r, mon.pred_reference, doc["pred_state"])
        mon.pos = r.get("pos", (ref.n_slices,), "i")
        mon.pred_n = r.get("pred_n", (ref.n_slices,), "i")
        r.finish()
    except ValidationError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValidationError(f"malformed monitor checkpoint: {type(exc).__name__}: {exc}") from exc
    if config is not None:
        mon.config = config
    return mon

"""Statistical validation of a snapshot against a reference: find the reference, check, store
the result, gate (adapter over :mod:`raymlops.stats.check` and :mod:`raymlops.stats.offline`).

Both snapshots are whole, so the tests are exact, as ``raymlops monitor check``'s: the rows of
both are read (no Ray) and every column the profiles can compare is tested by
:func:`raymlops.stats.offline.check_tables` (exact two-sample KS from the sorted values with
scipy's public p-values for continuous columns; chi-square on the observed support of
categorical and low-cardinality integer columns; see :mod:`raymlops.stats.exact`), with the
:class:`DriftSettings` translated onto the monitor's settings model (:func:`monitor_settings`).
The profiles still give the schema changes, which columns are comparable, and each side's
summary; ``exact=False`` keeps the profile-based check (binned, no pass over the rows).

The reference is ``data.reference`` (any snapshot reference: id, prefix, tag) or, by default,
the training snapshot of the pipeline's champion model. Each check's result is stored as its own
record, keyed by (snapshot, reference, settings): a JSON report under
``checks/<snapshot>/<reference>-<settings>.json`` in the artifact store and a ``drift_checks``
row holding its sha256, written with a ``snapshot.checked`` audit record in one transaction.
Snapshots themselves never change. Checking the same pair with the same settings again reads
the stored record.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from raymlops import audit
from raymlops.config import MonitorConfig
from raymlops.data.snapshot import resolve_snapshot
from raymlops.data.snapshot_read import load_profile, read_snapshot
from raymlops.exceptions import NotFound, ValidationError
from raymlops.registry.registry import get_model
from raymlops.stats.bins import edges_digest
from raymlops.stats.check import P_VALUE_TESTS, DriftReport, DriftSettings, check, psi_band
from raymlops.stats.offline import check_tables
from raymlops.stats.profile import Profile

if TYPE_CHECKING:
    from raymlops.store.home import Store

__all__ = [
    "GATE_MODES",
    "DriftDetected",
    "Reference",
    "apply_gate",
    "check_needs_ray",
    "check_snapshot",
    "exact_report",
    "find_reference",
    "list_checks",
    "load_check",
    "monitor_settings",
    "settings_from_config",
]

GATE_MODES = ("fail", "warn", "off")


class DriftDetected(ValidationError):
    """``data.drift_gate: fail`` and the dataset drifted; ``report`` has every score."""

    def __init__(self, message: str, report: DriftReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Reference:
    """The snapshot new data is compared with, its profile, and why it was chosen."""

    snapshot_id: str
    profile: Profile
    why: str


def settings_from_config(drift: Any) -> DriftSettings:
    """:class:`DriftSettings` from a :class:`raymlops.config.DriftConfig` (or None: defaults)."""
    if drift is None:
        return DriftSettings()
    d = drift.model_dump() if hasattr(drift, "model_dump") else dict(drift)
    d["columns"] = None if d.get("columns") is None else tuple(d["columns"])
    return DriftSettings(**d)


def settings_hash(settings: DriftSettings, exact: bool = True) -> str:
    """Key of a stored check: the settings and the engine (exact tests, or the profiles')."""
    canon = json.dumps({**settings.to_dict(), "engine": "exact" if exact else "profile"}, sort_keys=True,
                       separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def monitor_settings(settings: DriftSettings) -> MonitorConfig:
    """``settings`` on the monitor's settings model, which the exact offline check reads (the
    same fields ``raymlops monitor check`` takes from ``monitor:``)."""
    cfg = MonitorConfig.model_validate({
        "alpha": settings.alpha, "dataset_rule": settings.dataset_rule, "dataset_drift_share": settings.drift_share,
        "small_window_rows": max(settings.small_sample, 1), "numeric_test": settings.numeric_test,
        "categorical_test": "js" if settings.categorical_test == "jensenshannon" else settings.categorical_test,
        "wasserstein_threshold": settings.wasserstein, "js_threshold": settings.jensenshannon,
        "psi_threshold": settings.psi, "min_rows": 0})
    # "none" (no correction) is a DriftSettings choice the monitor's config does not offer
    updates: dict[str, Any] = {"correction": settings.correction}
    if settings.small_sample == 0:  # distances always decide
        updates["small_window_rows"] = 0
    return cfg.model_copy(update=updates)


_TEST_NAMES = {"js": "jensenshannon"}


def exact_report(report: DriftReport, reference: Any, current: Any) -> DriftReport:
    """``report`` (from the profiles) with every tested column re-tested exactly on the rows of
    ``reference`` and ``current`` (Arrow tables): the deciding test, its score, the p-values and
    the flags are the exact offline check's (:func:`raymlops.stats.offline.check_tables`)."""
    settings = report.settings
    tested = [c for c in report.columns if c.test is not None]
    if not tested:
        return report
    # categories of text and booleans; the profile's categories of an integer column (its counts per
    # value) are not a kind: the check judges integers as ``monitor check`` does (discrete or continuous)
    numbers = {f.name for f in reference.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
               or pa.types.is_decimal(f.type)}
    categorical = [c.column for c in tested if c.kind == "categorical" and c.column not in numbers]
    cfg = monitor_settings(settings).model_copy(update={"categorical": categorical})
    result = check_tables(reference, current, cfg, columns=[c.column for c in tested])
    for c in tested:
        f = result["features"][c.column]
        test = _TEST_NAMES.get(f["test"], f["test"])
        if f["kind"] == "continuous":
            scores: dict[str, Any] = {"ks_statistic": f["ks"], "ks_p_value": f["p_value"],
                                      "wasserstein_normed": f["wasserstein"]}
        else:
            scores = {"chi2_statistic": f["chi2"], "chi2_p_value": f["p_value"], "jensenshannon": f["js"],
                      "categories": f["categories"]}
            if f["kind"] == "discrete":
                scores["wasserstein_normed"] = f["wasserstein"]
            if "new_categories" in c.scores:
                scores["new_categories"] = c.scores["new_categories"]
        c.kind = "categorical" if f["kind"] == "categorical" else "numeric"
        scores |= {"psi": f["psi"], "psi_band": psi_band(f["psi"]), "exact": f["kind"]}
        c.scores = scores
        c.test = test
        c.approximate = False
        if test in P_VALUE_TESTS:
            c.score, c.threshold = f["p_value"], settings.alpha
            c.p_value, c.p_adjusted = f["p_value"], f["adjusted_p_value"]
        else:
            c.score = f["statistic"]
            c.threshold = {"wasserstein": settings.wasserstein, "jensenshannon": settings.jensenshannon,
                           "psi": settings.psi}[test]
            c.p_value = c.p_adjusted = None
        c.drifted = bool(f["drift"])
    return report


def find_reference(store: Store, pipeline: str | None = None, ref: str | None = None) -> Reference | None:
    """``ref`` (``data.reference``) if given, else the champion of ``pipeline``'s training
    snapshot; None when there is neither (a first run)."""
    if ref:
        snap_id = resolve_snapshot(store, ref)
        why = f"data.reference {ref!r}"
    elif pipeline:
        try:
            champion = get_model(store, f"{pipeline}@champion")
        except NotFound:
            return None
        snap_id = champion.snapshot_id
        why = f"training data of the champion {champion.id}"
    else:
        return None
    return Reference(snap_id, load_profile(store, snap_id), why)


def _key(snap_id: str, ref_id: str, s_hash: str) -> str:
    return f"checks/{snap_id}/{ref_id}-{s_hash}.json"


def load_check(store: Store, snap_id: str, ref_id: str, settings: DriftSettings | None = None,
               exact: bool | None = None) -> DriftReport | None:
    """The stored result of checking ``snap_id`` against ``ref_id`` (with ``settings``; the
    newest of any settings when None), hash-checked; None if there is none. ``exact``: only a
    result of that engine (exact tests, or the profiles'); None: the newest of either."""
    with store.metadata.read() as conn:
        if settings is None:
            row = conn.execute("SELECT report_key, report_sha256 FROM drift_checks WHERE snapshot_id = ? AND"
                               " reference_id = ? ORDER BY created_at DESC LIMIT 1", (snap_id, ref_id)).fetchone()
        else:
            hashes = [settings_hash(settings, e) for e in ((True, False) if exact is None else (exact,))]
            row = conn.execute("SELECT report_key, report_sha256 FROM drift_checks WHERE snapshot_id = ? AND"
                               f" reference_id = ? AND settings_hash IN ({', '.join('?' * len(hashes))})"
                               " ORDER BY created_at DESC LIMIT 1", (snap_id, ref_id, *hashes)).fetchone()
    if row is None:
        return None
    data = store.artifacts.read_verified(row[0], row[1], f"drift check {row[0]}: the report file")
    return DriftReport.from_dict(json.loads(data)["report"])


def list_checks(store: Store, snap_id: str) -> list[dict[str, Any]]:
    """Checks recorded for ``snap_id`` (as the checked snapshot), newest first."""
    with store.metadata.read() as conn:
        rows = conn.execute(
            "SELECT reference_id, settings_hash, created_at, dataset_drift, drifted, tested FROM drift_checks"
            " WHERE snapshot_id = ? ORDER BY created_at DESC", (snap_id,)).fetchall()
    return [{"reference": r[0], "settings": r[1], "created_at": r[2], "dataset_drift": bool(r[3]),
             "drifted": r[4], "tested": r[5]} for r in rows]


def _needs_counts(current: Profile, reference: Profile) -> list[str]:
    return [n for n, r in reference.columns.items()
            if r.numeric and n in current.columns and current.columns[n].numeric
            and current.columns[n].ref_edges != edges_digest(r.edges)]


def check_needs_ray(store: Store, snap_id: str, reference: Reference, settings: DriftSettings | None = None,
                    exact: bool = True) -> bool:
    """Whether :func:`check_snapshot` will want Ray (a runner connects first): no stored result,
    the profile-based check, and the snapshot was not counted on the reference's bins. The exact
    check reads the rows of both snapshots without Ray."""
    snap_id = resolve_snapshot(store, snap_id)
    if exact or load_check(store, snap_id, reference.snapshot_id, settings or DriftSettings(), exact) is not None:
        return False
    return bool(_needs_counts(load_profile(store, snap_id), reference.profile))


def check_snapshot(
    store: Store,
    snap_id: str,
    reference: Reference,
    settings: DriftSettings | None = None,
    *,
    profile: Profile | None = None,
    reason: str | None = None,
    exact: bool = True,
) -> DriftReport:
    """Check snapshot ``snap_id`` against ``reference`` and record the result (or return the
    recorded one). ``profile``: ``snap_id``'s profile if at hand. With ``exact`` (the default)
    every comparable column is tested exactly on the rows of both snapshots (see the module
    docstring); without, from the profiles alone: the snapshot's counts on the reference's bins
    when it was counted there, else its own fine histogram re-binned (``approximate``)."""
    settings = settings or DriftSettings()
    snap_id = resolve_snapshot(store, snap_id)
    stored = load_check(store, snap_id, reference.snapshot_id, settings, exact)
    if stored is not None:
        return stored
    current = profile or load_profile(store, snap_id)
    report = check(current, reference.profile, settings)
    if exact:
        _, ref_rows = read_snapshot(store, reference.snapshot_id)
        _, cur_rows = read_snapshot(store, snap_id)
        report = exact_report(report, ref_rows, cur_rows)
    _record(store, snap_id, reference, settings, report, reason, exact)
    return report


def _record(store: Store, snap_id: str, reference: Reference, settings: DriftSettings, report: DriftReport,
            reason: str | None, exact: bool) -> None:
    s_hash = settings_hash(settings, exact)
    key = _key(snap_id, reference.snapshot_id, s_hash)
    now = time.time()
    body = {"snapshot": snap_id, "reference": reference.snapshot_id, "why": reference.why, "created_at": now,
            "report": report.to_dict()}
    sha = store.artifacts.write_bytes(key, json.dumps(body, indent=1, sort_keys=True, default=str).encode())
    with store.metadata.transaction() as conn:
        if conn.execute("SELECT 1 FROM drift_checks WHERE snapshot_id = ? AND reference_id = ? AND settings_hash = ?",
                        (snap_id, reference.snapshot_id, s_hash)).fetchone() is not None:
            return  # recorded meanwhile by another process (same inputs, same result)
        conn.execute(
            "INSERT INTO drift_checks(snapshot_id, reference_id, settings_hash, created_at, dataset_drift, drifted,"
            " tested, report_key, report_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (snap_id, reference.snapshot_id, s_hash, now, int(report.dataset_drift), len(report.drifted_columns),
             len(report.tested), key, sha),
        )
        audit.append(conn, "snapshot.checked", {"snapshot": snap_id, "reference": reference.snapshot_id}, reason,
                     {"dataset_drift": report.dataset_drift, "drifted_columns": report.drifted_columns,
                      "tested": len(report.tested), "share": round(report.share, 4), "why": reference.why,
                      "settings": s_hash})


def apply_gate(report: DriftReport, mode: str, reference: Reference | None = None) -> str:
    """``data.drift_gate``: ``fail`` raises :class:`DriftDetected` when the dataset drifted,
    ``warn`` returns ``"warned"``; else ``"passed"`` (``"off"`` when the gate is off)."""
    if mode not in GATE_MODES:
        raise ValidationError(f"drift_gate must be one of {', '.join(GATE_MODES)}, got {mode!r}")
    if mode == "off":
        return "off"
    if not report.dataset_drift:
        return "passed"
    against = f" against {reference.snapshot_id[:12]} ({reference.why})" if reference else ""
    if mode == "fail":
        raise DriftDetected(f"data drift{against}: {report.summary()} (data.drift_gate is 'fail')", report)
    return "warned"

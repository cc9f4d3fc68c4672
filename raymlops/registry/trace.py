"""A model version's lineage as one record: code → data → model → deployments."""

from __future__ import annotations

import time
from typing import Any

from raymlops import audit
from raymlops.data.snapshot import load_manifest
from raymlops.exceptions import IntegrityError, NotFound
from raymlops.registry.registry import aliases_of, get_model
from raymlops.store.home import Store


def lineage_of(store: Store, ref: str) -> dict[str, Any]:
    """Everything a model version came from and where it went, from metadata and the audit log."""
    version = get_model(store, ref)
    lin = version.lineage
    data: dict[str, Any] = {"snapshot_id": version.snapshot_id}
    try:
        manifest = load_manifest(store, version.snapshot_id)
        data |= {"source": manifest["source"], "rows": manifest["rows"], "bytes": manifest["bytes"],
                 "created_at": manifest["created_at"], "columns": [c["name"] for c in manifest["schema"]]}
    except (NotFound, IntegrityError) as exc:
        data["problem"] = str(exc)
    deployments = _deployments(store, version.id)
    return {
        "model": {"id": version.id, "status": version.status, "created_at": version.created_at,
                  "artifact_sha256": version.artifact_sha256, "aliases": aliases_of(store, version.id),
                  "metrics": version.metrics, "gate": version.gate.get("status")},
        "code": lin.get("code", {}),
        "config_hash": lin.get("config_hash"),
        "seed": lin.get("seed"),
        "packages": lin.get("packages", {}),
        "run_id": lin.get("run_id"),
        "data": data,
        "deployments": deployments,
    }


#: the audit actions that put a model version on a route: a new deployment, a challenger set or
#: changed, a promotion and a rollback (the route follows the alias)
_SERVED = ("deployment.created", "deployment.traffic_changed", "deployment.promoted", "deployment.rolled_back")


def _deployments(store: Store, model_id: str) -> list[dict[str, Any]]:
    """Each time ``model_id`` went on a route, from the audit log: as a new deployment's champion,
    as a challenger (canary or shadow), or as champion by a promotion or a rollback; and when that
    ended (``ended``: the route deleted, or the version's role there changed), None while it lasts
    (a version every run had torn down read "deployed" forever)."""
    endpoints: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}  # route -> the entry still serving
    for r in audit.records(store.metadata, action="deployment."):
        action, ids, how = r.action, r.record["ids"], r.record.get("how") or {}
        route = ids.get("deployment")
        if action == "deployment.created" and how.get("endpoint"):
            endpoints[str(route)] = str(how["endpoint"])
        if action == "deployment.deleted":
            role = None
        elif action not in _SERVED:
            continue
        elif action == "deployment.created":
            role = "champion" if ids.get("model") == model_id else None
        else:  # a change of the route's table: where the version's role changed
            role = _role(how.get("after") or {}, model_id)
        current = open_.get(str(route))
        if current is not None and current["role"] == role:
            continue
        if current is not None:
            current["ended"] = {"ts": r.ts, "action": action, "reason": r.record.get("reason")}
            del open_[str(route)]
        if role is None:
            continue
        entry = {"ts": r.ts, "deployment": route, "endpoint": endpoints.get(str(route)), "role": role,
                 "action": action, "reason": r.record.get("reason"), "ended": None}
        out.append(entry)
        open_[str(route)] = entry
    return out


def _role(table: dict[str, Any], model_id: str) -> str | None:
    if table.get("champion") == model_id:
        return "champion"
    if table.get("challenger") == model_id:
        return f"challenger ({table.get('mode')})"
    return None


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def format_lineage(info: dict[str, Any]) -> str:
    code = info["code"]
    code_text = (
        f"git {code['git_commit'][:12]}" + (f" + uncommitted changes {code['dirty_hash']}" if code.get("dirty") else "")
        if "git_commit" in code else f"raymlops {code.get('package_version', '?')}"
    )
    data = info["data"]
    lines = [
        f"code     {code_text}",
        f"config   {str(info['config_hash'])[:12]}  seed {info['seed']}  run {info['run_id']}",
        f"data     snapshot {data['snapshot_id'][:12]}  {data.get('rows', '?')} rows from {data.get('source', '?')}",
        f"model    {info['model']['id']} ({info['model']['status']}, gate {info['model']['gate']})"
        f"  aliases: {', '.join(info['model']['aliases']) or '-'}",
    ]
    for d in info["deployments"] or [{"deployment": None}]:
        if not d["deployment"]:
            lines.append("deployed never")
            continue
        ended = d.get("ended")
        lines.append(f"deployed {d['deployment']} at {d.get('endpoint') or '-'} as {d['role']} ({d['action']}, "
                     f"{_when(d['ts'])})" + (f"; until {_when(ended['ts'])} ({ended['action']})" if ended else
                                            "; serving"))
    return "\n".join(lines)

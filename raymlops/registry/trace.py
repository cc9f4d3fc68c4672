"""A model version's lineage as one record: code → data → model → deployments."""

from __future__ import annotations

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
    deployments = [
        {"ts": r.ts, "deployment": r.record["ids"].get("deployment"), "endpoint": r.record["how"].get("endpoint"),
         "reason": r.record.get("reason")}
        for r in audit.records(store.metadata, action="deployment.created")
        if r.record["ids"].get("model") == version.id
    ]
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
        lines.append(f"deployed {d['deployment']} at {d.get('endpoint')}" if d["deployment"] else "deployed never")
    return "\n".join(lines)

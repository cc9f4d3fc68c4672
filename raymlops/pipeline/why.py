"""Why a model is trained again: which of its inputs differ from the last version's.

A model's cache key hashes everything it is made of (:func:`raymlops.pipeline.model_steps._inputs`:
the snapshot, features, data settings, seed, train and gate sections, code, package versions, the
estimators' code). The lineage keeps one short hash per part (:func:`input_parts`), so a run that
trains again can say which parts changed since the newest version of the model, as ``dvc status``
names the changed dependency (a re-run of unchanged-looking inputs registered identical versions
and moved the champion, with no cause given).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from raymlops.registry.registry import list_models
from raymlops.registry.reproduce import code_change
from raymlops.store.home import Store

#: what each part is called in the sentence
_WORDS = {"snapshot": "the data (snapshot)", "features": "the features", "data": "the data section (target, "
          "holdout, transforms, validation)", "seed": "the seed", "name": "the pipeline name",
          "train": "the train section", "gate": "the gate section", "packages": "package versions",
          "estimator_code": "the estimators' code"}


def input_parts(parts: Mapping[str, Any]) -> dict[str, str]:
    """One 16-hex-digit hash per input part, for the lineage."""
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for k, v in parts.items()}


def what_changed(store: Store, name: str, parts: Mapping[str, Any]) -> str | None:
    """``"since NAME:vN: ..."``: the parts that differ from the newest version of ``name`` that
    recorded them (None when there is none, or nothing differs)."""
    older = [v for v in list_models(store, name) if v.lineage.get("inputs_parts")]
    if not older:
        return None
    last = older[-1]
    recorded: Mapping[str, str] = last.lineage["inputs_parts"]
    now = input_parts(parts)
    changed = []
    for key in now:
        if recorded.get(key) == now[key]:
            continue
        if key == "code" and isinstance(last.lineage.get("code"), dict):
            changed.append(f"code ({code_change(last.lineage['code'], parts['code'])})")
        elif key == "snapshot":
            changed.append(f"the data (snapshot {str(last.snapshot_id)[:12]} -> {str(parts['snapshot'])[:12]})")
        elif key == "packages":
            old = last.lineage.get("packages") or {}
            moved = [f"{p} {old.get(p)} -> {v}" for p, v in sorted(parts["packages"].items()) if old.get(p) != v]
            changed.append(f"package versions ({', '.join(moved) or 'changed'})")
        else:
            changed.append(_WORDS.get(key, key))
    return f"since {last.id}: {'; '.join(changed)} changed" if changed else None

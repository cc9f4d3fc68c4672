"""What a registered version is to whoever loads or serves it: one :class:`ModelSpec`.

A spec names the version (``name:vN``), where its artifact lies (artifact root, key, sha256),
its signature (inputs with their training ranges, output, classes), metrics, a lineage summary
and an input example. It travels as a plain dict (:meth:`ModelSpec.to_dict`, the form the
traffic table has always carried) between the CLI, a route's control actor and its replicas;
:meth:`ModelSpec.from_dict` checks that dict and names a missing or mistyped field.

:func:`load_artifact` is the only place raymlops unpickles a model: the registry's own artifact,
read once by :meth:`~raymlops.store.artifacts.ArtifactStore.read_verified` after its sha256
matched the recorded one. The registry (:func:`raymlops.registry.load_model`), reproduce and
every Serve replica load through it.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raymlops.exceptions import IntegrityError, ValidationError
from raymlops.store.artifacts import ArtifactStore

if TYPE_CHECKING:
    from raymlops.registry.registry import ModelVersion

LINEAGE_SUMMARY = ("code", "config_hash", "snapshot_id", "seed", "run_id")


def load_artifact(artifacts: ArtifactStore, key: str, sha256: str) -> Any:
    """The fitted estimator stored at ``key``, after its bytes (read once) matched ``sha256``."""
    import joblib  # only loaders need it; the driver that builds a Serve app never does

    return joblib.load(io.BytesIO(artifacts.read_verified(key, sha256)))  # our own artifact, verified


def _field(data: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in data:
        raise ValidationError(f"{where}: missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind):
        raise ValidationError(f"{where}: field {name!r}: expected {kind.__name__}, found {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """One registered version, as a loader or a Serve replica needs it (no Ray, no I/O to build)."""

    model_id: str
    artifact_root: str
    artifact_key: str
    artifact_sha256: str
    signature: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage_summary: dict[str, Any] = field(default_factory=dict)
    input_example: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, version: ModelVersion, artifact_root: str) -> ModelSpec:
        """The spec of a registered ``version`` whose artifact lies under ``artifact_root``; its
        input example is the middle of each input's training range (0 where none is recorded), or
        a string input's first category."""
        signature, lineage = version.signature, version.lineage
        example = {
            i["name"]: (str(i["categories"][0]) if i.get("categories") else "") if i.get("type") == "string"
            else (float(i["min"]) + float(i["max"])) / 2 if i.get("min") is not None and i.get("max") is not None
            else 0.0
            for i in signature["inputs"]
        }
        return cls(model_id=version.id, artifact_root=artifact_root, artifact_key=version.artifact_key,
                   artifact_sha256=version.artifact_sha256, signature=signature, metrics=version.metrics,
                   lineage_summary={k: lineage.get(k) for k in LINEAGE_SUMMARY}, input_example=example)

    @property
    def name(self) -> str:
        """The registered model's name (``churn`` of ``churn:v3``)."""
        return self.model_id.split(":", 1)[0]

    @property
    def features(self) -> list[str]:
        """The input columns, in the order the model takes them."""
        return [str(i["name"]) for i in self.signature["inputs"]]

    def with_example(self, example: dict[str, Any]) -> ModelSpec:
        return dataclasses.replace(self, input_example=dict(example))

    # -- the artifact -------------------------------------------------------------------------
    def verify(self) -> None:
        """IntegrityError (or NotFound) unless the artifact is present with its recorded sha256
        (streamed: nothing is loaded)."""
        ArtifactStore(self.artifact_root).verify(self.artifact_key, self.artifact_sha256)

    def load(self) -> Any:
        """The fitted estimator, through :func:`load_artifact`; a changed artifact is an
        IntegrityError naming the model."""
        try:
            return load_artifact(ArtifactStore(self.artifact_root), self.artifact_key, self.artifact_sha256)
        except IntegrityError as exc:
            raise IntegrityError(f"{exc} (model {self.model_id}); refusing to load it") from None

    # -- wire form ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "model spec") -> ModelSpec:
        """The spec of ``data`` (:meth:`to_dict`'s form); ValidationError naming a missing or
        mistyped field (``where`` says whose spec it is)."""
        if isinstance(data, ModelSpec):
            return data
        if not isinstance(data, dict):
            raise ValidationError(f"{where}: expected a model spec (a mapping), found {type(data).__name__}")
        text = {n: _field(data, n, str, where) for n in ("model_id", "artifact_root", "artifact_key",
                                                         "artifact_sha256")}
        signature = _field(data, "signature", dict, where)
        inputs = signature.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, dict) and "name" in i for i in inputs):
            raise ValidationError(f"{where}: field 'signature.inputs': expected a list of inputs with a name")
        optional = {n: _field(data, n, dict, where) if data.get(n) is not None else {}
                    for n in ("metrics", "lineage_summary", "input_example")}
        return cls(signature=signature, **text, **optional)

"""Model versions, aliases and lineage."""

from raymlops.registry.lineage import code_version, package_versions
from raymlops.registry.registry import CHAMPION, ModelVersion, get_model, list_models, load_model, register_model
from raymlops.registry.spec import ModelSpec

__all__ = [
    "CHAMPION", "ModelSpec", "ModelVersion", "code_version", "get_model", "list_models", "load_model",
    "package_versions", "register_model",
]

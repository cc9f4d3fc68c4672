"""Metadata (SQLite) and artifacts (pyarrow.fs URIs)."""

from raymlops.store.artifacts import ArtifactStore, resolve_filesystem
from raymlops.store.home import Store, resolve_home
from raymlops.store.metadata import MetadataStore

__all__ = ["ArtifactStore", "MetadataStore", "Store", "resolve_filesystem", "resolve_home"]

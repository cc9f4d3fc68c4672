"""Ingest: a source URI → a Ray Dataset (Ray adapter).

Sources: files (CSV, Parquet, JSON) under any pyarrow.fs URI (local path, ``s3://``,
``hdfs://``), and ``sklearn://<name>`` for the datasets scikit-learn ships (no download).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow as pa

from raymlops.exceptions import ConfigError, ValidationError
from raymlops.store.artifacts import resolve_filesystem

if TYPE_CHECKING:
    import ray.data

_SKLEARN_SHIPPED = {"breast_cancer", "iris", "wine", "diabetes", "digits"}
_EXT = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json"}


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def sklearn_table(name: str) -> pa.Table:
    """A dataset shipped inside scikit-learn, as Arrow, with snake_case column names."""
    if name not in _SKLEARN_SHIPPED:
        raise ConfigError(
            f"data.source: expected sklearn://<one of {', '.join(sorted(_SKLEARN_SHIPPED))}>, found sklearn://{name}"
        )
    import sklearn.datasets

    frame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
    frame.columns = [_snake(str(c)) for c in frame.columns]
    return pa.Table.from_pandas(frame, preserve_index=False)


def detect_format(uri: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    lower = uri.lower().rstrip("/")
    for ext, kind in _EXT.items():
        if lower.endswith(ext):
            return kind
    raise ConfigError(f"data.format: cannot tell the format of {uri!r} from its name; set csv, parquet or json")


def read_source(uri: str, fmt: str = "auto") -> ray.data.Dataset:
    """Read ``uri`` with Ray Data; errors name the source."""
    import ray.data

    if uri.startswith("sklearn://"):
        return ray.data.from_arrow(sklearn_table(uri.removeprefix("sklearn://")))
    kind = detect_format(uri, fmt)
    fs, path = resolve_filesystem(uri)
    if fs.get_file_info(path).type.name == "NotFound":
        raise ConfigError(f"data.source: {uri!r} not found")
    reader = {"csv": ray.data.read_csv, "parquet": ray.data.read_parquet, "json": ray.data.read_json}[kind]
    try:
        return reader(path, filesystem=fs)
    except Exception as exc:  # Ray wraps pyarrow's parse errors; name the source instead
        raise ValidationError(f"data.source: cannot read {uri!r} as {kind}: {exc}") from exc

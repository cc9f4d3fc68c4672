"""Ingest: a source → a Ray Dataset (Ray adapter).

Sources (``data.source``):

- files (CSV, Parquet, JSON / JSON Lines) under any pyarrow.fs URI: a local path, ``s3://…``,
  ``gs://…``, ``hdfs://…``; a file or a folder of files;
- ``callable:package.module:function``: a function of no arguments returning a Ray Dataset, an
  Arrow table or a pandas DataFrame (tables and frames are handed to Ray Data as they are);
- ``sklearn://<name>``: a dataset shipped inside scikit-learn (no download).

Filesystem options (``data.options``: ``endpoint_override``, ``region``, ``access_key``,
``secret_key``, ``scheme`` … — the keyword arguments of pyarrow's ``S3FileSystem``,
``GcsFileSystem`` or ``HadoopFileSystem``) come from the config, where a value ``${NAME}`` is
read from the environment when the source is opened, or from the URI's query string; credentials
also come from the usual environment variables (``AWS_ACCESS_KEY_ID`` …). Option values are
never logged, put in error messages, or stored: the config keeps credential-like values as
:class:`pydantic.SecretStr`, and what raymlops records of a source is :func:`redact_uri`'s form.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

from raymlops.data.tables import csv_convert_options, pandas_index_columns
from raymlops.exceptions import ConfigError, ValidationError
from raymlops.store.artifacts import is_secret_option, resolve_filesystem

if TYPE_CHECKING:
    import ray.data

_SKLEARN_SHIPPED = {"breast_cancer", "iris", "wine", "diabetes", "digits"}
_EXT = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json"}
#: compressed text files (data.csv.gz): Arrow reads them by this extension, the format is the one before it
_COMPRESSED = (".gz", ".bz2", ".zst", ".zstd", ".lz4", ".br")
CALLABLE_PREFIX = "callable:"
_FUNC_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def sklearn_table(name: str) -> pa.Table:
    """A dataset shipped inside scikit-learn, as Arrow, with snake_case column names."""
    _sklearn_name(name)
    import sklearn.datasets

    frame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
    frame.columns = [_snake(str(c)) for c in frame.columns]
    return pa.Table.from_pandas(frame, preserve_index=False)


def _sklearn_name(name: str) -> None:
    if name not in _SKLEARN_SHIPPED:
        raise ConfigError(
            f"data.source: expected sklearn://<one of {', '.join(sorted(_SKLEARN_SHIPPED))}>, found sklearn://{name}"
        )


def redact_uri(uri: str) -> str:
    """``uri`` as raymlops records it: without user info (``user:pass@``) and without query
    options that look like credentials. Paths and ``callable:`` references are unchanged."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_secret_option(k)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def _option_value(name: str, value: Any) -> Any:
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, str):
        m = _ENV_REF.match(value.strip())
        if m:
            env = os.environ.get(m.group(1))
            if env is None:
                raise ConfigError(f"data.options.{name}: environment variable {m.group(1)} is not set")
            return env
    return value


def resolve_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Option values with ``${NAME}`` read from the environment and secrets unwrapped (keep the
    result out of logs and records)."""
    return {k: _option_value(k, v) for k, v in (options or {}).items()}


def _format_of(name: str) -> str | None:
    """The format a file name says (past a compression extension), or None."""
    lower = name.lower()
    for ext in _COMPRESSED:
        if lower.endswith(ext):
            lower = lower[: -len(ext)]
            break
    return next((kind for ext, kind in _EXT.items() if lower.endswith(ext)), None)


def source_filesystem(uri: str, options: Mapping[str, Any] | None = None) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a source URI, built with ``options`` (see the module doc).

    Without options this is :func:`raymlops.store.artifacts.resolve_filesystem` (the query
    string carries non-secret options, credentials come from the environment)."""
    if not options:
        return resolve_filesystem(uri)
    opts = resolve_options(options)
    if "://" not in uri:
        raise ConfigError(f"data.options: options apply to s3://, gs:// and hdfs:// sources, not the local "
                          f"path {uri!r}")
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        resolve_filesystem(uri)  # refuses it, naming the URI without the credentials
    query = {k: v for k, v in parse_qsl(parts.query)}
    merged: dict[str, Any] = {**query, **opts}
    scheme = parts.scheme.lower()
    try:
        if scheme == "s3":
            fs: pafs.FileSystem = pafs.S3FileSystem(**merged)
            path = f"{parts.netloc}{parts.path}"
        elif scheme in ("gs", "gcs"):
            fs = pafs.GcsFileSystem(**merged)
            path = f"{parts.netloc}{parts.path}"
        elif scheme == "hdfs":  # hdfs://namenode:8020/path; no host: fs.defaultFS of core-site.xml
            host = parts.hostname or "default"
            port = parts.port or (8020 if parts.hostname else 0)
            fs = pafs.HadoopFileSystem(host=host, port=port, **merged)
            path = parts.path
        else:
            raise ConfigError(f"data.options: scheme {scheme!r} takes no options (s3, gs, hdfs do)")
    except TypeError as exc:  # unknown keyword: names the key, never a value
        raise ConfigError(f"data.options: {redact_uri(uri)}: {exc}") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"data.source: cannot open {redact_uri(uri)} with data.options: "
                          f"{_scrub(str(exc), merged)}") from None
    return fs, path


def _scrub(text: str, options: Mapping[str, Any]) -> str:
    for k, v in options.items():
        if is_secret_option(k) and isinstance(v, str) and v:
            text = text.replace(v, "***")
    return text


def detect_format(uri: str, fmt: str, fs: pafs.FileSystem | None = None, path: str | None = None) -> str:
    """``fmt`` unless it is ``auto``: then the format named by the file's extension, or by the
    most common known extension among a folder's files."""
    if fmt != "auto":
        return fmt
    kind = _format_of(uri.split("?", 1)[0].rstrip("/"))
    if kind is not None:
        return kind
    if fs is not None and path is not None:
        found: dict[str, int] = {}
        try:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        except OSError:
            infos = []
        for info in infos:
            kind = _format_of(info.path) if info.type == pafs.FileType.File else None
            if kind is not None:
                found[kind] = found.get(kind, 0) + 1
        if found:
            return max(found, key=lambda k: found[k])
    raise ConfigError(f"data.format: cannot tell the format of {redact_uri(uri)!r} from its name; "
                      "set csv, parquet or json")


def resolve_callable(spec: str, key: str = "data.source") -> Any:
    """The function named by ``module:function`` (imported here, on the driver)."""
    if not _FUNC_REF.match(spec):
        raise ConfigError(f"{key}: expected 'callable:module:function', e.g. 'callable:mypkg.data:load', "
                          f"found {CALLABLE_PREFIX}{spec!r}")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module raised while importing
        raise ConfigError(f"{key}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ConfigError(f"{key}: module {module_name!r} has no function {attr!r}")
    return fn


def from_callable(spec: str) -> ray.data.Dataset:
    """Call the user's function and turn what it returns into a Ray Dataset."""
    import pandas as pd
    import ray.data

    out = resolve_callable(spec)()
    if isinstance(out, ray.data.Dataset):
        return out
    if isinstance(out, pa.Table):
        return ray.data.from_arrow(out)
    if isinstance(out, pd.DataFrame):
        return ray.data.from_pandas(out)
    raise ValidationError(f"data.source: {spec} returned {type(out).__name__}; expected a Ray Dataset, "
                          "a pyarrow Table or a pandas DataFrame")


def _where(uri: str) -> str:
    """For a relative local path: where it was looked for (the working directory, as every
    path of a config is read; not the config file's folder)."""
    if "://" in uri or os.path.isabs(os.path.expanduser(uri)):
        return ""
    return f" (looked for {os.path.abspath(uri)}: relative paths are read from the working directory)"


def check_local_source(uri: str) -> None:
    """Raise the ConfigError :func:`read_source` would for a local path that does not exist,
    without Ray (the driver checks the path there too, so a cluster's path is the driver's)."""
    if uri.startswith("sklearn://"):
        _sklearn_name(uri.removeprefix("sklearn://"))
    if "://" in uri or uri.startswith(CALLABLE_PREFIX) or os.path.exists(os.path.expanduser(uri)):
        return
    raise ConfigError(f"data.source: {redact_uri(uri)!r} not found{_where(uri)}")


def _same_parquet_columns(fs: pafs.FileSystem, path: str, shown: str) -> None:
    """A ValidationError naming the file and the columns, when the Parquet files of the folder
    ``path`` do not all have the same columns (Ray Data would fill a column that a file lacks
    with nulls, without a word). Columns in another order are fine: they are read by name. Only
    the files' footers are read, eight at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    files = sorted(i.path for i in infos if i.type == pafs.FileType.File and _format_of(i.path) == "parquet"
                   and not i.base_name.startswith(("_", ".")))
    if len(files) < 2:
        return

    def columns(file: str) -> set[str]:
        with fs.open_input_file(file) as f:
            schema = pq.read_schema(f)
        return set(schema.names) - set(pandas_index_columns(schema))

    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        found = list(pool.map(columns, files))
    for file, names in zip(files[1:], found[1:], strict=True):
        if names != found[0]:
            lacks, extra = sorted(found[0] - names), sorted(names - found[0])
            what = "; ".join(part for part in (f"lacks {', '.join(map(repr, lacks))}" if lacks else "",
                                               f"has {', '.join(map(repr, extra))} besides" if extra else "") if part)
            raise ValidationError(
                f"data.source: the Parquet files of {shown!r} do not have the same columns: "
                f"{file.rsplit('/', 1)[-1]!r} {what} (against {files[0].rsplit('/', 1)[-1]!r}); a column "
                "that a file lacks would be read as nulls")


def read_source(uri: str, fmt: str = "auto", options: Mapping[str, Any] | None = None) -> ray.data.Dataset:
    """Read ``uri`` with Ray Data (lazily); errors name the source, never its secrets. A Parquet
    source leaves out a stored pandas index (:func:`~raymlops.data.tables.pandas_index_columns`)."""
    import ray.data

    if uri.startswith(CALLABLE_PREFIX):
        return from_callable(uri.removeprefix(CALLABLE_PREFIX).strip())
    if uri.startswith("sklearn://"):
        return ray.data.from_arrow(sklearn_table(uri.removeprefix("sklearn://")))
    fs, path = source_filesystem(uri, options)
    shown = redact_uri(uri)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        raise ConfigError(f"data.source: cannot reach {shown!r}: {_scrub(str(exc), resolve_options(options))}") \
            from None
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(f"data.source: {shown!r} not found{_where(uri)}")
    kind = detect_format(uri, fmt, fs, path)
    reader = {"csv": ray.data.read_csv, "parquet": ray.data.read_parquet, "json": ray.data.read_json}[kind]
    try:
        ds = reader(path, filesystem=fs, **({"convert_options": csv_convert_options()} if kind == "csv" else {}))
    except Exception as exc:  # Ray wraps pyarrow's parse errors; name the source instead
        raise ValidationError(f"data.source: cannot read {shown!r} as {kind}: "
                              f"{_scrub(str(exc), resolve_options(options))}") from exc
    if kind == "parquet" and info.type == pafs.FileType.Directory:
        _same_parquet_columns(fs, path, shown)
    if kind in ("csv", "json"):  # Ray Data's error for an empty one advises an option of its own (partition_filter)
        files = [info] if info.type == pafs.FileType.File else fs.get_file_info(
            pafs.FileSelector(path, recursive=True, allow_not_found=True))
        empty = [f.base_name for f in files if f.type == pafs.FileType.File and f.size == 0
                 and (info.type == pafs.FileType.File or _format_of(f.path) == kind)]
        if empty:
            raise ValidationError(f"data.source: {shown!r}: {', '.join(map(repr, empty[:3]))}"
                                  f"{' and more' if len(empty) > 3 else ''} {'is' if len(empty) == 1 else 'are'} "
                                  "empty (0 bytes): not even a header; remove or fill it")
    if kind == "parquet":  # a DataFrame's stored index is not data (read from the files' footers: nothing runs)
        schema = getattr(ds.schema(), "base_schema", None)
        names = schema.names if isinstance(schema, pa.Schema) else []
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:  # Arrow would say "Multiple matches for FieldRef.Name(a)" later, in a task
            raise ValidationError(f"data.source: column {twice!r} appears {names.count(twice)} times in {shown!r}; "
                                  "give every column a name of its own")
        index = pandas_index_columns(schema) if isinstance(schema, pa.Schema) else []
        if index:
            ds = ds.drop_columns(index)
    return ds


def open_source(data: Any) -> ray.data.Dataset:
    """``read_source`` for a :class:`raymlops.config.DataConfig` (source, format, options)."""
    return read_source(data.source, data.format, getattr(data, "options", None))

"""A snapshot as Ray Datasets for ``strategy: distributed``: the driver never holds the training rows.

Each Parquet file of the snapshot is read by a Ray task (``map_batches`` over the list of files),
which decides every row's side there and keeps only the rows asked for:

- **holdout**: exactly the rows the pipeline holds out (:func:`raymlops.train.prepare.holdout_of`:
  a hash of the row index, or of ``data.split_key``, and the seed), so the evaluation, the gate and
  ``reproduce`` score the same rows as for any other strategy;
- **validation** (early stopping, Tune's metric): ``train.validation_fraction`` of the other rows,
  by the same kind of hash with a salted seed;
- **worker**: training and validation rows go to worker ``global row index mod num_workers``
  (LightGBM: every worker gets all the validation rows, see :func:`boost_datasets`).
  Each worker reads its own datasets (``train_<rank>``, ``valid_<rank>``), so which rows a worker
  trains on, and in which order, depends only on the snapshot, the seed and ``num_workers``: the
  same inputs give the same model (Ray Data's dynamic ``streaming_split`` would not).

The driver gets the label values (to fix the class order), the row counts and the holdout rows.
The read tasks take no CPU of their own, so they run while the training workers hold every CPU;
so that they do not start a worker process per file at once, each dataset runs at most
:data:`READ_TASKS` of them at a time (the label-count pass: one per training worker, at least two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raymlops.data.schema import column_array, feature_values, missing_labels, missing_labels_error
from raymlops.data.snapshot import REPAIR_HINT, load_manifest, resolve_snapshot, verify_snapshot
from raymlops.data.split import holdout_mask, split_mask
from raymlops.exceptions import IntegrityError, ValidationError
from raymlops.store.home import Store
from raymlops.train.objective import continuous_target

#: mixed into the seed for the validation split, so it is independent of the holdout split
VALIDATION_SALT = 0x5A17_0B0C
LABEL = "__label__"


@dataclass(frozen=True)
class SnapshotSource:
    """Where the training rows are, and how the pipeline splits them."""

    store: Store
    snapshot_id: str
    features: tuple[str, ...]
    target: str
    holdout_fraction: float
    seed: int
    split_key: str | None = None


@dataclass(frozen=True)
class _Part:
    path: str
    offset: int  # global index of the file's first row (files in manifest order)
    rows: int


@dataclass(frozen=True)
class _Plan:
    """What one read task keeps, and how it labels it (picklable: it travels to the tasks)."""

    filesystem: Any
    features: tuple[str, ...]
    target: str
    holdout_fraction: float
    validation_fraction: float
    seed: int
    split_key: str | None
    num_workers: int
    classes: tuple[Any, ...] | None  # classification: label value -> index in this order


def snapshot_parts(source: SnapshotSource) -> list[_Part]:
    """The snapshot's data files with their first global row index (read from Parquet footers)."""
    snap_id = resolve_snapshot(source.store, source.snapshot_id)
    problems = verify_snapshot(source.store, snap_id)
    if problems:
        raise IntegrityError(f"snapshot {snap_id[:12]} is corrupted: " + "; ".join(problems) + REPAIR_HINT)
    manifest = load_manifest(source.store, snap_id)
    arts = source.store.artifacts
    parts, offset = [], 0
    for f in manifest["files"]:
        if not f["path"].startswith("data/"):
            continue
        path = arts.path(f"snapshots/{snap_id}/{f['path']}")
        with arts.fs.open_input_file(path) as fh:
            rows = pq.ParquetFile(fh).metadata.num_rows
        parts.append(_Part(path, offset, rows))
        offset += rows
    if offset != manifest["rows"]:
        raise IntegrityError(f"snapshot {snap_id[:12]}: {offset} rows in its files, manifest says {manifest['rows']}")
    return parts


def _sides(table: pa.Table, part: dict[str, Any], total: int, plan: _Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(holdout mask, validation mask, worker index)`` of one file's rows."""
    offset, n = int(part["offset"]), table.num_rows
    if plan.split_key is None:
        holdout = holdout_mask(total, plan.holdout_fraction, plan.seed)[offset:offset + n]
        valid = holdout_mask(total, plan.validation_fraction, plan.seed ^ VALIDATION_SALT)[offset:offset + n]
    else:
        holdout = split_mask(table, plan.holdout_fraction, plan.seed, key=plan.split_key)
        valid = split_mask(table, plan.validation_fraction, plan.seed ^ VALIDATION_SALT, key=plan.split_key)
    worker = (np.arange(offset, offset + n) % max(plan.num_workers, 1)).astype(np.int64)
    return holdout, valid & ~holdout, worker


def _read(part: dict[str, Any], plan: _Plan, columns: list[str]) -> pa.Table:
    with plan.filesystem.open_input_file(part["path"]) as fh:
        return pq.read_table(fh, columns=columns)


def _labels(y: np.ndarray, classes: tuple[Any, ...] | None) -> np.ndarray:
    if classes is None:
        return np.asarray(y, dtype=np.float64)
    order = np.asarray(classes)
    idx = np.searchsorted(order, y)
    idx = np.clip(idx, 0, len(order) - 1)
    if not np.array_equal(order[idx], y):
        raise ValidationError(f"label values outside the training classes {list(order)}")
    return idx.astype(np.float64)


def _rows_of(batch: pa.Table, *, plan: _Plan, total: int, side: str, rank: int, extra: tuple[str, ...]) -> pa.Table:
    """The rows of ``side`` ('train', 'valid', 'holdout') of the files in ``batch`` (one row per file)."""
    out = []
    cols = list(dict.fromkeys([*plan.features, plan.target, *extra, *([plan.split_key] if plan.split_key else [])]))
    for part in batch.to_pylist():
        table = _read(part, plan, cols)
        holdout, valid, worker = _sides(table, part, total, plan)
        mine = worker == rank if rank >= 0 else np.ones(len(worker), dtype=bool)  # rank -1: every worker's rows
        keep = holdout if side == "holdout" else (valid if side == "valid" else ~holdout & ~valid) & mine
        table = table.filter(pa.array(keep))
        data = {f: feature_values(table.column(f)) for f in plan.features}  # strings: their category codes
        y = column_array(table.column(plan.target))
        if side == "holdout":
            data[plan.target] = y  # as stored: the evaluation compares with the model's classes_
            for c in extra:
                data[c] = column_array(table.column(c))
        else:
            data[LABEL] = _labels(y, plan.classes)
        out.append(pa.table(data))
    return pa.concat_tables(out) if out else pa.table({})


def _label_counts(batch: pa.Table, *, plan: _Plan, total: int) -> pa.Table:
    """Per file: the distinct labels of its training rows, and its train / validation row counts."""
    values: list[Any] = []
    valid_values: list[Any] = []
    train = valid = missing = 0
    first_missing: int | None = None
    for part in batch.to_pylist():
        table = _read(part, plan, list(dict.fromkeys([plan.target, *([plan.split_key] if plan.split_key else [])])))
        holdout, is_valid, _ = _sides(table, part, total, plan)
        count, first = missing_labels(table.column(plan.target))
        if count:  # counted here, refused by the driver (boost_datasets) with the first one's row
            missing += count
            first_missing = min(x for x in (first_missing, int(part["offset"]) + (first or 0)) if x is not None)
            continue
        y = column_array(table.column(plan.target))
        values.extend(np.unique(y[~holdout]).tolist())
        valid_values.extend(np.unique(y[is_valid]).tolist())
        valid += int(is_valid.sum())
        train += int((~holdout & ~is_valid).sum())
    return pa.table({"labels": [values], "valid_labels": [valid_values], "train": [train], "valid": [valid],
                     "missing": [missing],
                     "first_missing": pa.array([first_missing], type=pa.int64())})


@dataclass(frozen=True)
class BoostData:
    """The Ray Datasets of one training run (lazy: read when a worker asks for them)."""

    datasets: dict[str, Any]
    classes: tuple[Any, ...] | None
    train_rows: int
    valid_rows: int
    num_features: int
    #: the classes among the validation rows (classification)
    valid_classes: tuple[Any, ...] | None = None


#: read tasks one dataset runs at once (they take no CPU, so Ray's scheduler would not bound them)
READ_TASKS = 2


def _files_dataset(parts: list[_Part]) -> Any:
    import ray.data

    return ray.data.from_items([{"path": p.path, "offset": p.offset, "rows": p.rows} for p in parts],
                               override_num_blocks=max(1, len(parts)))


def _map_files(parts: list[_Part], fn: Any, kwargs: dict[str, Any], tasks: int = READ_TASKS) -> Any:
    """``fn`` over every file of ``parts`` as zero-CPU Ray tasks, at most ``tasks`` at a time (and no
    more than there are files: Ray Data warns on stderr of a pool larger than its inputs)."""
    import ray.data

    size = max(1, min(tasks, len(parts)))
    return _files_dataset(parts).map_batches(fn, batch_format="pyarrow", batch_size=1, num_cpus=0,
                                             compute=ray.data.TaskPoolStrategy(size=size), fn_kwargs=kwargs)


def boost_datasets(source: SnapshotSource, *, task: str, num_workers: int, validation_fraction: float,
                   shared_validation: bool = False) -> BoostData:
    """``train_<rank>`` and ``valid_<rank>`` Ray Datasets for each worker, and what the driver must know.

    ``shared_validation``: every worker's ``valid_<rank>`` holds all the validation rows (LightGBM
    evaluates each worker's validation rows alone, so the workers must see the same rows to agree
    on early stopping; XGBoost reduces its metrics across workers and takes a shard each)."""
    parts = snapshot_parts(source)
    total = sum(p.rows for p in parts)
    plan = _Plan(source.store.artifacts.fs, tuple(source.features), source.target, source.holdout_fraction,
                 validation_fraction, source.seed, source.split_key, num_workers, None)
    counts = _map_files(parts, _label_counts, {"plan": plan, "total": total}, max(READ_TASKS, num_workers)).take_all()
    missing = sum(int(c["missing"]) for c in counts)
    if missing:
        first = min(int(c["first_missing"]) for c in counts if c["first_missing"] is not None)
        raise missing_labels_error(source.target, missing, total, first)
    train_rows = sum(int(c["train"]) for c in counts)
    valid_rows = sum(int(c["valid"]) for c in counts)
    if train_rows < num_workers or valid_rows == 0:
        raise ValidationError(
            f"snapshot {source.snapshot_id[:12]}: {train_rows} training and {valid_rows} validation rows; "
            f"train.num_workers {num_workers} needs at least one training row per worker and some validation rows "
            "(more rows, or a larger train.validation_fraction)")
    classes: tuple[Any, ...] | None = None
    if task == "regression":  # the workers would fail on the first text label, in a Ray Data task
        text = list(dict.fromkeys(v for c in counts for v in c["labels"][:5] if isinstance(v, (str, bool))))[:3]
        if text:
            raise ValidationError(f"data.target {source.target!r}: the target holds text or booleans "
                                  f"({', '.join(map(repr, text))}, ...); a regression needs numbers: set "
                                  "train.task: classification with a classification metric, or choose another "
                                  "data.target")
    if task == "classification":
        classes = tuple(sorted({v for c in counts for v in c["labels"]}))
        if len(classes) < 2:
            raise ValidationError(f"data.target {source.target!r}: the training rows hold one class {list(classes)}")
        continuous = continuous_target(np.asarray(classes), train_rows + valid_rows)
        if continuous is not None:
            raise continuous
        plan = _Plan(**{**plan.__dict__, "classes": classes})
    datasets = {}
    for rank in range(num_workers):
        for side in ("train", "valid"):
            datasets[f"{side}_{rank}"] = _map_files(parts, _rows_of, {
                "plan": plan, "total": total, "side": side, "extra": (),
                "rank": -1 if side == "valid" and shared_validation else rank})
    valid_classes = tuple(sorted({v for c in counts for v in c["valid_labels"]})) if classes is not None else None
    return BoostData(datasets, classes, train_rows, valid_rows, len(source.features), valid_classes)


def holdout_rows(source: SnapshotSource, extra: tuple[str, ...] = (),
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(X_holdout, y_holdout, {column: holdout values})``: only the holdout rows reach the driver."""
    parts = snapshot_parts(source)
    total = sum(p.rows for p in parts)
    plan = _Plan(source.store.artifacts.fs, tuple(source.features), source.target, source.holdout_fraction,
                 0.5, source.seed, source.split_key, 1, None)
    extra = tuple(c for c in extra if c not in source.features and c != source.target)
    if extra and parts:
        with source.store.artifacts.fs.open_input_file(parts[0].path) as fh:
            names = pq.ParquetFile(fh).schema_arrow.names
        missing = [c for c in extra if c not in names]
        if missing:
            raise ValidationError(f"gate.slices: the data has no column {missing[0]!r} (columns: {', '.join(names)})")
    ds = _map_files(parts, _rows_of, {"plan": plan, "total": total, "side": "holdout", "rank": 0, "extra": extra})
    tables = [t for t in (pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
                          for b in ds.iter_batches(batch_format="pyarrow", batch_size=None)) if t.num_rows]
    if not tables:
        raise ValidationError(f"data.holdout_fraction {source.holdout_fraction} leaves no holdout rows")
    table = pa.concat_tables(tables)
    X = np.column_stack([table.column(f).to_numpy(zero_copy_only=False) for f in source.features])
    y = column_array(table.column(source.target))
    cols = {c: column_array(table.column(c)) for c in (*source.features, source.target, *extra)}
    return X.astype(np.float64), y, cols

"""Profiles of Ray Datasets (Ray adapter over :mod:`raymlops.stats.profile`).

Both passes run as ``map_batches`` on the Ray Data workers; each batch sends back one small
pickled partial result (a few hundred KB at most: statistics, the bottom-k sample, bin counts),
never its rows, and the driver merges them as they stream in.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from raymlops.data.errors import ours
from raymlops.stats.profile import (
    SAMPLE_SIZE,
    PartialProfile,
    Profile,
    count_on_edges,
    finish,
    plan_edges,
    row_keys,
)

if TYPE_CHECKING:
    import ray.data

__all__ = ["count_pass", "finish_profile", "merged_partial", "profile", "reference_counts", "scan_batches"]


def _table(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def scan_batches(sample_size: int = SAMPLE_SIZE, with_hashes: bool = True) -> Callable[[pa.Table], pa.Table]:
    """A batch function for pass 1: per row its content hash ``h`` (uint64; snapshots' content id
    reads it) and, on the batch's first row, the pickled :class:`PartialProfile` in ``p``."""

    def scan(batch: pa.Table) -> pa.Table:
        table = _table(batch)
        keys = row_keys(table)
        partial = PartialProfile.from_table(table, keys, sample_size=sample_size)
        blob = pickle.dumps(partial, protocol=pickle.HIGHEST_PROTOCOL)
        if not with_hashes:
            return pa.table({"p": pa.array([blob], type=pa.binary())})
        payload = [blob] + [None] * (table.num_rows - 1) if table.num_rows else []
        return pa.table({"h": pa.array(keys, type=pa.uint64()), "p": pa.array(payload, type=pa.binary())})

    return scan


def _partials(blobs: Iterator[bytes | None]) -> PartialProfile:
    merged = PartialProfile.empty()
    for blob in blobs:
        if blob is not None:
            merged = merged.merge(pickle.loads(blob))  # noqa: S301 - our own workers' output
    return merged


def count_pass(ds: ray.data.Dataset, *edge_sets: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Pass 2: exact counts of numeric columns on each set of edges, summed over all batches."""
    if not any(edge_sets):
        return [{} for _ in edge_sets]

    def count(batch: pa.Table) -> pa.Table:
        table = _table(batch)
        counts = [count_on_edges(table, edges) for edges in edge_sets]
        return pa.table({"p": pa.array([pickle.dumps(counts, protocol=pickle.HIGHEST_PROTOCOL)], type=pa.binary())})

    totals = [{n: np.zeros(np.asarray(e).size + 1, dtype=np.int64) for n, e in edges.items()} for edges in edge_sets]
    batches: Iterable[Any] = ds.map_batches(count, batch_format="pyarrow", batch_size=None).iter_batches(
        batch_format="pyarrow", batch_size=None)
    for batch in batches:
        for blob in batch.column("p").to_pylist():
            for total, part in zip(totals, pickle.loads(blob), strict=True):  # noqa: S301 - our workers' output
                for n, c in part.items():
                    total[n] += c
    return totals


def finish_profile(ds: ray.data.Dataset, partial: PartialProfile, reference: Profile | None = None) -> Profile:
    """Pass 2 (own fine bins, and the reference's when given) and the finished profile."""
    own = plan_edges(partial)
    ref_edges = {} if reference is None else {n: e for n, e in reference.edges().items() if n in own}
    own_counts, ref_counts = count_pass(ds, own, ref_edges)
    return finish(partial, own, own_counts, reference, ref_counts if reference is not None else None)


def reference_counts(ds: ray.data.Dataset, reference: Profile,
                     columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """Counts of ``ds``'s numeric columns on ``reference``'s bins (one pass)."""
    edges = {n: e for n, e in reference.edges().items() if columns is None or n in columns}
    with ours():
        names = set(ds.columns())
        return count_pass(ds, {n: e for n, e in edges.items() if n in names})[0]


def profile(ds: ray.data.Dataset, reference: Profile | None = None, sample_size: int = SAMPLE_SIZE) -> Profile:
    """The :class:`Profile` of ``ds``, computed in parallel; with ``reference``, its numeric
    columns are also counted on the reference's bins, so :func:`raymlops.stats.check.check`
    compares them exactly."""
    with ours():
        scanned = ds.map_batches(scan_batches(sample_size, with_hashes=False), batch_format="pyarrow",
                                 batch_size=None)
        batches: Iterable[Any] = scanned.iter_batches(batch_format="pyarrow", batch_size=None)
        partial = _partials(b for batch in batches for b in batch.column("p").to_pylist())
        return finish_profile(ds, partial, reference)


def merged_partial(batches: Iterator[Any]) -> PartialProfile:
    """Merge the ``p`` column of scanned batches (see :func:`scan_batches`)."""
    return _partials(b for batch in batches for b in batch.column("p").to_pylist())

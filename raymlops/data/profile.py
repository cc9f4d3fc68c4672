"""Profiles of Ray Datasets (Ray adapter over :mod:`raymlops.stats.partial` and
:mod:`raymlops.stats.profile`).

Each block is handled by one Ray task (:func:`raymlops.data.blocks.run_on_blocks`) that sends
back plain data, never its rows: :func:`scan_block` its row hashes and its bottom-k sample,
:func:`profile_block` its one-pass statistics and counts. The driver merges them in block order.
A snapshot runs the same two functions, the first in the pass that computes its content id and
the second in the tasks that write its files (:mod:`raymlops.data.snapshot`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from raymlops.data.blocks import Block, blocks_of, canonical_table, run_on_blocks
from raymlops.data.errors import ours
from raymlops.stats.partial import SAMPLE_SIZE, PartialProfile, Sample, row_keys, sample_bound
from raymlops.stats.profile import Profile, finish, reference_edges

if TYPE_CHECKING:
    import ray.data

__all__ = ["merge_partials", "merge_samples", "profile", "profile_block", "sample_blocks", "scan_block"]


def scan_block(table: pa.Table, index: int, sample_size: int, with_keys: bool = True,
               below: int | None = None) -> dict[str, Any]:
    """A block's row hashes (``keys``, uint64, when ``with_keys``), its Arrow ``schema`` and, when
    ``sample_size`` > 0, its bottom-k sample of the rows with keys below ``below`` (``sample``: a
    payload), all of the rows as :func:`~raymlops.data.blocks.canonical_table` types them."""
    table = canonical_table(table)
    keys = row_keys(table)
    sample = Sample.from_table(table, keys, sample_size, below).to_payload() if sample_size > 0 else None
    return {"index": index, "rows": table.num_rows, "keys": keys if with_keys else None, "sample": sample,
            "schema": table.schema}


def profile_block(table: pa.Table, edges: Mapping[str, np.ndarray], ref_edges: Mapping[str, np.ndarray]
                  ) -> dict[str, Any]:
    """A block's one-pass :class:`PartialProfile`, as its payload."""
    return PartialProfile.from_table(table, edges, ref_edges).to_payload()


def merge_samples(payloads: Iterable[Mapping[str, Any] | None]) -> Sample:
    return Sample.merge_all(Sample.from_payload(p) for p in payloads if p is not None)


def merge_partials(payloads: Iterable[Mapping[str, Any]]) -> PartialProfile:
    merged = PartialProfile.empty()
    for p in payloads:
        merged = merged.merge(PartialProfile.from_payload(p))
    return merged


def _profile_task(table: pa.Table, index: int, edges: Mapping[str, np.ndarray],
                  ref_edges: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return profile_block(table, edges, ref_edges)


def sample_blocks(blocks: Sequence[Block], sample_size: int = SAMPLE_SIZE) -> Sample:
    """The bottom-k sample of these blocks' rows (see :func:`raymlops.stats.partial.sample_bound`)."""
    rows = sum(b.rows for b in blocks)
    for below in dict.fromkeys([sample_bound(rows, sample_size), None]):
        sample = merge_samples(s["sample"] for s in run_on_blocks(blocks, scan_block, sample_size, False, below,
                                                                      name="ProfileScan"))
        if sample.complete(rows):
            break
    return sample


def profile_blocks(blocks: Sequence[Block], reference: Profile | None = None,
                   sample_size: int = SAMPLE_SIZE) -> Profile:
    """The :class:`Profile` of these blocks: a sample pass, then the one-pass statistics."""
    sample = sample_blocks(blocks, sample_size)
    edges = sample.edges()
    partial = merge_partials(run_on_blocks(blocks, _profile_task, edges, reference_edges(reference, list(edges)),
                                             name="ProfileBlock"))
    return finish(partial, edges, reference)


def profile(ds: ray.data.Dataset, reference: Profile | None = None, sample_size: int = SAMPLE_SIZE) -> Profile:
    """The :class:`Profile` of ``ds``, computed in parallel; with ``reference``, its numeric
    columns are also counted on the reference's bins, so :func:`raymlops.stats.check.check`
    compares them exactly."""
    with ours():
        return profile_blocks(blocks_of(ds), reference, sample_size)

"""Ray tasks over the blocks of a materialized Ray Dataset, with the results in block order.

Snapshots and profiles are a function per block (hash its rows, write it, profile it) whose small
results are merged on the driver. Running that function as one plain Ray task per block, on the
block's object reference, gives what a ``map_batches`` cannot: each task knows its block's index
(so files get deterministic names in block order), and returns any plain value (numpy arrays and
JSON-able dicts; never a pickle of our own classes) without packing it into a table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import ray.data
    from ray.data.dataset import MaterializedDataset

__all__ = ["Block", "as_table", "blocks_of", "materialized", "run_on_blocks"]


@dataclass(frozen=True)
class Block:
    """One block of a materialized dataset: its object reference, the rows of it that belong to
    the dataset (``start``/``end``; None: all) and how many rows that is."""

    ref: Any
    start: int | None
    end: int | None
    rows: int


def materialized(ds: ray.data.Dataset) -> MaterializedDataset:
    """``ds`` materialized; as it is when it already is (materializing that again still starts
    Ray Data's executor: 20-40 ms)."""
    from ray.data.dataset import MaterializedDataset

    return ds if isinstance(ds, MaterializedDataset) else ds.materialize()


def blocks_of(ds: ray.data.Dataset) -> list[Block]:
    """The blocks of ``ds`` (materialized first if it is not), in order."""
    blocks = []
    for bundle in materialized(ds).iter_internal_ref_bundles():
        slices = getattr(bundle, "slices", None) or [None] * len(bundle.block_refs)
        for ref, meta, piece in zip(bundle.block_refs, bundle.metadata, slices, strict=True):
            if piece is None:
                blocks.append(Block(ref, None, None, int(meta.num_rows or 0)))
            else:
                start, end = int(piece.start_offset), int(piece.end_offset)
                blocks.append(Block(ref, start, end, end - start))
    return blocks


def as_table(block: Any, start: int | None = None, end: int | None = None) -> pa.Table:
    """A Ray Data block (Arrow or pandas) as an Arrow table, sliced to ``[start, end)``."""
    if isinstance(block, pa.RecordBatch):
        table = pa.Table.from_batches([block])
    elif isinstance(block, pa.Table):
        table = block
    else:  # a pandas block
        table = pa.Table.from_pandas(block, preserve_index=False)
    if start is not None:
        table = table.slice(start, (end if end is not None else table.num_rows) - start)
    return table


def _apply(fn: Callable[..., Any], block: Any, start: int | None, end: int | None, index: int, *args: Any) -> Any:
    return fn(as_table(block, start, end), index, *args)


_remote: Any = None


def run_on_blocks(blocks: Sequence[Block], fn: Callable[..., Any], *args: Any, name: str) -> Iterator[Any]:
    """``fn(table, index, *args)`` of every block, each in its own Ray task (one CPU) called
    ``name`` (what the Ray dashboard and state API show), spread over the nodes, yielded in block
    order as they finish.
    ``fn`` must be a module-level function (Ray ships it by name)."""
    import ray

    global _remote
    if _remote is None:
        _remote = ray.remote(num_cpus=1)(_apply)
    shared = tuple(ray.put(a) if isinstance(a, dict) else a for a in args)  # one copy for every task
    task = _remote.options(name=name, scheduling_strategy="SPREAD")  # over the nodes, as Ray Data's own tasks
    refs = [task.remote(fn, b.ref, b.start, b.end, i, *shared) for i, b in enumerate(blocks)]
    try:
        for ref in refs:
            yield ray.get(ref)
    except BaseException:
        for ref in refs:  # a failed block: the others are not needed any more
            ray.cancel(ref)
        raise

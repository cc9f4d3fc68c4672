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

from raymlops.exceptions import ValidationError

__all__ = ["Block", "as_table", "blocks_of", "canonical_schema", "canonical_table", "cast_blocks", "materialized",
           "run_on_blocks", "widen_schemas"]


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


def canonical_type(t: pa.DataType) -> pa.DataType:
    """The type a snapshot stores and hashes a column of type ``t`` as: one type per kind of value,
    so the same rows get the same content id however their writer typed them (pandas writes text
    as ``large_string`` or a dictionary, pyarrow as ``string``; a database export's whole numbers
    are ``int32``, a CSV's ``int64``). Text is ``string``, bytes ``binary``, a dictionary its
    values' type, and every integer type that int64 holds exactly is ``int64`` (``uint64`` stays).
    Floats, times and the rest keep their type: converting them could change a value."""
    if pa.types.is_dictionary(t):
        return canonical_type(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is(t, "is_string_view"):
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is(t, "is_binary_view"):
        return pa.binary()
    if pa.types.is_integer(t) and t != pa.uint64():
        return pa.int64()
    return t


def _is(t: pa.DataType, check: str) -> bool:
    test = getattr(pa.types, check, None)  # (the view types are pyarrow 16's)
    return bool(test is not None and test(t))


def canonical_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with :func:`canonical_type` types (itself when they already are); pandas'
    metadata, which names the types it wrote, is dropped with a cast."""
    fields = [f.with_type(canonical_type(f.type)) for f in schema]
    if all(f.type == g.type for f, g in zip(schema, fields, strict=True)):
        return schema
    meta = {k: v for k, v in (schema.metadata or {}).items() if k != b"pandas"}
    return pa.schema(fields, metadata=meta or None)


def canonical_table(table: pa.Table) -> pa.Table:
    """``table`` cast to :func:`canonical_schema` (itself when its types already are)."""
    schema = table.schema
    canonical = canonical_schema(schema)
    return table if canonical is schema else table.cast(canonical)


def _numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _widest(name: str, types: Sequence[pa.DataType]) -> pa.DataType:
    if any(pa.types.is_floating(t) for t in types):
        return pa.float64()
    if pa.uint64() in types and any(pa.types.is_signed_integer(t) for t in types):
        return pa.float64()  # no integer type holds both
    # integers: the widest (int32 and int64: int64; uint32 and int32: int64)
    return pa.unify_schemas([pa.schema([(name, t)]) for t in types], promote_options="permissive").field(0).type


def widen_schemas(schemas: Sequence[pa.Schema], source: str) -> pa.Schema:
    """The one schema of blocks read from several files whose types were inferred file by file
    (CSV, JSON Lines): a column of whole numbers in one file and decimals in another is float64
    (int64 when every file has whole numbers), as pandas or DuckDB read such a folder; a column
    with no value in one file (Arrow's null type) takes the others' type. Any other difference
    (a number in one file, text in another) is a ValidationError naming the column and both
    types. Columns are matched by name, in the first block's order (another file may list them
    in another order); a column that some blocks lack is a ValidationError naming it."""
    first = schemas[0]
    names = set(first.names)
    for other in schemas[1:]:
        if set(other.names) != names:
            one, two = (", ".join(map(repr, sorted(x))) for x in (names - set(other.names), set(other.names) - names))
            shown = f"{one} in some files, {two} in others" if one and two else f"{one or two} in some files only"
            raise ValidationError(f"data.source: the files of {source!r} do not have the same columns: {shown}")
    fields = []
    for name in first.names:
        types = list(dict.fromkeys(s.field(name).type for s in schemas))
        typed = [t for t in types if not pa.types.is_null(t)] or types
        if len(typed) > 1:
            odd = [t for t in typed if not _numeric(t)]
            if odd:  # name a type that cannot be widened, and another
                other = next(t for t in typed if t != odd[0])
                raise ValidationError(f"data.source: the files of {source!r} do not have the same column types: "
                                      f"column {name!r} is {other} in some and {odd[0]} in others")
            typed = [_widest(name, typed)]
        fields.append(pa.field(name, typed[0]))
    return pa.schema(fields, metadata=first.metadata)


def _cast(block: Any, start: int | None, end: int | None, schema: pa.Schema) -> pa.Table:
    return as_table(block, start, end).select(schema.names).cast(schema)  # (to canonical types too)


_cast_remote: Any = None


def cast_blocks(blocks: Sequence[Block], schema: pa.Schema) -> list[Block]:
    """The blocks cast to ``schema`` (a Ray task each; the new blocks stay in the object store)."""
    import ray

    global _cast_remote
    if _cast_remote is None:
        _cast_remote = ray.remote(num_cpus=1)(_cast)
    task = _cast_remote.options(name="SnapshotWiden", scheduling_strategy="SPREAD")
    return [Block(task.remote(b.ref, b.start, b.end, schema), None, None, b.rows) for b in blocks]

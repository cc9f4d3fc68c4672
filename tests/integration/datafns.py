"""User code for the data tests: callable sources and a batch function. Ray workers import this
module by name, as they would a user's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa


def people_table(n: int = 1000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({
        "id": pa.array(np.arange(n), pa.int64()),
        "age": pa.array(rng.integers(10, 90, n), pa.int64()),
        "income": pa.array(np.round(rng.normal(50.0, 20.0, n), 2)),
        "status": pa.array(rng.choice(["student", "employed", "retired"], n)),
    })


def as_arrow() -> pa.Table:
    return people_table()


def as_pandas() -> pd.DataFrame:
    return people_table().to_pandas()


def as_dataset() -> Any:
    import ray.data

    return ray.data.from_arrow(people_table()).repartition(3)


def not_data() -> Any:
    return {"id": [1, 2]}


def add_decade(batch: pd.DataFrame) -> pd.DataFrame:
    out = batch.copy()
    out["decade"] = (out["age"] // 10) * 10
    return out

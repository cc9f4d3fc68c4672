"""The training split of a snapshot (raymlops.train.prepare): by row index, or by a key column
with ``data.split_key`` so a row keeps its side however the rows are ordered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml

from raymlops import ValidationError, parse_config
from raymlops.train.prepare import holdout_of, split_table

ROOT = Path(__file__).resolve().parents[2]


def _config(**data: Any) -> Any:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["data"].update(data)
    return parse_config(cfg, "test.yaml")


def _table(n: int = 2000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"id": np.arange(n) * 13 + 5, "x": rng.normal(size=n), "target": rng.integers(0, 2, n)})


def test_split_key_keeps_each_row_on_its_side_whatever_the_order() -> None:
    cfg = _config(split_key="id")
    table = _table()
    order = np.random.default_rng(1).permutation(table.num_rows)
    shuffled = table.take(pa.array(order))
    ids = np.asarray(table.column("id"))
    held = set(ids[holdout_of(table, cfg)].tolist())
    held_shuffled = set(np.asarray(shuffled.column("id"))[holdout_of(shuffled, cfg)].tolist())
    assert held == held_shuffled
    assert 0.15 < len(held) / table.num_rows < 0.25  # holdout_fraction 0.2

    # rows added later do not move the old ones
    grown = pa.concat_tables([table, _table(500, seed=2).set_column(0, "id", pa.array(np.arange(500) + 10**6))])
    grown_ids = np.asarray(grown.column("id"))
    assert set(grown_ids[holdout_of(grown, cfg)].tolist()) & set(ids.tolist()) == held


def test_row_index_split_depends_on_order_and_the_seed() -> None:
    table = _table()
    a = holdout_of(table, _config())
    assert np.array_equal(a, holdout_of(table, _config()))  # deterministic
    assert not np.array_equal(a, holdout_of(table, _config().model_copy(update={"seed": 7})))
    Xtr, ytr, Xho, yho = split_table(table, ["x"], _config())
    assert len(ytr) + len(yho) == table.num_rows and len(yho) == int(a.sum())
    assert np.array_equal(Xho[:, 0], np.asarray(table.column("x"))[a])


def test_unknown_split_key_names_the_key() -> None:
    with pytest.raises(ValidationError, match="data.split_key: column 'customer' not found"):
        holdout_of(_table(), _config(split_key="customer"))

"""``monitor check`` on data nobody designed for. One value a CSV reader could not read as a number
(``?``) makes the whole current column text: compared with the reference's numbers as categories, a
five-standard-deviation shift read "no drift"; the text side's numbers are now read as numbers, the
rest as missing, and the type change stays a data-quality finding. Unseen levels of a high-cardinality
column, and current rows in slices the reference lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from scipy import stats

from raymlops.config import MonitorConfig
from raymlops.stats.offline import check_tables


def _csv(path: Path, values: list[str]) -> Path:
    path.write_text("x\n" + "\n".join(values) + "\n", encoding="utf-8")
    return path


def test_a_shift_hidden_by_one_unreadable_value_is_found(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref_x, cur_x = rng.normal(0, 1, 500), rng.normal(5, 1, 499)
    ref = pacsv.read_csv(_csv(tmp_path / "ref.csv", [repr(float(v)) for v in ref_x]))
    cur = pacsv.read_csv(_csv(tmp_path / "cur.csv", [repr(float(v)) for v in cur_x] + ["?"]))
    assert str(cur.schema.field("x").type) == "string"  # what the reader made of it
    out = check_tables(ref, cur, MonitorConfig())
    x = out["features"]["x"]
    assert x["kind"] == "continuous" and x["test"] == "ks" and x["drift"] and out["drift"] is True
    assert x["p_value_upper"] == stats.ks_2samp(ref_x, cur_x).pvalue  # the 499 numbers that are there
    assert any("type double -> string" in f for f in out["anomalies"]["x"]), out["anomalies"]


def test_the_same_numbers_as_text_do_not_drift(tmp_path: Path) -> None:
    values = [str(v) for v in np.random.default_rng(1).integers(0, 1000, 300) / 10]
    ref = pacsv.read_csv(_csv(tmp_path / "ref.csv", values))
    cur = pacsv.read_csv(_csv(tmp_path / "cur.csv", values[:-1] + ["n/a?"]))
    x = check_tables(ref, cur, MonitorConfig())["features"]["x"]
    assert x["kind"] != "categorical" and not x["drift"] and x["p_value"] > 0.9, x


def test_unseen_categories_allow_for_what_the_reference_could_not_hold() -> None:
    """Two samples of one 5,000-level column: about 1.8 % of the second are levels the first never
    drew (Good-Turing: its levels seen once, over its rows); that is no data-quality finding. Levels
    that are really new are."""
    rng = np.random.default_rng(5)
    levels = np.array([f"id{i}" for i in range(5000)], dtype=object)
    ref, cur = rng.choice(levels, 20_000), rng.choice(levels, 20_000)
    out = check_tables({"c": ref}, {"c": cur}, MonitorConfig())
    assert out["features"]["c"]["unseen_rate"] > MonitorConfig().max_unseen_rate  # over the plain limit
    assert "c" not in out.get("anomalies", {}), out.get("anomalies")
    new = cur.copy()
    new[: 2000] = [f"new{i}" for i in range(2000)]  # 10 % of the rows: levels no one had
    found = check_tables({"c": ref}, {"c": new}, MonitorConfig()).get("anomalies", {})
    assert any("categories the reference does not have" in f for f in found.get("c", [])), found


def test_current_rows_in_slices_the_reference_lacks_are_said() -> None:
    """A new segment of traffic (region d) and rows without a region have no reference to be judged
    against: they are in no slice's verdict, and the check says so (they vanished without a word)."""
    rng = np.random.default_rng(6)
    ref = {"x": rng.normal(size=600), "region": np.array(["a", "b", "c"] * 200, dtype=object)}
    region = np.array(["a", "b", "c"] * 166 + ["d"] * 57 + [None] * 45, dtype=object)
    cur = {"x": rng.normal(size=600), "region": region}
    out = check_tables(ref, cur, MonitorConfig(), slice_columns=["region"])
    assert sorted(out["slices"]) == ["region=a", "region=b", "region=c"]
    note = out["slice_note"]
    assert note.startswith("102 of 600 current rows (17.0%) are in slices the reference has no rows of"), note
    assert "region=d (57 rows), region=<missing> (45 rows)" in note
    same = check_tables(ref, {"x": rng.normal(size=600), "region": ref["region"]}, MonitorConfig(),
                        slice_columns=["region"])
    assert same["slice_note"] is None


def test_integers_beyond_two_to_the_53_are_compared_exactly() -> None:
    """As doubles, 2^63 + 1 and 2^63 + 300 are one value: two uint64 samples with no value in common
    read "no drift" (statistic 0, p 1)."""
    import pyarrow as pa

    rng = np.random.default_rng(7)
    ref_off, cur_off = rng.integers(0, 300, 400), rng.integers(300, 600, 400)
    ref = pa.table({"u": pa.array([2**63 + int(v) for v in ref_off], pa.uint64()),
                    "i": pa.array([-(2**62) - int(v) for v in ref_off], pa.int64())})
    cur = pa.table({"u": pa.array([2**63 + int(v) for v in cur_off], pa.uint64()),
                    "i": pa.array([-(2**62) - int(v) for v in cur_off], pa.int64())})
    out = check_tables(ref, cur, MonitorConfig())
    for name in ("u", "i"):
        f = out["features"][name]
        expected = stats.ks_2samp(ref_off, cur_off)  # (the values less their base: the same test)
        assert f["drift"] and f["ks"] == expected.statistic == 1.0, (name, f)
        assert f["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)  # (exact given the ties)
    same = check_tables(ref, ref, MonitorConfig())
    assert not same["drift"] and same["features"]["u"]["p_value"] == 1.0


def test_a_snapshot_profiles_integers_beyond_two_to_the_53() -> None:
    """The profile's safe cast to doubles refused the whole snapshot with Arrow's "Integer value ...
    not in range", naming no column."""
    import pyarrow as pa

    from raymlops.stats.profile import profile_table

    table = pa.table({"u": pa.array([2**63 + i for i in range(50)], pa.uint64()),
                      "i": pa.array([2**62 + i for i in range(50)], pa.int64())})
    profile = profile_table(table)
    assert profile.rows == 50 and set(profile.columns) == {"u", "i"}

"""``raymlops monitor check`` with exact tests: a real shift found, no false alarm on a random
split, integer columns tested on their support, the dataset rule, and a light import path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from raymlops.cli import main


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    return load_digits(as_frame=True).frame


def _check(capsys: pytest.CaptureFixture[str], ref: Path, cur: Path, *extra: str) -> dict:
    assert main(["monitor", "check", "--reference", str(ref), "--current", str(cur), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_digits_0_to_4_vs_5_to_9_is_dataset_drift(digits: pd.DataFrame, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    x = digits.drop(columns="target")
    x[digits.target < 5].to_parquet(tmp_path / "lo.parquet", index=False)
    x[digits.target >= 5].to_parquet(tmp_path / "hi.parquet", index=False)
    out = _check(capsys, tmp_path / "lo.parquet", tmp_path / "hi.parquet")
    feats = out["features"]
    assert out["drift"] is True and out["dataset_rule"] == "any" and out["correction"] == "bonferroni"
    assert {f["kind"] for f in feats.values()} == {"discrete"}  # pixels: integers 0..16
    assert {f["test"] for f in feats.values()} == {"chi2"}
    assert len(out["drifted_features"]) >= 35  # 31 with KS + Bonferroni before; alibi-detect flags 39
    # each statistic is scipy's chi2_contingency on the pixel's observed values; the p-value its
    # permutation law's (under 10,000 rows a side), or, beyond 1e-8, the asymptotic one
    far = 0
    for name in ("pixel_0_4", "pixel_2_2", "pixel_3_4", "pixel_5_5", "pixel_6_3"):
        lo, hi = x[digits.target < 5][name], x[digits.target >= 5][name]
        values = np.union1d(lo, hi)
        scipy = stats.chi2_contingency(np.array([[np.sum(lo == v) for v in values], [np.sum(hi == v) for v in values]]),
                                       correction=False)
        assert feats[name]["statistic"] == pytest.approx(scipy.statistic, rel=1e-9), name
        assert feats[name]["p_value"] <= feats[name]["p_value_upper"], name
        if scipy.pvalue < 1e-8:
            far += 1
            assert feats[name]["p_value"] == pytest.approx(scipy.pvalue, rel=1e-9), name
    assert far >= 2
    # Evidently's rule (a share of uncorrected flags) finds it too; the text output names the rule
    cfg = tmp_path / "share.yaml"
    cfg.write_text("monitor:\n  dataset_rule: share\n")
    assert _check(capsys, tmp_path / "lo.parquet", tmp_path / "hi.parquet", "--config", str(cfg))["drift"] is True
    assert main(["monitor", "check", "--reference", str(tmp_path / "lo.parquet"), "--current",
                 str(tmp_path / "hi.parquet")]) == 0
    assert "dataset drift: YES" in capsys.readouterr().out


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_split_is_no_drift(digits: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    seed: int) -> None:
    x = digits.drop(columns="target")
    half = np.random.default_rng(seed).permutation(len(x)) < len(x) // 2
    x[half].to_csv(tmp_path / "a.csv", index=False)
    x[~half].to_csv(tmp_path / "b.csv", index=False)
    out = _check(capsys, tmp_path / "a.csv", tmp_path / "b.csv")
    assert out["drift"] is False and out["drifted_features"] == []


def test_a_dataframes_stored_index_is_not_a_feature(digits: pd.DataFrame, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``DataFrame.to_parquet`` stores an index that is not a plain range as ``__index_level_0__``.
    Here the rows are shuffled (no drift in any pixel) and the index counts up across the split,
    so read as a column it would drift completely and make the dataset verdict "drift"."""
    x = digits.drop(columns="target")
    rows = x.iloc[np.random.default_rng(0).permutation(len(x))].copy()
    rows.index = pd.Index(np.arange(len(rows), dtype=np.int64) * 2)  # stored as a column (not a RangeIndex)
    half = len(rows) // 2
    rows.iloc[:half].to_parquet(tmp_path / "ref.parquet")
    (tmp_path / "cur").mkdir()
    rows.iloc[half:].to_parquet(tmp_path / "cur" / "part-0.parquet")  # a folder: read whole, not column by column
    import pyarrow.parquet as pq

    assert "__index_level_0__" in pq.read_schema(tmp_path / "ref.parquet").names  # what pandas wrote
    out = _check(capsys, tmp_path / "ref.parquet", tmp_path / "cur")
    assert set(out["features"]) == set(x.columns)
    assert out["drift"] is False and out["drifted_features"] == []
    # a named index is data the user named: it stays a column (and here it drifted)
    rows.rename_axis("row_id").iloc[:half].to_parquet(tmp_path / "named_ref.parquet")
    rows.rename_axis("row_id").iloc[half:].to_parquet(tmp_path / "named_cur.parquet")
    out = _check(capsys, tmp_path / "named_ref.parquet", tmp_path / "named_cur.parquet")
    assert set(out["features"]) == {*x.columns, "row_id"} and out["drifted_features"] == ["row_id"]
    # a CSV keeps no metadata: the index pandas writes is a column without a name, left out and listed
    rows.iloc[:half].to_csv(tmp_path / "ref.csv")
    rows.iloc[half:].to_csv(tmp_path / "cur.csv")
    out = _check(capsys, tmp_path / "ref.csv", tmp_path / "cur.csv")
    assert set(out["features"]) == set(x.columns) and out["drift"] is False
    assert list(out["not_tested"]) == [""] and "pandas writes its index so" in out["not_tested"][""]
    # a blank header elsewhere is not pandas' index: it is only named as such
    (tmp_path / "blank.csv").write_text("x,,z\n1,2,3\n4,5,6\n")
    out = _check(capsys, tmp_path / "blank.csv", tmp_path / "blank.csv")
    assert out["not_tested"] == {"": "a column without a name"}


def test_time_columns_are_not_features_unless_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Last month's rows against this week's: the timestamps (and dates) always differ, the
    features do not. The time columns are listed as not tested, and the verdict is no drift; named
    with --column, a timestamp is tested as a continuous column (its integer time)."""
    from raymlops.config import MonitorConfig
    from raymlops.stats.offline import check_tables

    rng = np.random.default_rng(7)

    def frame(start: str, n: int) -> pd.DataFrame:
        at = pd.Series(pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, 7 * 24 * 3600, n), unit="s"))
        return pd.DataFrame({"at": at, "day": at.dt.date, "x": rng.normal(size=n),
                             "wait": pd.to_timedelta(rng.integers(1, 60, n), unit="m")})

    ref, cur = frame("2026-11-01", 600), frame("2026-12-01", 500)
    ref.to_parquet(tmp_path / "ref.parquet", index=False)
    cur.to_parquet(tmp_path / "cur.parquet", index=False)
    out = _check(capsys, tmp_path / "ref.parquet", tmp_path / "cur.parquet")
    assert set(out["not_tested"]) == {"at", "day"} and set(out["features"]) == {"x", "wait"}
    assert out["features"]["wait"]["kind"] != "categorical"  # a duration is a number of seconds
    assert out["drift"] is False
    named = _check(capsys, tmp_path / "ref.parquet", tmp_path / "cur.parquet", "--column", "at", "--column", "x")
    assert named["not_tested"] == {} and named["features"]["at"]["kind"] == "continuous"
    assert named["features"]["at"]["statistic"] == 1.0 and named["drifted_features"] == ["at"]
    assert main(["monitor", "check", "--reference", str(tmp_path / "ref.parquet"), "--current",
                 str(tmp_path / "cur.parquet")]) == 0
    assert "not tested: a time column" in capsys.readouterr().out
    page = tmp_path / "report.html"
    assert main(["monitor", "report", "--reference", str(tmp_path / "ref.parquet"), "--current",
                 str(tmp_path / "cur.parquet"), "--out", str(page)]) == 0
    text = page.read_text()
    assert 'data-drift="false"' in text and "at: not tested (a time column" in text
    # the same from DataFrames (one time zone-aware) and from numpy datetime64 arrays
    ref["at"], cur["at"] = ref["at"].dt.tz_localize("Europe/Paris"), cur["at"].dt.tz_localize("Europe/Paris")
    cfg = MonitorConfig()
    arrays = ({k: ref[k].to_numpy() for k in ("at", "x")}, {k: cur[k].to_numpy() for k in ("at", "x")})
    for r, c in ((ref, cur), arrays):
        got = check_tables(r, c, cfg)
        assert "at" in got["not_tested"] and "at" not in got["features"] and got["drift"] is False
        named = check_tables(r, c, cfg, columns=["at"])
        assert named["features"]["at"]["kind"] == "continuous" and named["drift"] is True


def test_columns_that_went_missing_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The drift tests test the values that are there: a column that is now all or half empty is
    named by the data-quality checks (the live monitor's limits), in the JSON, the text and the report."""
    rng = np.random.default_rng(3)
    pd.DataFrame({"x": rng.normal(size=500), "s": rng.choice(["a", "b"], 500), "ok": rng.normal(size=500),
                  "n": rng.integers(0, 5, 500)}).to_parquet(tmp_path / "ref.parquet", index=False)
    pd.DataFrame({"x": np.where(rng.random(400) < 0.5, np.nan, rng.normal(size=400)), "s": [None] * 400,
                  "ok": rng.normal(size=400), "n": [str(v) for v in rng.integers(0, 5, 400)]}  # numbers as text
                 ).to_parquet(tmp_path / "cur.parquet", index=False)
    out = _check(capsys, tmp_path / "ref.parquet", tmp_path / "cur.parquet")
    assert set(out["anomalies"]) == {"x", "s", "n"}
    assert out["anomalies"]["n"][0].startswith("type int64 -> ") and "string" in out["anomalies"]["n"][0]
    assert out["anomalies"]["s"] == ["missing values 0.0% -> 100.0% (limit: +5%)"]
    assert out["anomalies"]["x"][0].startswith("missing values 0.0% -> 5") and out["features"]["x"]["drift"] is False
    cfg = tmp_path / "loose.yaml"
    cfg.write_text("monitor:\n  max_missing_rate_increase: 0.6\n")  # the limit is the monitor's setting
    assert set(_check(capsys, tmp_path / "ref.parquet", tmp_path / "cur.parquet", "--config", str(cfg))["anomalies"]) \
        == {"s", "n"}
    assert main(["monitor", "check", "--reference", str(tmp_path / "ref.parquet"), "--current",
                 str(tmp_path / "cur.parquet")]) == 0
    text = capsys.readouterr().out
    assert "data quality: s: missing values 0.0% -> 100.0%" in text and "3 columns anomalous" in text
    page = tmp_path / "report.html"
    assert main(["monitor", "report", "--reference", str(tmp_path / "ref.parquet"), "--current",
                 str(tmp_path / "cur.parquet"), "--out", str(page)]) == 0
    assert "data quality: s: missing values 0.0% -&gt; 100.0%" in page.read_text()


def test_integer_columns_at_large_samples_are_judged_by_the_numeric_distance(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Above small_window_rows a distance decides. Jensen-Shannon at 0.1 on 42 integer values flagged
    two samples of one uniform age (18-59) at 1,500 rows; the Wasserstein distance (as for numbers,
    and as the live monitor and Evidently judge integer columns) does not, and finds a real shift."""
    rng = np.random.default_rng(5)
    ref, same = rng.integers(18, 60, 2000), rng.integers(18, 60, 1500)
    older = rng.integers(23, 65, 1500)
    pd.DataFrame({"age": ref}).to_parquet(tmp_path / "ref.parquet", index=False)
    pd.DataFrame({"age": same.astype(float)}).to_parquet(tmp_path / "same.parquet", index=False)
    pd.DataFrame({"age": older}).to_parquet(tmp_path / "older.parquet", index=False)
    out = _check(capsys, tmp_path / "ref.parquet", tmp_path / "same.parquet")
    age = out["features"]["age"]
    assert age["kind"] == "discrete" and age["test"] == "wasserstein" and age["p_value_test"] == "chi2"
    assert age["wasserstein"] == pytest.approx(stats.wasserstein_distance(ref, same) / ref.std(), rel=1e-9)
    assert age["js"] > 0.1  # what decided before, on no drift
    assert out["drift"] is False
    out = _check(capsys, tmp_path / "ref.parquet", tmp_path / "older.parquet")
    assert out["features"]["age"]["wasserstein"] > 0.3 and out["drifted_features"] == ["age"]


def test_continuous_columns_get_exact_ks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=3_000), rng.normal(0.1, 1.0, 800)
    pd.DataFrame({"x": a, "n": rng.integers(0, 1_000, 3_000)}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"x": b, "n": rng.integers(0, 1_000, 800)}).to_parquet(tmp_path / "b.parquet")
    out = _check(capsys, tmp_path / "a.parquet", tmp_path / "b.parquet")
    x = out["features"]["x"]
    ref = stats.ks_2samp(a, b)
    assert x["kind"] == "continuous" and x["test"] == "ks"
    assert x["statistic"] == pytest.approx(ref.statistic, abs=1e-12)
    assert x["p_value_upper"] == pytest.approx(ref.pvalue, rel=1e-9)  # P(D >= d); p_value is randomised below it
    assert x["p_value"] <= x["p_value_upper"]
    assert out["features"]["n"]["kind"] == "continuous"  # integers, but ~1,000 distinct values: KS


def test_monitor_check_imports_neither_ray_nor_the_pipeline(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        frame = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["u", "v"], 200)})
        frame.to_parquet(tmp_path / f"{name}.parquet")
    code = (
        "import json, sys\n"
        "import raymlops\n"
        "base = set(sys.modules)\n"
        "from raymlops.cli import main\n"
        f"rc = main(['monitor', 'check', '--reference', {str(tmp_path / 'a.parquet')!r}, "
        f"'--current', {str(tmp_path / 'b.parquet')!r}, '--json'])\n"
        "print(json.dumps({'rc': rc, 'base': sorted(base), 'after': sorted(sys.modules)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    after = set(res["after"])
    assert res["rc"] == 0
    assert not {m for m in after if m == "ray" or m.startswith("ray.")}  # neither Ray nor Ray Data
    # the command adds no pipeline module (raymlops/__init__ may still import its public API)
    assert not {m for m in after - set(res["base"]) if m.startswith("raymlops.pipeline")}
    assert "raymlops.stats.offline" in after and "raymlops.stats.exact" in after
    assert "raymlops.monitor" not in after  # nor the monitor package (pandas, the streaming core)
    # Parquet read directly, numeric columns taken as numpy views: no pandas, no pyarrow.dataset (which imports it)
    assert "pandas" not in after and "pyarrow.dataset" not in after
    assert "raymlops.data.tables" in after and "raymlops.stats.ks" in after


def test_parquet_read_a_column_at_a_time_gives_the_whole_table_result(tmp_path: Path) -> None:
    """monitor check reads a Parquet file's columns when it tests them (several row groups, nulls in
    float and integer columns, a string column): the same result as the whole table in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raymlops.data.tables import ParquetColumns, open_table
    from raymlops.stats.offline import check_tables

    rng = np.random.default_rng(5)
    paths = []
    for name, shift in (("a", 0.0), ("b", 0.03)):  # a mild shift: a p-value above the tail
        n = 30_000
        x = rng.normal(shift, 1.0, n)
        k = rng.integers(0, 2_000, n).astype(np.float64)
        table = pa.table({
            "x": pa.array(x, mask=rng.random(n) < 0.05),
            "k": pa.array(k.astype(np.int64), mask=rng.random(n) < 0.02),
            "c": pa.array(rng.choice(["u", "v", "w"], n)),
        })
        pq.write_table(table, tmp_path / f"{name}.parquet", row_group_size=7_000)
        paths.append(tmp_path / f"{name}.parquet")
    lazy = [open_table(str(p))[0] for p in paths]
    assert all(isinstance(t, ParquetColumns) for t in lazy)
    whole = [pq.read_table(p) for p in paths]
    assert check_tables(*lazy) == check_tables(*whole)
    x = whole[0].column("x").to_numpy(zero_copy_only=False)
    y = whole[1].column("x").to_numpy(zero_copy_only=False)
    ref = stats.ks_2samp(x[np.isfinite(x)], y[np.isfinite(y)])
    feats = check_tables(*lazy)["features"]
    assert feats["x"]["ks"] == pytest.approx(ref.statistic, abs=1e-12)
    assert feats["x"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert feats["x"]["missing_rate"] == pytest.approx(np.mean(~np.isfinite(y)))


def test_mappings_of_arrays_give_what_the_same_arrow_tables_give() -> None:
    """check_tables takes plain mappings of numpy arrays (as documented): rows are the columns'
    lengths, not the number of columns, and every statistic equals the Arrow tables' one."""
    import pyarrow as pa

    from raymlops.stats.offline import check_tables

    rng = np.random.default_rng(3)
    ref = {"a": rng.normal(size=5_000), "b": rng.integers(0, 5, 5_000).astype(np.float64)}
    cur = {"a": rng.normal(0.3, 1.0, 3_000), "b": rng.integers(0, 5, 3_000).astype(np.float64)}
    plain = check_tables(ref, cur)
    assert plain["rows"] == {"reference": 5_000, "current": 3_000}
    assert plain["features"]["a"]["rows"] == 3_000 and "a" in plain["drifted_features"]
    assert plain == check_tables(pa.table(ref), pa.table(cur))


def test_large_files_get_ks_2samp_p_values_without_importing_scipy_stats(tmp_path: Path) -> None:
    """Large files: undrifted or clearly drifted columns' p-values are the Pelz-Good series or the
    limiting tail, computed without scipy (raymlops.stats.kolmogorov); a mildly shifted column's is a
    long smirnov sum, computed by the helper process the command forked at its start (which imports
    scipy.special there). So the checking process imports neither scipy.stats nor scipy.special, and
    the p-values are still ks_2samp's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    rows = 200_000
    cols = {"same": (rng.normal(size=rows), rng.normal(size=rows)), "moved": (rng.normal(size=rows),
                                                                              rng.normal(0.02, 1.0, size=rows))}
    paths = [tmp_path / "ref.parquet", tmp_path / "cur.parquet"]
    for k, path in enumerate(paths):
        pq.write_table(pa.table({name: pair[k] for name, pair in cols.items()}), path, use_dictionary=False)
    code = (
        "import json, sys\n"
        "from raymlops.cli import main\n"
        f"rc = main(['monitor', 'check', '--reference', {str(paths[0])!r}, '--current', {str(paths[1])!r}, '--json'])\n"
        "print(json.dumps({'rc': rc, 'scipy_stats': 'scipy.stats' in sys.modules,"
        " 'scipy_special': 'scipy.special' in sys.modules}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    result, after = json.loads(lines[-2]), json.loads(lines[-1])
    en = rows * rows / (2 * rows)
    assert 2.2 <= en * stats.ks_2samp(*cols["moved"]).statistic ** 2 < 370  # a smirnov sum: the helper's
    assert after == {"rc": 0, "scipy_stats": False, "scipy_special": False}
    for name, (a, b) in cols.items():
        theirs = stats.ks_2samp(a, b)
        assert result["features"][name]["ks"] == pytest.approx(theirs.statistic, abs=1e-15)
        assert result["features"][name]["p_value"] == pytest.approx(theirs.pvalue, rel=1e-12), name

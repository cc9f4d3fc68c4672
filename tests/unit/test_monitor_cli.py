"""``raymlops monitor check`` (offline, no Ray) and ``monitor status`` without a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raymlops.cli import main


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)

    def frame(n: int, shift_v: float = 0.0) -> pd.DataFrame:
        seg = rng.choice(["u", "v"], size=n)
        x = rng.normal(size=n) + np.where(seg == "v", shift_v, 0.0)
        return pd.DataFrame({"x": x, "color": rng.choice(["red", "blue"], size=n), "seg": seg})

    out = {"ref": tmp_path / "ref.csv", "same": tmp_path / "same.parquet", "drift": tmp_path / "drift.csv"}
    frame(4_000).to_csv(out["ref"], index=False)
    frame(800).to_parquet(out["same"])
    frame(800, shift_v=1.5).to_csv(out["drift"], index=False)
    return out


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_check_without_drift_exits_0(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "check", "--reference", str(files["ref"]), "--current", str(files["same"]), "--json"]) == 0
    out = _json(capsys)
    assert out["drift"] is False and out["slices"] == {}
    assert set(out["features"]) == {"x", "color", "seg"}
    assert {"test", "statistic", "p_value", "drift"} <= set(out["features"]["x"])
    assert out["features"]["x"]["test"] == "ks" and out["features"]["color"]["test"] == "chi2"


def test_check_finds_drift_in_one_slice_and_exits_0(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    cfg = tmp_path / "mon.yaml"
    cfg.write_text("monitor:\n  correction: bh\n")
    argv = ["monitor", "check", "--reference", str(files["ref"]), "--current", str(files["drift"]),
            "--slice", "seg", "--config", str(cfg), "--json"]
    assert main(argv) == 0
    out = _json(capsys)
    assert out["correction"] == "bh" and out["features"]["x"]["drift"] is True
    assert out["slices"]["seg=v"]["drift"] is True and out["slices"]["seg=u"]["drift"] is False
    assert main(argv[:-1]) == 0
    assert "seg=v" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["missing-file", "missing-column", "bad-config"])
def test_check_bad_input_exits_2(files: dict[str, Path], tmp_path: Path, problem: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["monitor", "check", "--reference", str(files["ref"]), "--current", str(files["same"])]
    if problem == "missing-file":
        argv[5] = str(tmp_path / "nope.csv")
    elif problem == "missing-column":
        argv += ["--slice", "region"]
    else:
        bad = tmp_path / "bad.yaml"
        bad.write_text("monitor:\n  alpha: 2\n")
        argv += ["--config", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_status_needs_a_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "status"]) == 2
    assert "RAY_ADDRESS" in capsys.readouterr().err


def test_status_prints_the_realised_quality_beside_its_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    from raymlops.cli.monitor_cmd import _print_realised

    _print_realised({"baseline": {"labels": 500, "mae": 40.5}, "current": {"labels": 140, "mae": 41.81}})
    _print_realised({"baseline": {"labels": 500, "accuracy": 0.95, "auc": 0.99}, "current": {"labels": 60,
                     "accuracy": 0.9, "auc": None}})
    _print_realised({"baseline": None, "current": {"labels": 0}})  # nothing labelled since the baseline: no line
    assert capsys.readouterr().out.splitlines() == [
        "  realised mae 41.81 (baseline 40.5) in the current label window (140 labels)",
        "  realised accuracy 0.9 (baseline 0.95) in the current label window (60 labels)",
    ]


def test_status_prints_how_the_challenger_compares_with_the_champion(capsys: pytest.CaptureFixture[str]) -> None:
    """The differential part of a monitor's status (DifferentialTracker.status, as a shadow deployment's
    monitor gave it) was only in --json: the text showed no challenger at all."""
    from raymlops.cli.monitor_cmd import _print_challengers

    _print_challengers({
        "champion": "churn:v2", "roles": {"churn:v1": {"role": "shadow", "epoch": 5},
                                          "churn:v2": {"role": "champion", "epoch": 5}},
        "pairs": 21, "agreement": 1.0,
        "last_window": {"champion": "churn:v2", "pairs": 29, "agreement": 0.896551724137931,
                        "challengers": {"churn:v1": {"prediction_distance": 0.06709383479300213, "rows": 119}}}})
    _print_challengers({"champion": "m:v1", "roles": {"m:v2": {"role": "canary", "epoch": 2}}, "pairs": 0,
                        "agreement": None, "last_window": None})
    _print_challengers({"champion": "m:v1", "roles": {"m:v1": {"role": "champion", "epoch": 1}}})  # none: no line
    assert capsys.readouterr().out.splitlines() == [
        "  shadow churn:v1 vs champion churn:v2: this window: agreement 100.0% over 21 answers both gave; "
        "last window: agreement 89.7% over 29; prediction distance 0.06709 (119 rows)",
        "  canary m:v2 vs champion m:v1: this window: no answers both gave yet",
    ]


def test_check_reads_json_lines_and_json_arrays_as_data_source_does(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .jsonl / .json file is JSON (it was read as CSV: each field of the first object a column,
    and every column 'categorical', with exit 0)."""
    drift = pd.read_csv(files["drift"])
    drift.to_json(tmp_path / "drift.jsonl", orient="records", lines=True)
    drift.to_json(tmp_path / "drift.json", orient="records")  # one JSON array
    assert main(["monitor", "check", "--reference", str(files["ref"]), "--current", str(files["drift"]),
                 "--slice", "seg", "--json"]) == 0
    from_csv = _json(capsys)
    for name in ("drift.jsonl", "drift.json"):
        assert main(["monitor", "check", "--reference", str(files["ref"]), "--current", str(tmp_path / name),
                     "--slice", "seg", "--json"]) == 0
        result = _json(capsys)
        assert result["current"] == f"json {tmp_path / name}" and list(result["features"]) == ["x", "color"]
        assert result["features"]["x"]["kind"] == "continuous"
        assert result["features"]["x"]["statistic"] == pytest.approx(from_csv["features"]["x"]["statistic"])
        assert result["slices"]["seg=v"]["drift"] and result["drift"] == from_csv["drift"]
    (tmp_path / "bad.jsonl").write_text('{"x": 1\n', encoding="utf-8")
    assert main(["monitor", "check", "--reference", str(files["ref"]), "--current", str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl: cannot read it as a table" in capsys.readouterr().err


def test_a_semicolon_csv_is_named_as_such(files: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    pd.read_csv(files["drift"]).to_csv(tmp_path / "semi.csv", index=False, sep=";")
    assert main(["monitor", "check", "--reference", str(files["ref"]), "--current", str(tmp_path / "semi.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the current data (") and "separated by ';', not commas" in err


def test_two_semicolon_csvs_are_not_compared_as_one_text_column(files: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Both files read as one column ('x;seg'): each row was one category, and a 1 sd shift went
    unseen ("dataset drift: no", exit 0)."""
    for name in ("ref", "drift"):
        pd.read_csv(files[name]).to_csv(tmp_path / f"{name}.csv", index=False, sep=";")
    assert main(["monitor", "check", "--reference", str(tmp_path / "ref.csv"), "--current",
                 str(tmp_path / "drift.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the reference data (") and "separated by ';', not commas" in err


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_column_name_used_twice_is_exit_2(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / f"dup.{kind}"
    if kind == "csv":
        path.write_text("x,x\n1,2\n3,4\n")
    else:
        pq.write_table(pa.table([pa.array([1.0, 2.0]), pa.array([3.0, 4.0])], names=["x", "x"]), path)
    for verb in (["check"], ["report", "--out", str(tmp_path / "r.html")]):
        assert main(["monitor", *verb, "--reference", str(path), "--current", str(path)]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {path}: column 'x' appears 2 times: give each column its own name\n", err


def test_nested_columns_are_listed_as_not_tested(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A list or struct column (a Parquet file's tags, a record) is not a feature: listed under
    not_tested (it was a traceback from Arrow's value_counts); named with --column, exit 2."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    n = 300
    table = pa.table({"x": rng.normal(size=n), "tags": pa.array([["a", "b"][: i % 3] for i in range(n)]),
                      "meta": pa.array([{"k": i} for i in range(n)])})
    pq.write_table(table, tmp_path / "a.parquet")
    assert main(["monitor", "check", "--reference", str(tmp_path / "a.parquet"), "--current",
                 str(tmp_path / "a.parquet"), "--json"]) == 0
    result = _json(capsys)
    assert list(result["features"]) == ["x"] and set(result["not_tested"]) == {"tags", "meta"}
    assert "nested column (list<" in result["not_tested"]["tags"]
    assert main(["monitor", "check", "--reference", str(tmp_path / "a.parquet"), "--current",
                 str(tmp_path / "a.parquet"), "--column", "meta"]) == 2
    assert "column 'meta' is a nested column (struct<" in capsys.readouterr().err


def test_decimals_dates_and_lists_are_read_by_their_arrow_types(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A decimal column (a database export's prices) is a number: KS, as its float64 twin (it was a
    category: 'no drift' at p 0.36 where KS gives 2e-9). A date named with --column is continuous
    (it was 'discrete chi2'), and the report plots it on the same integer time (it crashed); a list
    column is not tested by the report as by the check (it crashed in value_counts)."""
    import datetime as dt
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    paths = []
    for k, (n, shift, start) in enumerate(((400, 0.0, dt.date(2026, 1, 1)), (300, 0.5, dt.date(2026, 1, 20)))):
        x = np.round(rng.normal(50 + shift * 10, 10, n), 2)
        days = [start + dt.timedelta(days=int(d)) for d in rng.integers(0, 30, n)]
        table = pa.table({"price": pa.array([Decimal(f"{v:.2f}") for v in x], pa.decimal128(10, 2)), "twin": x,
                          "day": pa.array(days, pa.date32()), "tags": pa.array([[1, 2][: i % 3] for i in range(n)])})
        paths.append(tmp_path / f"{k}.parquet")
        pq.write_table(table, paths[-1])
    ref, cur = (str(p) for p in paths)
    assert main(["monitor", "check", "--reference", ref, "--current", cur, "--json"]) == 0
    out = _json(capsys)
    price, twin = out["features"]["price"], out["features"]["twin"]
    assert price["kind"] == "continuous" and price["test"] == "ks"
    # the same test (U of the randomised p-value hashes the values as read: decimals are not doubles)
    assert (price["statistic"], price["p_value_upper"]) == (twin["statistic"], twin["p_value_upper"]) and price["drift"]
    assert set(out["not_tested"]) == {"day", "tags"}
    assert main(["monitor", "check", "--reference", ref, "--current", cur, "--column", "day", "--json"]) == 0
    day = _json(capsys)["features"]["day"]
    assert day["kind"] == "continuous" and day["test"] == "ks" and day["drift"]
    for extra in ([], ["--column", "day"]):
        page = tmp_path / "r.html"
        assert main(["monitor", "report", "--reference", ref, "--current", cur, "--out", str(page), "--json",
                     *extra]) == 0
        report = _json(capsys)
        assert report["drift"] is True
        assert report["drifted_features"] == (["day"] if extra else ["price", "twin"])


def test_a_reader_that_leaves_gets_no_traceback(files: dict[str, Path]) -> None:
    """`raymlops monitor check ... | head -1`: the reader closes the pipe; the command ends quietly
    with the shell's status for SIGPIPE (it printed a BrokenPipeError traceback)."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes
    try:
        proc = subprocess.run([sys.executable, "-m", "raymlops.cli", "monitor", "check", "--reference",
                               str(files["ref"]), "--current", str(files["drift"])], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_a_column_empty_in_one_file_is_missing_numbers_not_categories(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "blank.csv").write_text("x,y\n1,\n2,\n3,\n4,\n")
    (tmp_path / "full.csv").write_text("x,y\n1,5\n2,6\n3,7\n4,9\n")
    assert main(["monitor", "check", "--reference", str(tmp_path / "blank.csv"), "--current",
                 str(tmp_path / "full.csv"), "--json"]) == 0
    out = _json(capsys)
    # nothing to test on one side: not tested (no made-up p-value of 1), its quality still reported
    assert "y" not in out["features"] and out["not_tested"]["y"].startswith("no values in the reference")
    assert out["anomalies"]["y"] == ["the reference has no values in this column"]
    assert main(["monitor", "check", "--reference", str(tmp_path / "full.csv"), "--current",
                 str(tmp_path / "blank.csv"), "--json"]) == 0
    assert _json(capsys)["anomalies"]["y"] == ["missing values 0.0% -> 100.0% (limit: +5%)"]
    (tmp_path / "other.csv").write_text("x,y\n1,11\n2,12\n3,13\n4,14\n")  # integers never seen: not "categories"
    assert main(["monitor", "check", "--reference", str(tmp_path / "full.csv"), "--current",
                 str(tmp_path / "other.csv"), "--json"]) == 0
    assert _json(capsys)["anomalies"]["y"] == ["100.0% of the values never occur in the reference (limit: 1%)"]


def test_a_current_file_below_min_rows_says_not_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """29 rows shifted by 5 sd printed 'dataset drift: no' beside a p-value of 1e-54, with no word of
    why (monitor.min_rows); the report said 'no dataset drift' too."""
    rng = np.random.default_rng(3)
    pd.DataFrame({"v": rng.normal(size=1000)}).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"v": rng.normal(5.0, 1.0, 29)}).to_csv(tmp_path / "cur.csv", index=False)
    args = ["monitor", "check", "--reference", str(tmp_path / "ref.csv"), "--current", str(tmp_path / "cur.csv")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "dataset drift: not judged (the current data has 29 rows, fewer than monitor.min_rows (30)" in out
    assert main(["monitor", "report", "--reference", str(tmp_path / "ref.csv"), "--current",
                 str(tmp_path / "cur.csv"), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "not judged" in page and "no dataset drift" not in page


def test_a_column_only_in_the_current_file_is_named_not_tested(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"a": np.linspace(0, 1, 50)}).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"a": np.linspace(0, 1, 50), "extra": 1}).to_csv(tmp_path / "cur.csv", index=False)
    assert main(["monitor", "check", "--reference", str(tmp_path / "ref.csv"), "--current",
                 str(tmp_path / "cur.csv"), "--json"]) == 0
    out = _json(capsys)
    assert list(out["features"]) == ["a"] and out["not_tested"] == {
        "extra": "only in the current data: nothing to compare it with"}

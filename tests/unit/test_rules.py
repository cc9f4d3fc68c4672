"""Schema and business-rule checks on Arrow batches (raymlops.data.rules), the key-based split,
and what source handling keeps secret (raymlops.data.sources): all without Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from raymlops.config import parse_config
from raymlops.data.rules import REASON_COLUMN, BatchOutcome, ValidationReport, compile_checks, evaluate, split_batch
from raymlops.data.rules import type_problems as types
from raymlops.data.sources import redact_uri, resolve_options, source_filesystem
from raymlops.data.split import holdout_mask, key_holdout_mask, split_mask
from raymlops.exceptions import ConfigError, ValidationError

ROOT = Path(__file__).resolve().parents[2]
RULES = ["age >= 18", ("income_or_student", "income > 0 or status == 'student'")]
SCHEMA = {"age": {"nullable": False, "max": 120}, "status": {"domain": ["student", "employed"]}}


@pytest.fixture()
def people() -> pa.Table:
    return pa.table({
        "age": pa.array([17, 30, None, 45, 130, 22], pa.int64()),
        "income": pa.array([0.0, 10.0, 5.0, -1.0, 3.0, None]),
        "status": pa.array(["student", "employed", "employed", "retired", None, "student"]),
    })


def test_checks_count_exactly_and_keep_the_first_offending_rows(people: pa.Table) -> None:
    checks = compile_checks(RULES, SCHEMA)
    assert [c.name for c in checks] == ["schema: age is not null", "schema: age <= 120", "schema: status in domain",
                                        "age >= 18", "income_or_student"]
    out = evaluate(people, checks)
    assert out.rows == 6
    assert out.violations == {"schema: age is not null": 1, "schema: age <= 120": 1, "schema: status in domain": 1,
                              "age >= 18": 2, "income_or_student": 1}  # row 5: null income, but a student
    assert out.bad == 4  # rows 0, 2, 3, 4; rows 2 and 3 break two checks each, counted once
    assert [e["row"] for e in out.examples["age >= 18"]] == [0, 2]
    assert out.examples["income_or_student"][0] == {"row": 3, "values": {"income": -1.0, "status": "retired"}}


def test_outcomes_merge_in_row_order(people: pa.Table) -> None:
    checks = compile_checks(RULES, SCHEMA)
    merged = evaluate(people.slice(0, 3), checks).merge(evaluate(people.slice(3), checks))
    whole = evaluate(people, checks)
    assert (merged.rows, merged.bad, merged.violations) == (whole.rows, whole.bad, whole.violations)
    assert merged.examples == whole.examples  # row numbers shifted by the rows before
    assert BatchOutcome.from_json(whole.to_json()) == whole


def test_split_keeps_good_rows_and_names_the_reasons(people: pa.Table) -> None:
    checks = compile_checks(RULES, SCHEMA)
    good = split_batch(people, checks, keep=True)
    bad = split_batch(people, checks, keep=False)
    assert good.num_rows + bad.num_rows == people.num_rows
    assert good.column("age").to_pylist() == [30, 22]
    reasons = dict(zip(bad.column("age").to_pylist(), bad.column(REASON_COLUMN).to_pylist(), strict=True))
    assert reasons[17] == "age >= 18"
    assert reasons[45] == "schema: status in domain; income_or_student"
    assert reasons[None] == "schema: age is not null; age >= 18"
    empty = split_batch(people.slice(0, 0), checks, keep=False)
    assert empty.num_rows == 0 and REASON_COLUMN in empty.column_names


def test_report_message_and_policy_counts(people: pa.Table) -> None:
    checks = compile_checks(RULES)
    out = evaluate(people, checks)
    report = ValidationReport("quarantine", checks, out)
    assert report.rows_in == report.rows_kept + report.rows_quarantined == 6
    assert report.rows_quarantined == 3
    msg = ValidationReport("fail", checks, out).message()
    assert msg.startswith("3 of 6 rows break 2 of 2 check(s): 'age >= 18': 2 rows (row 0: age=17; row 2: age=null)")
    assert ValidationReport("fail", checks, out).rows_kept == 6 and not report.passed


def test_type_and_column_problems(people: pa.Table) -> None:
    checks = compile_checks(["nope > 1", "status == student"])
    problems = types(people.schema, {"age": {"type": "string"}, "income": {"type": "float64"}, "zip": {}}, checks)
    assert problems == [
        "data.schema.age.type: expected string, found int64",
        "data.schema: column 'zip' not found (columns: age, income, status)",
        "'nope > 1': column 'nope' not found (columns: age, income, status); to compare with the text nope, "
        "quote it: 'nope'",
        # an unquoted text value reads as a column: say how to write the text
        "'status == student': column 'student' not found (columns: age, income, status); to compare with the "
        "text student, quote it: 'student'",
    ]
    with pytest.raises(ValidationError, match="two checks are named"):
        compile_checks(["a > 1", ("a > 1", "a > 2")])


def test_config_rules_and_schema_compile() -> None:
    data = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    data["data"] |= {"rules": ["mean_radius > 0", {"name": "area", "expr": "mean_area < 3000"}],
                     "schema": {"target": {"domain": [0, 1], "nullable": False}}}
    cfg = parse_config(data, "q.yaml")
    checks = compile_checks(cfg.data.rules, cfg.data.expected_schema)
    assert [c.name for c in checks] == ["schema: target is not null", "schema: target in domain", "mean_radius > 0",
                                        "area"]


# -- split ---------------------------------------------------------------------------------------


def test_key_split_is_deterministic_and_order_free() -> None:
    keys = np.arange(50_000)
    mask = key_holdout_mask(keys, 0.2, seed=3)
    assert abs(mask.mean() - 0.2) < 0.01
    perm = np.random.default_rng(0).permutation(keys.size)
    assert np.array_equal(key_holdout_mask(keys[perm], 0.2, 3), mask[perm])  # a row keeps its side
    assert not np.array_equal(key_holdout_mask(keys, 0.2, 4), mask)  # the seed matters
    # a null elsewhere in an integer column does not move the other keys
    with_null = pa.array([*range(100), None], pa.int64())
    assert np.array_equal(key_holdout_mask(with_null, 0.5, 1)[:100], key_holdout_mask(pa.array(range(100)), 0.5, 1))
    t = pa.table({"id": [f"u{i}" for i in range(1000)]})
    assert np.array_equal(split_mask(t, 0.3, 1, "id"), key_holdout_mask(t.column("id"), 0.3, 1))
    assert np.array_equal(split_mask(t, 0.3, 1), holdout_mask(1000, 0.3, 1))
    with pytest.raises(ValidationError, match="split_key: column 'nope' not found"):
        split_mask(t, 0.3, 1, "nope")


# -- sources: secrets ------------------------------------------------------------------------------


def test_redact_uri_drops_credentials() -> None:
    assert redact_uri("s3://AKIA:s3cr3t@bucket/x.csv?endpoint_override=h:9&secret_key=abc&region=eu") == \
        "s3://bucket/x.csv?endpoint_override=h%3A9&region=eu"
    assert redact_uri("/data/x.csv") == "/data/x.csv" and redact_uri("callable:m:f") == "callable:m:f"


def test_options_read_the_environment_and_never_show_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SECRET", "very-secret-value")
    assert resolve_options({"secret_key": "${MY_SECRET}", "region": "eu"}) == \
        {"secret_key": "very-secret-value", "region": "eu"}
    with pytest.raises(ConfigError, match="environment variable NOT_SET_ANYWHERE is not set"):
        resolve_options({"secret_key": "${NOT_SET_ANYWHERE}"})
    with pytest.raises(ConfigError) as info:
        source_filesystem("s3://bucket/x.csv", {"secret_key": "${MY_SECRET}", "no_such_option": 1})
    assert "no_such_option" in str(info.value) and "very-secret-value" not in str(info.value)
    with pytest.raises(ConfigError, match="not the local path"):
        source_filesystem("/tmp/x.csv", {"region": "eu"})

    data = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    data["data"]["options"] = {"endpoint_override": "127.0.0.1:9000", "access_key": "AKIAEXAMPLE",
                               "secret_key": "literal-secret-in-config"}
    cfg = parse_config(data, "q.yaml")
    dumped = str(cfg.model_dump(mode="json")) + cfg.model_dump_json() + repr(cfg) + str(cfg)
    assert "literal-secret-in-config" not in dumped and "AKIAEXAMPLE" not in dumped
    assert "127.0.0.1:9000" in dumped  # not a secret: kept for the record
    assert resolve_options(cfg.data.options)["secret_key"] == "literal-secret-in-config"


def test_pure_data_modules_do_not_import_ray() -> None:
    import subprocess
    import sys

    code = ("import sys, raymlops.stats.profile, raymlops.stats.check, raymlops.expr, raymlops.data.rules, "
            "raymlops.data.split, raymlops.data.schema; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"

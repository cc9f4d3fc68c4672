"""Property-based fuzzing of pipeline configs (raymlops.config.load_config) and ``raymlops run``
with bad YAML: every rejection is a ConfigError that names the file and the key path, and the
CLI prints one line and exits 2 (never a traceback)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raymlops.cli import main
from raymlops.config import PipelineConfig, load_config
from raymlops.exceptions import ConfigError
from tests.reliability.faults import ROOT

BASE = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                 st.sampled_from(["1e309", "../../etc", "${HOME}", "sklearn://nope", "-1", "0", "yes"]))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    cfg = copy.deepcopy(BASE)
    path = draw(st.sampled_from(PATHS))
    parent: Any = cfg
    for part in path[:-1]:
        parent = parent[part]
    how = draw(st.sampled_from(["replace", "delete", "extra"]))
    last = path[-1]
    if how == "replace":
        parent[last] = draw(junk)
    elif how == "delete" and isinstance(parent, dict):
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(junk)
    return cfg, str(last)


def _load(tmp_path: Path, text: str | bytes) -> PipelineConfig | ConfigError:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        return load_config(path)
    except ConfigError as err:
        message = str(err)
        assert message.startswith(f"{path}: "), message  # names the file ...
        assert "\n" not in message.strip() or "YAML" in message
        return err


@FUZZ
@given(mutated())
def test_mutated_quickstart_is_loaded_or_rejected_by_key(tmp_path: Path, case: tuple[dict[str, Any], str]) -> None:
    cfg, key = case
    out = _load(tmp_path, yaml.safe_dump(cfg, allow_unicode=True))
    if isinstance(out, ConfigError):
        text = str(out).split(": ", 1)[1]
        assert "expected" in text or "YAML" in text or "not" in text, text  # ... and says what was expected


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_text_is_a_config_error(tmp_path: Path, text: str | bytes) -> None:
    if isinstance(text, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        text = text.encode("utf-8", "surrogatepass")
    _load(tmp_path, text)


BAD = {
    "not_yaml.yaml": ("name: [\n", "not valid YAML at line"),
    "latin1.yaml": ("name: caf\xe9\n".encode("latin-1"), "not valid YAML"),
    "dup.yaml": ("name: a\nname: b\n", "duplicate key 'name'"),
    "list.yaml": ("- 1\n- 2\n", "(top level): expected a mapping"),
    "huge.yaml": (yaml.safe_dump({**BASE, "data": {**BASE["data"], "holdout_fraction": 1e309}}), "holdout_fraction"),
    "typo.yaml": (yaml.safe_dump({**BASE, "trian": {}}), "trian: unknown key"),
    "string_number.yaml": (yaml.safe_dump({**BASE, "seed": "42"}), "seed"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_cli_run_with_bad_yaml_prints_one_line_and_exits_2(tmp_path: Path, name: str,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    """In process (``raymlops.cli.main``, what the ``raymlops`` command calls), output captured at
    the file descriptors; the subprocess smoke test of ``raymlops run`` is in test_cli_run.py."""
    text, needle = BAD[name]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = main(["run", str(path), "--home", str(tmp_path / "h")])
    out, err = capfd.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {path}: ") and needle in lines[0], lines[0]
    assert not (tmp_path / "h").exists()  # refused before anything is stored

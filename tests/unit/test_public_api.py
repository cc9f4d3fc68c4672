"""The top-level API: every name in ``raymlops.__all__`` resolves, and importing the package is
cheap (the pipeline, Ray and the config models load on first use, so CLI commands such as
``raymlops monitor check`` start fast)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import raymlops


def test_every_public_name_resolves() -> None:
    for name in raymlops.__all__:
        assert getattr(raymlops, name) is not None, name
    assert set(raymlops.__all__) <= set(dir(raymlops))


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        raymlops.no_such_thing  # noqa: B018


def test_importing_the_package_loads_neither_ray_nor_the_pipeline() -> None:
    code = ("import sys, raymlops; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'raymlops.pipeline'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from raymlops import run_pipeline
    from raymlops.pipeline.runner import run_pipeline as direct

    assert run_pipeline is direct

"""The pure half of raymlops.serve imports no Ray (ARCHITECTURE: Ray at the edges)."""

from __future__ import annotations

import subprocess
import sys


def test_pure_serving_modules_do_not_import_ray() -> None:
    code = ("import sys\n"
            "import raymlops.serve.request, raymlops.serve.routing, raymlops.serve.metrics\n"
            "import raymlops.serve.handoff, raymlops.serve.settings, raymlops.serve.throughput\n"
            "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

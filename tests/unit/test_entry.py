"""The ``raymlops`` command's entry point: Ctrl-C while the command line loads is an interruption
(one line, exit 130), not a traceback (it was, in a command's first 0.15 s)."""

from __future__ import annotations

import subprocess
import sys

#: a fresh interpreter where Ctrl-C arrives while ``raymlops.cli`` is being imported
INTERRUPTED_IMPORT = """
import sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "raymlops.cli":
            raise KeyboardInterrupt
        return None
sys.meta_path.insert(0, CtrlC())
from raymlops.__main__ import main
sys.exit(main())
"""


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130() -> None:
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and proc.stderr == "interrupted\n", proc.stderr


def test_python_dash_m_raymlops_runs_the_command_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "raymlops", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("raymlops"), (proc.stdout, proc.stderr)

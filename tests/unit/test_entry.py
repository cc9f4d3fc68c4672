"""The ``raymlops`` command's entry point: Ctrl-C while the command line loads is an interruption
(one line, exit 130), not a traceback (it was, in a command's first 0.15 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]

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


def test_the_console_script_is_the_guarded_entry_point() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["raymlops"] == "raymlops.__main__:main"


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130() -> None:
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and proc.stderr == "interrupted\n", proc.stderr


def test_python_dash_m_raymlops_runs_the_command_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "raymlops", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("raymlops"), (proc.stdout, proc.stderr)

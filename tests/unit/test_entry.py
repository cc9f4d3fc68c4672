"""The ``raymlops`` command's entry point: Ctrl-C while the command line loads is an interruption
(one line, exit 130), not a traceback (it was, in a command's first 0.15 s)."""

from __future__ import annotations

import os
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


def test_a_user_step_module_in_the_working_directory_imports_from_the_console_script(tmp_path) -> None:
    """The README's `call: mypkg.checks:no_leakage` next to the config failed from the `raymlops`
    command ("No module named 'mypkg'"): a console script has its own folder on the path, not the
    working directory (`python -m` and Ray's workers have it)."""
    import shutil
    from pathlib import Path

    import yaml

    script = Path(sys.executable).with_name("raymlops")
    if not script.exists():
        script = Path(shutil.which("raymlops") or "raymlops")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "checks.py").write_text("def no_leakage(view, max_corr=0.95):\n    return {}\n")
    root = Path(__file__).resolve().parents[2]
    cfg = yaml.safe_load((root / "configs" / "quickstart.yaml").read_text(encoding="utf-8"))
    # an argument the function does not take: found once the module imported, before any step (exit 2)
    cfg["steps"] = [{"after": "validate", "name": "check", "call": "mypkg.checks:no_leakage", "with": {"nope": 1}}]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([str(script), "run", "p.yaml", "--home", str(tmp_path / "home")], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env={k: v for k, v in os.environ.items()
                                                                    if k != "PYTHONPATH"})
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "nope" in err and "cannot import" not in err, proc.stderr

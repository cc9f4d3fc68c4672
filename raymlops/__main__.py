"""The ``raymlops`` command's entry point (and ``python -m raymlops``).

The command line's own imports run inside the Ctrl-C handler here, so an interruption in the
first moments (while argparse and the command modules load) ends as any other: ``interrupted``,
exit 130, no traceback. Only the interpreter's start and ``import raymlops`` come before it.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from raymlops.cli import main as cli_main  # inside the handler: Ctrl-C while it loads is an interruption

        return cli_main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

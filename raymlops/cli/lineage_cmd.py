"""``raymlops lineage REF``: code → data → model → deployments."""

from raymlops.cli.models_cmd import register_lineage as register
from raymlops.cli.models_cmd import run_lineage as run

__all__ = ["register", "run"]

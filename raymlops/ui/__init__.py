"""A read-only web UI over a raymlops home folder and, when ``RAY_ADDRESS`` names one, the live
cluster: runs, snapshots, models, deployments and monitors, and the audit log
(``raymlops ui``; :func:`create_app` builds the FastAPI app). Only :mod:`raymlops.cli` imports it."""

from raymlops.ui.app import LOOPBACK_HOSTS, create_app

__all__ = ["LOOPBACK_HOSTS", "create_app"]

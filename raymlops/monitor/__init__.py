"""Production monitoring: the pure streaming core (reference, state, verdicts, windows, checks).

Nothing here imports Ray; the monitor actor (:mod:`raymlops.monitor.actor`) is a thin adapter
around :class:`Monitor`.
"""

from raymlops.monitor.alerts import Alert, AlertBook
from raymlops.monitor.monitor import Monitor, WindowReport
from raymlops.monitor.reference import (
    CATEGORICAL,
    NUMERIC,
    OTHER_SLICE,
    PREDICTION,
    ColumnReference,
    MonitorReference,
    build_reference,
)
from raymlops.monitor.state import StreamState
from raymlops.monitor.verdicts import ColumnVerdict, SliceVerdict, WindowVerdict, evaluate

__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "OTHER_SLICE",
    "PREDICTION",
    "Alert",
    "AlertBook",
    "ColumnReference",
    "ColumnVerdict",
    "Monitor",
    "MonitorReference",
    "SliceVerdict",
    "StreamState",
    "WindowReport",
    "WindowVerdict",
    "build_reference",
    "evaluate",
]

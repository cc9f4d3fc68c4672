"""Production monitoring: the pure streaming core (reference, state, verdicts, windows, checks).

Nothing here imports Ray; the monitor actor (:mod:`raymlops.monitor.actor`) is a thin adapter
around :class:`Monitor`. The older numeric-only API (:class:`Reference`, :class:`MonitorState`,
:func:`summarize`) stays for existing callers.
"""

from raymlops.monitor.alerts import Alert, AlertBook
from raymlops.monitor.core import (
    CHI2_MIN_ROWS,
    REFERENCE_SAMPLE_SIZE,
    DriftSummary,
    FeatureDrift,
    FeatureReference,
    Moments,
    MonitorState,
    Reference,
    summarize,
)
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
    "CHI2_MIN_ROWS",
    "NUMERIC",
    "OTHER_SLICE",
    "PREDICTION",
    "REFERENCE_SAMPLE_SIZE",
    "Alert",
    "AlertBook",
    "ColumnReference",
    "ColumnVerdict",
    "DriftSummary",
    "FeatureDrift",
    "FeatureReference",
    "Moments",
    "Monitor",
    "MonitorReference",
    "MonitorState",
    "Reference",
    "SliceVerdict",
    "StreamState",
    "WindowReport",
    "WindowVerdict",
    "build_reference",
    "evaluate",
    "summarize",
]

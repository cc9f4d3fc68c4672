"""Production monitoring: the pure streaming core (reference, state, drift verdicts).

Nothing here imports Ray; the monitor actor is a thin adapter around :class:`MonitorState`.
"""

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

__all__ = [
    "CHI2_MIN_ROWS",
    "REFERENCE_SAMPLE_SIZE",
    "DriftSummary",
    "FeatureDrift",
    "FeatureReference",
    "Moments",
    "MonitorState",
    "Reference",
    "summarize",
]

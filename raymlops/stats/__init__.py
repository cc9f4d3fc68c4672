"""Pure numpy/scipy statistics: binning, drift tests and multiple-testing correction.

Nothing here imports Ray; every function takes arrays and returns plain values.
"""

from raymlops.stats.bins import as_float_array, bin_counts, quantile_edges
from raymlops.stats.drift import (
    CORRECTIONS,
    chi2_test,
    correct,
    jensen_shannon,
    psi,
)

__all__ = [
    "CORRECTIONS",
    "as_float_array",
    "bin_counts",
    "chi2_test",
    "correct",
    "jensen_shannon",
    "psi",
    "quantile_edges",
]

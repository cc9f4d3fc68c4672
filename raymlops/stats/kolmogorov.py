"""Large-sample two-sided Kolmogorov-Smirnov p-values without importing scipy.

``scipy.stats.kstwo.sf(d, n)``, the p-value :func:`scipy.stats.ks_2samp` gives for large samples,
lives in :mod:`scipy.stats`, which takes 0.5-0.6 s to import: longer than ``monitor check`` spends
testing a million-row column. For the samples it sees (``n`` in the thousands or millions, ``d``
of an undrifted column: ``n * d**2 < 2.2``) scipy computes it by the Pelz-Good approximation, a
short series. :func:`kstwo_sf` is scipy's own dispatch and Pelz-Good routine
(``scipy/stats/_ksstats.py``, scipy 1.17; BSD-3-Clause, Copyright (c) 2001-2002 Enthought, Inc.,
2003-2024 SciPy Developers), line for line on the same numpy types, so its values are
``kstwo.sf``'s bit for bit (the tests hold them to it on a grid). The branches it does not carry
(the Durbin matrix and Pomeranz recursions of smaller samples, ``2 * scipy.special.smirnov`` of
larger statistics, Ruben-Gambino near ``d = 1/n``) answer None, and the caller asks scipy.

:func:`kolmogorov_sf` is the tail of the limiting Kolmogorov distribution, ``2 * sum (-1)^(k-1)
exp(-2 k^2 z^2)``, as :func:`scipy.special.kolmogorov` gives it for ``z >= 1`` (to rounding);
the caller uses it to tell a p-value far in the tail, where no decision depends on more digits.
Pure numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["kolmogorov_sf", "kstwo_sf"]

_SQRT2PI = np.sqrt(2 * np.pi)
_MIN_LOG = -708
_SQRT3 = np.sqrt(3)
_PI_SQUARED = np.pi ** 2
_PI_FOUR = np.pi ** 4
_PI_SIX = np.pi ** 6

#: where the limiting distribution's alternating series is used (below, its terms decay slowly)
SERIES_MIN_Z = 1.0


def kolmogorov_sf(z: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``P(K > z)`` of the limiting Kolmogorov distribution where ``z >= SERIES_MIN_Z``; 1.0 below
    (where it is above 0.27: callers only ask whether it is tiny)."""
    z_ = np.asarray(z, dtype=np.float64)
    big = z_ >= SERIES_MIN_Z
    w = np.where(big, z_, SERIES_MIN_Z)
    with np.errstate(under="ignore"):  # far in the tail the later terms are 0
        q = np.exp(-2.0 * w * w)  # at most e^-2: five terms leave q^36 < 1e-31 behind
        total = q * (1.0 - q ** 3 * (1.0 - q ** 5 * (1.0 - q ** 7 * (1.0 - q ** 9))))
    return np.asarray(np.where(big, 2.0 * total, 1.0), dtype=np.float64)


def kstwo_sf(n: int, x: float) -> float | None:
    """``scipy.stats.kstwo.sf(x, n)`` (scipy's ``_kolmogn(n, x, cdf=False)``) where it is a closed
    form or the Pelz-Good approximation, bit for bit; None where scipy computes it otherwise."""
    x_ = np.asarray(x, dtype=np.float64)  # scipy's nditer hands _kolmogn a 0-d float64 array
    if np.isnan(x_) or n <= 0:
        return None
    if x_ >= 1.0:
        return 0.0
    if x_ <= 0.0:
        return 1.0
    t = n * x_
    if t <= 1.0:
        return 1.0 if t <= 0.5 else None
    if t >= n - 1:
        return float(np.clip(2 * (1.0 - x_) ** n, 0.0, 1.0))
    if x_ >= 0.5 or n <= 140:
        return None
    nxsquared = t * x_
    if nxsquared >= 370.0:
        return 0.0
    if nxsquared >= 2.2 or (n <= 100000 and n * x_ ** 1.5 <= 1.4):
        return None
    return float(np.clip(1.0 - _pelz_good_cdf(n, x_), 0.0, 1.0))


def _pelz_good_cdf(n: int, x: npt.NDArray[np.float64]) -> float:
    """scipy's ``_kolmogn_PelzGood(n, x, cdf=True)`` for ``0 < x < 1``: ``Prob(D_n <= x) ~ K0(z) +
    K1(z)/sqrt(n) + K2(z)/n + K3(z)/n**1.5``, ``z = x*sqrt(n)``, each ``K`` transformed with Jacobi
    theta functions into a form suited to small ``z`` (Pelz and Good, 1976)."""
    z = np.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z**2, z**3, z**4, z**6

    qlog = -_PI_SQUARED / 8 / zsquared
    if qlog < _MIN_LOG:  # z ~ 0.041743441416853426
        return 0.0

    q = np.exp(qlog)

    # Coefficients of terms in the sums for K1, K2 and K3
    k1a = -zsquared
    k1b = _PI_SQUARED / 4

    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16

    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z**8

    k0to3 = np.zeros(4)
    # A Horner scheme for sum c_i q^(i^2), reduced to a sum over odd integers
    maxk = int(np.ceil(16 * z / np.pi))
    for k in range(maxk, 0, -1):
        m = 2 * k - 1
        msquared, mfour, msix = m**2, m**4, m**6
        qpower = np.power(q, 8 * k)
        coeffs = np.array([1.0,
                           k1a + k1b*msquared,
                           k2a + k2b*msquared + k2c*mfour,
                           k3a + k3b*msquared + k3c*mfour + k3d*msix])
        k0to3 *= qpower
        k0to3 += coeffs
    k0to3 *= q
    k0to3 *= _SQRT2PI
    k0to3 /= np.array([z, 6 * zfour, 72 * z**7, 6480 * z**10])  # z**10 > 0 as z > 0.04

    # The other sum, over all integers k: K_2: (pi^2 k^2) q^(k^2), K_3: (3 pi^2 k^2 z^2 - pi^4 k^4) q^(k^2)
    q = np.exp(-_PI_SQUARED / 2 / zsquared)
    ks = np.arange(maxk, 0, -1)
    ksquared = ks ** 2
    sqrt3z = _SQRT3 * z
    kspi = np.pi * ks
    qpwers = q ** ksquared
    k2extra = np.sum(ksquared * qpwers)
    k2extra *= _PI_SQUARED * _SQRT2PI/(-36 * zthree)
    k0to3[2] += k2extra
    k3extra = np.sum((sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpwers)
    k3extra *= _PI_SQUARED * _SQRT2PI/(216 * zsix)
    k0to3[3] += k3extra
    powers_of_n = np.power(n * 1.0, np.arange(len(k0to3)) / 2.0)
    k0to3 /= powers_of_n
    return float(sum(k0to3))

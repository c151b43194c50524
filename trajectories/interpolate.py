"""Keyframe interpolation: K keys spread evenly over [0, 1], sampled at arbitrary positions."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.interpolate import PchipInterpolator, UnivariateSpline

Interpolation = Literal["exact", "reference"]


def interpolate_keys(
    keys: np.ndarray, positions: np.ndarray, mode: Interpolation = "exact", pin_ends: bool = False
) -> np.ndarray:
    """Values of the curve through ``keys`` (placed at ``linspace(0, 1, K)``) at ``positions`` in [0, 1].

    ``exact``: a monotone piecewise cubic (PCHIP) through every key; between two keys it stays
    within their range (no overshoot); the ends equal the first and last key exactly.
    ``reference``: the reference system's rule, a cubic smoothing spline (scipy ``UnivariateSpline``,
    k=3, default smoothing) when K > 3, linear otherwise; it does not pass through the keys, so
    ``pin_ends`` (used for displacement) sets the values at positions 0 and 1 to the first/last key.
    """
    if mode not in ("exact", "reference"):
        raise ValueError(f"unknown interpolation {mode!r}; use 'exact' or 'reference'")
    keys = np.asarray(keys, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    if len(keys) == 1:
        return np.full(positions.shape, keys[0])
    knots = np.linspace(0.0, 1.0, len(keys))
    if mode == "exact":
        values = PchipInterpolator(knots, keys)(positions)
        pin_ends = True
    else:
        values = UnivariateSpline(knots, keys, k=3)(positions) if len(keys) > 3 else np.interp(positions, knots, keys)
    if pin_ends:
        values = np.where(positions == 0.0, keys[0], np.where(positions == 1.0, keys[-1], values))
    return values

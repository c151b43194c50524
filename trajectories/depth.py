"""The scene scale a trajectory's displacement is measured in (``radius="scene"``)."""

from __future__ import annotations

import numpy as np

FOREGROUND_PERCENTILE = 25.0
CENTER_FRACTION = 0.5


def foreground_depth(
    depth0: np.ndarray,
    conf: np.ndarray | None = None,
    percentile: float = FOREGROUND_PERCENTILE,
    center_fraction: float = CENTER_FRACTION,
) -> float:
    """Robust depth of the foreground subject in the first frame, in scene units.

    Statistic: the 25th percentile of the z-depth over the central region (the middle half of the
    height and of the width), using only valid pixels (finite, > 0) and, when ``conf`` is given, only
    the confident half (conf >= the region's median confidence). The centre is where the subject of
    a video usually is; a low percentile lands on that subject rather than on the background
    behind it, while ignoring the few nearest pixels (noise, flying pixels at edges). If the central
    region has no valid pixel, the whole frame is used.

    depth0: [h, w] z-depth; conf: [h, w] or None (higher = more confident). Raises ValueError when the
    frame has no valid depth.
    """
    depth0 = np.asarray(depth0, dtype=np.float64)
    if depth0.ndim != 2:
        raise ValueError(f"depth0 must be [h, w], got shape {depth0.shape}")
    if conf is not None and np.shape(conf) != depth0.shape:
        raise ValueError(f"conf must match depth0's shape {depth0.shape}, got {np.shape(conf)}")
    h, w = depth0.shape
    margin = (1.0 - center_fraction) / 2.0
    rows = slice(int(h * margin), max(int(h * margin) + 1, int(round(h * (1.0 - margin)))))
    cols = slice(int(w * margin), max(int(w * margin) + 1, int(round(w * (1.0 - margin)))))
    for region in ((rows, cols), (slice(None), slice(None))):
        depth = depth0[region]
        valid = np.isfinite(depth) & (depth > 0)
        if conf is not None:
            c = np.asarray(conf, dtype=np.float64)[region]
            valid &= np.isfinite(c)
            if valid.any():
                valid &= c >= np.median(c[valid])
        if valid.any():
            return float(np.percentile(depth[valid], percentile))
    raise ValueError("the first frame's depth has no finite positive value; cannot derive the scene scale")

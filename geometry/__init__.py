"""Per-frame geometry: the DA3-compatible cache, unprojection, point rendering, synthetic scenes, metrics."""

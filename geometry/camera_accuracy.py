"""Camera accuracy: estimated camera poses against requested ones, up to a similarity transform.

Camera poses are camera-to-world ``c2w`` [N, 4, 4] (OpenCV axes). An estimator (e.g. DA3 on a generated
video) works in its own world frame and scale, so the estimate is first aligned to the request by the
similarity transform of ``geometry.registration.estimate_sim3`` (rotation: chordal mean of the per-frame
rotation offsets; scale: least squares on the centred camera centres; translation from the centres).
When no positive scale fits (the estimated camera does not move, or moves against the request) the
alignment is the mean rotation with scale 0, the best non-negative scale: every aligned centre is the
requested centres' mean, so the translation error is what a camera that does not move at all would get
(RMS 1 over the path).
Errors per frame (``geometry.registration.pose_errors`` of the aligned estimate):
  rotation     geodesic angle between the aligned and the requested rotation, degrees;
  translation  distance between the aligned and the requested camera centre divided by the requested
               path's scale, the RMS distance of its centres from their mean (NaN when the requested
               camera does not move: nothing sets a scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geometry.registration import RegistrationError, Sim3, estimate_sim3, mean_rotation, pose_errors


@dataclass(frozen=True)
class CameraErrors:
    """Per-frame rotation error (degrees) and scale-normalised translation error, with the alignment used."""

    rotation_deg: np.ndarray
    translation: np.ndarray
    alignment: Sim3
    path_scale: float


def align_to_request(est_c2w: np.ndarray, req_c2w: np.ndarray) -> Sim3:
    """The similarity transform taking the estimated poses onto the requested ones (see module doc)."""
    est, req = np.asarray(est_c2w, np.float64), np.asarray(req_c2w, np.float64)
    if est.shape != req.shape or est.shape[1:] != (4, 4):
        raise ValueError(f"estimated and requested poses must both be [N, 4, 4], got {est.shape} and {req.shape}")
    try:
        return estimate_sim3(est, req)
    except RegistrationError:  # no positive scale fits the centres
        return Sim3(0.0, mean_rotation(est, req), req[:, :3, 3].mean(0))


def camera_errors(est_c2w: np.ndarray, req_c2w: np.ndarray) -> CameraErrors:
    """Align ``est_c2w`` to ``req_c2w`` (both [N, 4, 4]) and measure per-frame errors (see module doc)."""
    req = np.asarray(req_c2w, np.float64)
    sim = align_to_request(est_c2w, req)
    rotation, dist = pose_errors(sim.apply_c2w(np.asarray(est_c2w, np.float64)), req)
    centres = req[:, :3, 3]
    path_scale = float(np.sqrt(np.mean(np.sum((centres - centres.mean(0)) ** 2, axis=1))))
    translation = dist / path_scale if path_scale > 1e-12 else np.full(len(dist), np.nan)
    return CameraErrors(rotation, translation, sim, path_scale)

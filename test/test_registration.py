"""Chunk planning and Sim(3) chunk registration against known transforms and ground-truth scenes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geometry.registration import (
    ChunkStitcher,
    RegistrationError,
    Sim3,
    chunk_ranges,
    estimate_sim3,
    pose_errors,
)
from geometry.synthetic import SyntheticScene, handheld_path, make_geometry, make_source_clip


def random_sim3(rng: np.random.Generator) -> Sim3:
    return Sim3(float(rng.uniform(0.3, 3.0)), Rotation.random(random_state=rng).as_matrix(), rng.normal(0, 2, 3))


def random_cameras(rng: np.random.Generator, n: int) -> np.ndarray:
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=rng).as_matrix()
    c2w[:, :3, 3] = rng.normal(0, 1, (n, 3))
    return c2w


def sim3_close(a: Sim3, b: Sim3, tol: float) -> bool:
    return (
        abs(a.scale - b.scale) < tol
        and np.abs(a.rotation - b.rotation).max() < tol
        and np.abs(a.translation - b.translation).max() < tol
    )


@pytest.mark.parametrize("n,size,overlap", [(1, 8, 2), (8, 8, 2), (9, 8, 2), (50, 8, 3), (121, 32, 8), (130, 64, 16)])
def test_chunk_ranges_cover_with_overlap(n, size, overlap):
    ranges = chunk_ranges(n, size, overlap)
    assert ranges[0].start == 0 and ranges[-1].stop == n
    assert all(len(r) == min(size, n) for r in ranges)
    for a, b in zip(ranges, ranges[1:]):
        assert a.start < b.start and a.stop - b.start >= overlap


@pytest.mark.parametrize("size,overlap", [(1, 0), (8, 0), (8, 8)])
def test_chunk_ranges_reject_bad_settings(size, overlap):
    with pytest.raises(ValueError, match="chunk_size|overlap"):
        chunk_ranges(20, size, overlap)


def test_sim3_apply_and_inverse():
    rng = np.random.default_rng(0)
    s, cams = random_sim3(rng), random_cameras(rng, 5)
    moved = s.apply_c2w(cams)
    assert np.allclose(moved[:, :3, :3] @ moved[:, :3, :3].transpose(0, 2, 1), np.eye(3))
    assert np.allclose(moved[:, :3, 3], s.scale * cams[:, :3, 3] @ s.rotation.T + s.translation)
    assert np.allclose(s.inverse().apply_c2w(moved), cams)


def test_estimate_sim3_recovers_transform_from_poses():
    rng = np.random.default_rng(1)
    for _ in range(5):
        truth, cams = random_sim3(rng), random_cameras(rng, 6)
        got = estimate_sim3(cams, truth.apply_c2w(cams))
        assert sim3_close(got, truth, 1e-9)


def test_estimate_sim3_scale_from_depth_with_static_camera():
    """A static camera (no centre spread) is well posed when depth gives the scale."""
    rng = np.random.default_rng(2)
    truth = random_sim3(rng)
    cams = np.repeat(random_cameras(rng, 1), 4, axis=0)
    depth = rng.uniform(1, 5, (4, 6, 8))
    got = estimate_sim3(cams, truth.apply_c2w(cams), depth, depth * truth.scale)
    assert sim3_close(got, truth, 1e-9)
    with pytest.raises(RegistrationError, match="does not move"):
        estimate_sim3(cams, truth.apply_c2w(cams))


def test_estimate_sim3_depth_scale_is_robust_to_outlier_pixels():
    rng = np.random.default_rng(3)
    truth, cams = random_sim3(rng), random_cameras(rng, 3)
    depth = rng.uniform(1, 5, (3, 10, 10))
    dst = depth * truth.scale
    dst[:, :3] = 100.0  # 30% of pixels wrong
    conf = np.ones_like(depth)
    got = estimate_sim3(cams, truth.apply_c2w(cams), depth, dst, conf, conf)
    assert abs(got.scale - truth.scale) < 1e-9


def perturbed_chunks(c2w, depth, ranges, rng, pose_noise=0.0, depth_noise=0.0):
    """Each chunk as an independent estimator would return it: its own similarity frame, plus noise.

    The first chunk keeps the true units (scale 1): the stitched world takes its units from it.
    """
    for i, r in enumerate(ranges):
        t = random_sim3(rng)
        t = Sim3(1.0, t.rotation, t.translation) if i == 0 else t
        local = t.apply_c2w(c2w[r.start:r.stop])
        if pose_noise:
            local[:, :3, 3] += rng.normal(0, pose_noise * t.scale, (len(r), 3))
            noise = Rotation.from_rotvec(rng.normal(0, np.radians(pose_noise * 10), (len(r), 3))).as_matrix()
            local[:, :3, :3] = local[:, :3, :3] @ noise
        d = depth[r.start:r.stop] * t.scale
        if depth_noise:
            d = d * np.exp(rng.normal(0, depth_noise, d.shape))
        yield r, local, d.astype(np.float32), np.ones_like(d, dtype=np.float32), np.tile(np.eye(3), (len(r), 1, 1))


def stitch(n, chunks):
    s = ChunkStitcher(n)
    for r, c2w, depth, conf, K in chunks:
        s.add(r, c2w, depth, conf, K)
    assert s.complete
    return s


def test_stitcher_recovers_ground_truth_exactly():
    rng = np.random.default_rng(4)
    n = 40
    gt = random_cameras(rng, n)
    gt = np.linalg.inv(gt[0]) @ gt  # world = camera 0
    depth = rng.uniform(1, 4, (n, 5, 7))
    ranges = chunk_ranges(n, 12, 4)
    s = stitch(n, perturbed_chunks(gt, depth, ranges, rng))
    assert np.allclose(s.c2w[0], np.eye(4), atol=1e-12)
    # exact up to float32 depth storage (the scale comes from stored depth ratios)
    assert np.abs(s.c2w - gt).max() < 1e-6
    assert np.abs(s.depth / depth - 1).max() < 1e-6
    assert len(s.transforms) == len(ranges)


def test_stitcher_rejects_chunks_that_do_not_overlap():
    s = ChunkStitcher(10)
    eye = np.tile(np.eye(4), (5, 1, 1))
    d = np.ones((5, 2, 2), np.float32)
    s.add(range(0, 5), eye, d, None, np.tile(np.eye(3), (5, 1, 1)))
    with pytest.raises(ValueError, match="overlap"):
        s.add(range(5, 10), eye, d, None, np.tile(np.eye(3), (5, 1, 1)))


def synthetic_truth(n: int):
    scene = SyntheticScene()
    fps = 12.0
    clip = make_source_clip(scene, n, 64, 36, fps, handheld_path(n, fps, drift_m_per_s=(0.4, 0.0, 0.2)))
    geo = make_geometry(scene, clip, depth_hw=(18, 32))
    return clip.c2w, geo.depth.astype(np.float64)


def test_chunked_registration_on_synthetic_scene_matches_single_call():
    """Chunks in random similarity frames with noise register back onto the ground-truth path.

    A single call carries the same per-frame noise without seams: the chunked error must stay
    within a small factor of it (registration adds no drift).
    """
    n = 48
    gt, depth = synthetic_truth(n)
    rng = np.random.default_rng(5)
    noise = 0.002  # 2 mm on centres, 0.02° on rotations, 1% depth noise
    single = stitch(n, perturbed_chunks(gt, depth, [range(0, n)], rng, noise, 0.01))
    chunked = stitch(n, perturbed_chunks(gt, depth, chunk_ranges(n, 16, 6), rng, noise, 0.01))
    rot_1, pos_1 = pose_errors(single.c2w, gt)
    rot_k, pos_k = pose_errors(chunked.c2w, gt)
    extent = np.linalg.norm(gt[:, :3, 3] - gt[0, :3, 3], axis=1).max()
    assert pos_k.max() < 0.02 * extent and rot_k.max() < 0.2
    assert pos_k.mean() < 4 * pos_1.mean() + 2e-3


def test_stitcher_splits_each_overlap_at_its_middle():
    """Frames near a chunk's middle have the most context: each overlap is split in half."""
    n = 20
    gt = np.tile(np.eye(4), (n, 1, 1))
    gt[:, 0, 3] = np.arange(n) * 0.1
    ranges = chunk_ranges(n, 12, 4)  # [0,12), [8,20): overlap 8..11, split at 10
    s = ChunkStitcher(n)
    for i, r in enumerate(ranges):
        k = len(r)
        s.add(r, gt[r.start:r.stop], np.ones((k, 2, 2), np.float32), np.full((k, 2, 2), i + 1.0, np.float32),
              np.tile(np.eye(3), (k, 1, 1)))
    assert (s.conf[:10] == 1).all() and (s.conf[10:] == 2).all()

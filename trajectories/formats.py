"""Camera lists in other tools' formats: nerfstudio ``camera_path.json`` and ``transforms.json``, COLMAP
text (``cameras.txt`` + ``images.txt``), matrix files (``target_tcw.txt``) and this project's ``cameras.json``.

Conventions, per format (this project: OpenCV axes x right, y down, z forward; pixel centres at
integer coordinates, so the top-left pixel's centre is (0, 0)):

- matrix file: world-to-camera, OpenCV axes, one camera per line (``trajectories.matrix_file``); no intrinsics.
- COLMAP text: world-to-camera as a unit quaternion (QW QX QY QZ, Hamilton, scalar first) and a
  translation, OpenCV axes; PINHOLE cameras ``fx fy cx cy`` with the top-left pixel's centre at
  (0.5, 0.5), so cx_colmap = cx + 0.5.
- nerfstudio ``transforms.json``: ``transform_matrix`` = camera-to-world in OpenGL axes (x right, y up,
  z backward) = c2w_opencv · diag(1, -1, -1, 1); ``fl_x fl_y cx cy w h`` per frame, pixel centres at
  +0.5 as COLMAP.
- nerfstudio viewer ``camera_path.json``: ``camera_path[i].camera_to_world`` = 16 numbers, row-major,
  camera-to-world in OpenGL axes; ``fov`` = vertical field of view in degrees (fy = fx = H/2 / tan(fov/2));
  principal point at the image centre; ``render_width/height``, ``fps``, ``seconds``.

Every reader returns a ``CameraSet`` in this project's conventions; ``format_cameras`` gives the texts to write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from trajectories.matrix_file import check_w2c, format_matrix_trajectory, parse_matrix_trajectory
from trajectories.spec import TrajectoryError, read_trajectory_text

# OpenCV <-> OpenGL camera axes: flip y and z (its own inverse); c2w_gl = c2w_cv · GL_FROM_CV.
GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])
PIXEL_CENTRE = 0.5  # COLMAP / nerfstudio put the top-left pixel's centre at (0.5, 0.5); this project at (0, 0)
DEFAULT_FPS = 24.0


@dataclass(frozen=True)
class CameraSet:
    """Cameras crossing between formats.

    c2w:    [N, 4, 4] float64 camera-to-world, OpenCV axes.
    K:      [N, 3, 3] float64 pixels at (height, width), pixel centres at integers; None when the format has none.
    width, height: image size in pixels (0 when unknown); fps: frame rate of a path.
    names:  one image name per camera (COLMAP / transforms.json file names).
    """

    c2w: np.ndarray
    K: np.ndarray | None
    width: int
    height: int
    fps: float = DEFAULT_FPS
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.c2w)
        if n == 0 or self.c2w.shape != (n, 4, 4):
            raise ValueError(f"c2w must be [N, 4, 4] with N >= 1, got {self.c2w.shape}")
        if self.K is not None and self.K.shape != (n, 3, 3):
            raise ValueError(f"K must be [{n}, 3, 3], got {self.K.shape}")
        if self.names and len(self.names) != n:
            raise ValueError(f"{len(self.names)} names for {n} cameras")

    def __len__(self) -> int:
        return len(self.c2w)

    def image_names(self, stem: str = "frame") -> tuple[str, ...]:
        return self.names or tuple(f"{stem}_{i:05d}.png" for i in range(len(self)))

    def require_intrinsics(self, target: str) -> np.ndarray:
        if self.K is None or not (self.width and self.height):
            raise ValueError(f"{target} needs intrinsics and an image size, which the input has none of; "
                             "convert from cameras.json, camera_path.json, transforms.json or COLMAP instead")
        return self.K


def _error(path: Path, problem: str, fix: str) -> TrajectoryError:
    return TrajectoryError(str(path), 0, path.name, problem, fix)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(read_trajectory_text(path))
    except json.JSONDecodeError as err:
        raise TrajectoryError(str(path), err.lineno, "", f"not valid JSON ({err.msg})", "fix the JSON syntax") from None
    if not isinstance(data, dict):
        raise _error(path, "JSON top level is not an object", "give the file the tool wrote, unedited")
    return data


def _rigid(c2w: np.ndarray, path: Path, index: int) -> np.ndarray:
    """Validate a camera-to-world matrix via its inverse (the matrix-file rules), naming camera ``index``."""
    check_w2c(np.linalg.inv(c2w) if np.all(np.isfinite(c2w)) else c2w, str(path), index + 1, f"camera {index}")
    return c2w


# --- nerfstudio viewer camera_path.json -----------------------------------------------------------


def read_camera_path_json(path: Path) -> CameraSet:
    """A nerfstudio viewer export (see module docstring); ``line`` in errors is the camera's 1-based index."""
    data = _read_json(path)
    try:
        height, width = int(data["render_height"]), int(data["render_width"])
        cameras = data["camera_path"]
        c2w = [_rigid(np.asarray(c["camera_to_world"], dtype=np.float64).reshape(4, 4) @ GL_FROM_CV, path, i)
               for i, c in enumerate(cameras)]
        fov = np.asarray([float(c["fov"]) for c in cameras])
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, TrajectoryError):
            raise
        raise _error(path, f"not a nerfstudio camera path ({type(err).__name__}: {err})",
                     "export it from the nerfstudio viewer's render panel (camera_path.json)") from None
    if not c2w:
        raise _error(path, "camera_path is empty", "add at least one camera in the viewer before exporting")
    focal = (height / 2.0) / np.tan(np.deg2rad(fov) / 2.0)
    K = np.zeros((len(c2w), 3, 3))
    K[:, 0, 0] = K[:, 1, 1] = focal
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = width / 2.0 - PIXEL_CENTRE, height / 2.0 - PIXEL_CENTRE, 1.0
    return CameraSet(np.stack(c2w), K, width, height, float(data.get("fps", DEFAULT_FPS)))


def camera_path_json(cameras: CameraSet) -> dict:
    """The nerfstudio viewer's camera_path.json for ``cameras`` (fov from fy; the principal point is dropped)."""
    K = cameras.require_intrinsics("camera_path.json")
    fov = np.rad2deg(2.0 * np.arctan((cameras.height / 2.0) / K[:, 1, 1]))
    gl = cameras.c2w @ GL_FROM_CV
    return {
        "camera_type": "perspective",
        "render_height": cameras.height,
        "render_width": cameras.width,
        "fps": cameras.fps,
        "seconds": len(cameras) / cameras.fps,
        "camera_path": [{"camera_to_world": m.reshape(16).tolist(), "fov": float(f), "aspect": cameras.width / cameras.height}
                        for m, f in zip(gl, fov)],
    }


# --- nerfstudio transforms.json -------------------------------------------------------------------


def transforms_json(cameras: CameraSet, image_dir: str = "images") -> dict:
    """nerfstudio ``transforms.json`` (per-frame PINHOLE intrinsics, OpenGL c2w; see module docstring)."""
    K = cameras.require_intrinsics("transforms.json")
    gl = cameras.c2w @ GL_FROM_CV
    frames = [{"file_path": f"{image_dir}/{name}", "transform_matrix": m.tolist(),
               "fl_x": float(k[0, 0]), "fl_y": float(k[1, 1]), "cx": float(k[0, 2]) + PIXEL_CENTRE,
               "cy": float(k[1, 2]) + PIXEL_CENTRE, "w": cameras.width, "h": cameras.height}
              for name, m, k in zip(cameras.image_names(), gl, K)]
    return {"camera_model": "PINHOLE", "w": cameras.width, "h": cameras.height, "frames": frames}


def read_transforms_json(path: Path) -> CameraSet:
    data = _read_json(path)
    try:
        frames = data["frames"]
        c2w = [_rigid(np.asarray(f["transform_matrix"], dtype=np.float64).reshape(4, 4) @ GL_FROM_CV, path, i)
               for i, f in enumerate(frames)]
        field = lambda f, k: float(f.get(k, data.get(k)))  # noqa: E731 - per-frame value, else the shared one
        K = np.array([[[field(f, "fl_x"), 0.0, field(f, "cx") - PIXEL_CENTRE],
                       [0.0, field(f, "fl_y"), field(f, "cy") - PIXEL_CENTRE], [0.0, 0.0, 1.0]] for f in frames])
        width, height = int(field(frames[0], "w")), int(field(frames[0], "h"))
        names = tuple(Path(f["file_path"]).name for f in frames)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        if isinstance(err, TrajectoryError):
            raise
        raise _error(path, f"not a nerfstudio transforms.json with pinhole intrinsics ({type(err).__name__}: {err})",
                     "every frame needs transform_matrix, and fl_x fl_y cx cy w h per frame or at the top") from None
    if not c2w:
        raise _error(path, "frames is empty", "a transforms.json needs at least one frame")
    return CameraSet(np.stack(c2w), K, width, height, names=names)


# --- COLMAP text ----------------------------------------------------------------------------------


def colmap_text(cameras: CameraSet) -> tuple[str, str]:
    """(cameras.txt, images.txt) text: one PINHOLE camera per image, w2c as QW QX QY QZ TX TY TZ; the
    second line of each image (its 2D points) is empty."""
    K = cameras.require_intrinsics("COLMAP")
    w2c = np.linalg.inv(cameras.c2w)
    cams = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
            f"# Number of cameras: {len(cameras)}"]
    images = ["# Image list with two lines of data per image:",
              "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)",
              f"# Number of images: {len(cameras)}, mean observations per image: 0"]
    for i, (m, k, name) in enumerate(zip(w2c, K, cameras.image_names()), start=1):
        params = (k[0, 0], k[1, 1], k[0, 2] + PIXEL_CENTRE, k[1, 2] + PIXEL_CENTRE)
        cams.append(f"{i} PINHOLE {cameras.width} {cameras.height} " + " ".join(repr(float(v)) for v in params))
        x, y, z, w = Rotation.from_matrix(m[:3, :3]).as_quat()
        if w < 0:
            x, y, z, w = -x, -y, -z, -w
        images.append(f"{i} " + " ".join(repr(float(v)) for v in (w, x, y, z, *m[:3, 3])) + f" {i} {name}")
        images.append("")
    return "\n".join(cams) + "\n", "\n".join(images) + "\n"


def read_colmap_text(folder: Path) -> CameraSet:
    """``cameras.txt`` + ``images.txt`` of a COLMAP text model (PINHOLE, SIMPLE_PINHOLE; images by ID order)."""
    intrinsics: dict[int, tuple[int, int, np.ndarray]] = {}
    cam_file, img_file = folder / "cameras.txt", folder / "images.txt"
    for number, raw in enumerate(read_trajectory_text(cam_file).splitlines(), start=1):
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        try:
            cam_id, model, width, height, params = int(tokens[0]), tokens[1], int(tokens[2]), int(tokens[3]), [float(t) for t in tokens[4:]]
            fx, fy, cx, cy = {"PINHOLE": lambda p: p[:4], "SIMPLE_PINHOLE": lambda p: (p[0], p[0], p[1], p[2])}[model](params)
        except (ValueError, IndexError, KeyError):
            raise TrajectoryError(str(cam_file), number, tokens[0], "not a PINHOLE or SIMPLE_PINHOLE camera line",
                                  "undistort the model first (colmap image_undistorter) so cameras are pinhole") from None
        intrinsics[cam_id] = (width, height, np.array([[fx, 0, cx - PIXEL_CENTRE], [0, fy, cy - PIXEL_CENTRE], [0, 0, 1.0]]))
    entries = []
    lines = read_trajectory_text(img_file).splitlines()
    data = [(n, line) for n, line in enumerate(lines, start=1) if not line.startswith("#")]
    for n, raw in data[::2]:  # every image has two lines: the pose, then its 2D points (may be empty)
        tokens = raw.split()
        try:
            image_id, (qw, qx, qy, qz, tx, ty, tz), cam_id, name = int(tokens[0]), map(float, tokens[1:8]), int(tokens[8]), tokens[9]
            width, height, K = intrinsics[cam_id]
        except (ValueError, IndexError, KeyError):
            raise TrajectoryError(str(img_file), n, tokens[0] if tokens else "", "not an image line "
                                  "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME with a known camera",
                                  "each image needs a pose line and a (possibly empty) points line") from None
        w2c = np.eye(4)
        w2c[:3, :3] = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
        w2c[:3, 3] = (tx, ty, tz)
        entries.append((image_id, np.linalg.inv(w2c), K, width, height, name))
    if not entries:
        raise _error(img_file, "no images", "a COLMAP model needs at least one registered image")
    entries.sort(key=lambda e: e[0])
    return CameraSet(np.stack([e[1] for e in entries]), np.stack([e[2] for e in entries]), entries[0][3], entries[0][4],
                     names=tuple(e[5] for e in entries))


# --- matrix files and cameras.json ----------------------------------------------------------------


def read_matrix_file(path: Path) -> CameraSet:
    traj = parse_matrix_trajectory(read_trajectory_text(path), str(path))
    return CameraSet(np.linalg.inv(traj.w2c), None, 0, 0)


def matrix_file_text(cameras: CameraSet) -> str:
    return format_matrix_trajectory(np.linalg.inv(cameras.c2w),
                                    "one OpenCV world-to-camera matrix per frame, 16 numbers row-major")


def read_cameras_json(path: Path) -> CameraSet:
    """This project's render ``cameras.json`` (``trajectories.camera_path.CameraPath``)."""
    from trajectories.camera_path import CameraPath

    try:
        path_ = CameraPath.from_json(_read_json(path))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, TrajectoryError):
            raise
        raise _error(path, f"not a cameras.json of a render folder ({err})", "give a render folder's cameras.json") from None
    return CameraSet(path_.c2w, path_.intrinsics, path_.width, path_.height, path_.fps)


def relative_to(cameras: CameraSet, reference_c2w: np.ndarray) -> CameraSet:
    """The same cameras with the world moved to ``reference_c2w``'s camera frame (c2w' = inv(reference) · c2w)."""
    return replace(cameras, c2w=np.linalg.inv(reference_c2w) @ cameras.c2w)


FORMATS = ("tcw", "camera_path", "transforms", "colmap", "cameras")


def guess_format(path: Path) -> str:
    """A format name from a file or folder name (see ``FORMATS``)."""
    name = path.name.lower()
    if name.endswith(".txt"):
        return "tcw"
    if name == "transforms.json":
        return "transforms"
    if name == "cameras.json":
        return "cameras"
    if name.endswith(".json"):
        return "camera_path"
    if path.is_dir() or not path.suffix:
        return "colmap"
    raise ValueError(f"{path}: cannot tell the camera format from the name; pass --from/--to "
                     f"({', '.join(FORMATS)})")


def read_cameras(path: Path, fmt: str | None = None) -> CameraSet:
    fmt = fmt or guess_format(path)
    readers = {"tcw": read_matrix_file, "camera_path": read_camera_path_json, "transforms": read_transforms_json,
               "colmap": read_colmap_text, "cameras": read_cameras_json}
    if fmt not in readers:
        raise ValueError(f"unknown camera format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return readers[fmt](Path(path))


def format_cameras(cameras: CameraSet, path: Path, fmt: str | None = None) -> dict[Path, str]:
    """The files (path -> text) that hold ``cameras`` as ``fmt`` at ``path``; COLMAP is a folder of two files."""
    fmt = fmt or guess_format(path)
    path = Path(path)
    if fmt == "colmap":
        return dict(zip((path / "cameras.txt", path / "images.txt"), colmap_text(cameras)))
    if fmt == "tcw":
        return {path: matrix_file_text(cameras)}
    if fmt == "camera_path":
        return {path: json.dumps(camera_path_json(cameras), indent=1)}
    if fmt == "transforms":
        return {path: json.dumps(transforms_json(cameras), indent=1)}
    raise ValueError(f"cannot write camera format {fmt!r}; choose one of tcw, camera_path, transforms, colmap")

"""Per-frame arrays read on demand: ``.npz`` members streamed out in chunks, and uncompressed ``.npy``
files whose frames are read only when indexed.

A frame is one index of the leading axis ([N, ...]). Neither side maps a file into memory: chunks are
decompressed one at a time and frames are read with ``os.preadv`` into fresh buffers, so resident
memory stays at a chunk or a frame however long the video (a mapped file's touched pages would count
as resident until unmapped). Reads are thread-safe (no shared file position).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

# Bytes decompressed per step when streaming a member. Small enough that glibc serves each chunk's
# buffers from its heap: 16 MB chunks were mmapped and unmapped per step, and faulting their pages
# back in cost more system time than the decompression (832x480 depth + conf + image, 49 frames:
# open_geometry 2.3 s -> 0.8 s, 1.3 s -> 0.08 s of it system time).
CHUNK_BYTES = 1 << 20


def _read_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy stream ``f``, left at the start of its data."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


class NpzMember:
    """One array of an ``.npz`` (compressed or not), read frame chunk by frame chunk.

    ``shape`` and ``dtype`` come from the member's header without reading its data.
    """

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = Path(path), key
        with zipfile.ZipFile(self.path) as zf, zf.open(f"{key}.npy") as f:
            self.shape, self.fortran_order, self.dtype = _read_header(f)

    def chunks(self, chunk_bytes: int | None = None) -> Iterator[np.ndarray]:
        """The array in order as [n, ...] chunks of about ``chunk_bytes`` (default ``CHUNK_BYTES``; at
        least one frame each)."""
        n = self.shape[0] if self.shape else 0
        frame_shape = self.shape[1:]
        frame_bytes = int(np.prod(frame_shape, dtype=np.int64)) * self.dtype.itemsize
        step = max(1, (chunk_bytes or CHUNK_BYTES) // max(frame_bytes, 1))
        with zipfile.ZipFile(self.path) as zf, zf.open(f"{self.key}.npy") as f:
            if self.fortran_order or self.dtype.hasobject:  # frames are not contiguous: read it whole
                whole = np.ascontiguousarray(np.lib.format.read_array(f, allow_pickle=False))
                yield from (whole[start : start + step] for start in range(0, n, step))
                return
            _read_header(f)
            for start in range(0, n, step):
                count = min(step, n - start)
                data = f.read(count * frame_bytes)
                if len(data) != count * frame_bytes:
                    raise EOFError(f"'{self.key}' ends after {start + len(data) // max(frame_bytes, 1)} of {n} frames")
                yield np.frombuffer(data, dtype=self.dtype).reshape(count, *frame_shape)


def npz_members(path: Path, keys: tuple[str, ...]) -> dict[str, NpzMember]:
    """The members ``keys`` that the ``.npz`` at ``path`` holds, by key, in the order of ``keys``."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    return {k: NpzMember(path, k) for k in keys if f"{k}.npy" in names}


class FrameArray:
    """A read-only [N, ...] array in an uncompressed C-order ``.npy`` file; ``a[i]`` and ``a[i:j]``
    read just those frames. ``np.asarray(a)`` reads everything."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self.shape, fortran_order, self.dtype = _read_header(f)
            self._offset = f.tell()
        if fortran_order or not self.shape:
            raise ValueError(f"{self.path}: not a C-order [N, ...] array")
        self._frame_shape = self.shape[1:]
        self._frame_bytes = int(np.prod(self._frame_shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._frame_bytes

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        """Frames by an int or a slice along the first axis (a tuple indexes within them afterwards)."""
        rest = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            out = self._read(start, max(stop - start, 0)) if step == 1 else self._read(0, len(self))[index]
        else:
            i = int(index)
            i = i + len(self) if i < 0 else i
            if not 0 <= i < len(self):
                raise IndexError(f"frame {index} out of range for {len(self)} frames")
            out = self._read(i, 1)[0]
        return out[rest] if rest else out

    def _read(self, start: int, count: int) -> np.ndarray:
        out = np.empty((count, *self._frame_shape), self.dtype)
        view, offset = memoryview(out).cast("B"), self._offset + start * self._frame_bytes
        fd = os.open(self.path, os.O_RDONLY)
        try:
            done = 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], offset + done)
                if got == 0:
                    raise EOFError(f"{self.path}: truncated at frame {start + done // self._frame_bytes}")
                done += got
        finally:
            os.close(fd)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def write_frames(path: Path, shape: tuple[int, ...], dtype: np.dtype, chunks: Iterator[np.ndarray]) -> FrameArray:
    """Write ``chunks`` (in order, together ``shape``) as an uncompressed ``.npy`` at ``path``."""
    dtype = np.dtype(dtype)
    written = 0
    with open(path, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_2_0(f, header)
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype=dtype).data)
            written += len(chunk)
    if written != shape[0]:
        raise ValueError(f"{path}: {written} frames written for a shape of {shape}")
    return FrameArray(path)

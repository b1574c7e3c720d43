"""MNIST's IDX file format (http://yann.lecun.com/exdb/mnist/), read and written.

Layout: two zero bytes, a type code, the number of dimensions d; then d sizes as
big-endian uint32; then the values, big-endian, row-major. Files may be gzipped
(as distributed). Every way a file can be wrong raises IDXError naming the file
and what was expected.
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from ..errors import NNGraphError

TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CODES = {np.dtype(v).newbyteorder("="): k for k, v in TYPES.items()}


class IDXError(NNGraphError, ValueError):
    """A file that is not a valid IDX file."""


def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise IDXError(f"{path}: corrupt gzip data: {e}") from None
    return data


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (optionally gzipped), in native byte order."""
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: too short for an IDX header ({len(data)} bytes, need at least 4)")
    z0, z1, code, ndim = data[0], data[1], data[2], data[3]
    if z0 != 0 or z1 != 0:
        raise IDXError(f"{path}: bad magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes")
    if code not in TYPES:
        known = ", ".join(f"0x{k:02X} ({np.dtype(v).name})" for k, v in TYPES.items())
        raise IDXError(f"{path}: bad magic number 0x{data[:4].hex()}: unknown type code 0x{code:02X} "
                       f"(known: {known})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, the file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dt = np.dtype(TYPES[code])
    want = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    have = len(data) - header
    if have < want:
        raise IDXError(f"{path}: truncated data: shape {list(shape)} of {dt.name} needs {want} bytes after "
                       f"the header, the file has {have}")
    if have > want:
        raise IDXError(f"{path}: size mismatch: shape {list(shape)} of {dt.name} needs {want} bytes after "
                       f"the header, the file has {have} ({have - want} extra)")
    return np.frombuffer(data, dt, offset=header).reshape(shape).astype(dt.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write `array` as an IDX file (uint8, int8, int16, int32, float32 or float64)."""
    a = np.asarray(array)
    code = CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        raise IDXError(f"{path}: IDX cannot store {a.dtype}; use one of "
                       f"{', '.join(np.dtype(v).name for v in TYPES.values())}")
    if a.ndim > 255:
        raise IDXError(f"{path}: IDX stores at most 255 dimensions, got {a.ndim}")
    head = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    body = np.ascontiguousarray(a, dtype=TYPES[code]).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + body)

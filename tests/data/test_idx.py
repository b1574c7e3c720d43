"""read_idx on small IDX files the test writes byte by byte; corrupt files raise IDXError
with a message saying what is wrong."""
import gzip
import struct

import numpy as np
import pytest

import nngraph as ng
from nngraph.data import IDXError


def _idx_bytes(code: int, shape, payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_reads_uint8_images(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    p = tmp_path / "imgs-idx3-ubyte"
    p.write_bytes(_idx_bytes(0x08, a.shape, a.tobytes()))
    out = ng.data.read_idx(p)
    assert out.dtype == np.uint8 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, a)


def test_reads_big_endian_int32_and_float32_labels(tmp_path):
    lab = np.array([7, -2, 100000, 3], np.int32)
    p = tmp_path / "labels-idx1"
    p.write_bytes(_idx_bytes(0x0C, lab.shape, lab.astype(">i4").tobytes()))
    np.testing.assert_array_equal(ng.data.read_idx(p), lab)
    f = np.array([[1.5, -2.25], [3.0, 0.125]], np.float32)
    q = tmp_path / "f.idx"
    q.write_bytes(_idx_bytes(0x0D, f.shape, f.astype(">f4").tobytes()))
    out = ng.data.read_idx(q)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, f)


def test_reads_gzipped(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    p = tmp_path / "x-idx2-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(0x08, a.shape, a.tobytes())))
    np.testing.assert_array_equal(ng.data.read_idx(p), a)


def test_write_then_read(tmp_path):
    for dt in (np.uint8, np.int16, np.int32, np.float64):
        a = (np.random.default_rng(1).normal(size=(2, 3)) * 50).astype(dt)
        ng.data.write_idx(tmp_path / "a.idx", a)
        np.testing.assert_array_equal(ng.data.read_idx(tmp_path / "a.idx"), a)


@pytest.mark.parametrize("data,match", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "bad magic number"),
    (b"\x00\x00\x42\x01\x00\x00\x00\x02ab", "unknown type code 0x42"),
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated header"),
    (_idx_bytes(0x08, (2, 3), b"abcde"), "truncated data: shape \\[2, 3\\].*needs 6 bytes.*has 5"),
    (_idx_bytes(0x0C, (2,), b"\x00" * 7), "truncated data"),
    (_idx_bytes(0x08, (2, 2), b"abcdef"), "size mismatch.*2 extra"),
])
def test_corrupt_files_raise_clear_errors(tmp_path, data, match):
    p = tmp_path / "bad.idx"
    p.write_bytes(data)
    with pytest.raises(IDXError, match=match) as e:
        ng.data.read_idx(p)
    assert str(p) in str(e.value)


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(_idx_bytes(0x08, (4,), b"abcd"))[:-6])
    with pytest.raises(IDXError, match="gzip"):
        ng.data.read_idx(p)

"""Batching, shuffling, splits, shift augmentation and the digits loader."""
import numpy as np
import pytest

import nngraph as ng


def test_batches_cover_every_row_once_and_shuffle_repeats_with_seed():
    X = np.arange(23 * 2).reshape(23, 2)
    y = np.arange(23)
    bs = list(ng.data.batches(X, y, batch_size=5, shuffle=True, seed=3))
    assert [len(b[1]) for b in bs] == [5, 5, 5, 5, 3]
    seen = np.concatenate([b[1] for b in bs])
    assert sorted(seen) == list(range(23)) and list(seen) != list(range(23))
    for xb, yb in bs:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # rows stay with their targets
    again = np.concatenate([b[1] for b in ng.data.batches(X, y, batch_size=5, shuffle=True, seed=3)])
    np.testing.assert_array_equal(seen, again)
    plain = list(ng.data.batches(X, batch_size=10, drop_last=True))
    assert len(plain) == 2 and plain[0].shape == (10, 2)


def test_split_is_disjoint_stratified_and_seeded():
    X = np.arange(1000, dtype=np.float32)[:, None]
    y = np.repeat(np.arange(10), 100).astype(np.int32)
    s = ng.data.split(X, y, val=0.1, test=0.2, seed=7)
    ids = [set(s[k][0][:, 0].astype(int)) for k in ("train", "val", "test")]
    assert sum(map(len, ids)) == 1000 and len(set.union(*ids)) == 1000
    assert len(ids[2]) == 200 and len(ids[1]) == 100
    assert np.all(np.bincount(s["test"][1], minlength=10) == 20)
    for k in s:  # targets travel with their rows
        np.testing.assert_array_equal(s[k][0][:, 0].astype(int) // 100, s[k][1])
    t = ng.data.split(X, y, val=0.1, test=0.2, seed=7)
    np.testing.assert_array_equal(s["test"][0], t["test"][0])
    with pytest.raises(ValueError):
        ng.data.split(X, y, val=0.5, test=0.5)


def test_shift_moves_by_one_pixel_with_zero_fill():
    img = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3)
    right = ng.data.shift(img, 0, 1)
    np.testing.assert_array_equal(right[0], [[0, 1, 2], [0, 4, 5], [0, 7, 8]])
    up = ng.data.shift(img, -1, 0)
    np.testing.assert_array_equal(up[0], [[4, 5, 6], [7, 8, 9], [0, 0, 0]])


def test_shift_augment_five_copies_flat_and_images():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(4, 16)).astype(np.float32)
    y = np.arange(4)
    Xa, ya = ng.data.shift_augment(X, y, image_shape=(4, 4))
    assert Xa.shape == (20, 16) and list(ya) == list(y) * 5
    np.testing.assert_array_equal(Xa[:4], X)
    down = Xa[4:8].reshape(4, 4, 4)  # the first shift: up by one pixel
    np.testing.assert_array_equal(down[:, :3], X.reshape(4, 4, 4)[:, 1:])
    Xi, _ = ng.data.shift_augment(X.reshape(4, 1, 4, 4), y)
    assert Xi.shape == (20, 1, 4, 4)
    with pytest.raises(ValueError, match="image_shape"):
        ng.data.shift_augment(X, y)


def test_load_digits():
    pytest.importorskip("sklearn")
    d = ng.data.load_digits()
    X, y = d["train"]
    assert X.dtype == np.float32 and X.shape[1] == 64 and y.dtype == np.int32
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert sum(len(d[k][1]) for k in d) == 1797
    Xi, _ = ng.data.load_digits(images=True)["test"]
    assert Xi.shape[1:] == (1, 8, 8)

"""ng.save / ng.load: .npz without pickles, atomic replacement, errors that name
the parameter, and no change at all unless every parameter fits."""
import os
import stat

import numpy as np
import pytest

import nngraph as ng


def params(seed=0):
    rng = np.random.default_rng(seed)
    return [ng.parameter(rng.standard_normal((3, 4)).astype(np.float32), name="W"),
            ng.parameter(rng.standard_normal(4), name="b"),  # float64 array
            ng.parameter(rng.integers(-5, 5, (2, 2)).astype(np.int64), name="count", trainable=False),
            ng.parameter(np.asarray(True), name="flag")]


def test_save_then_load_restores_every_value_and_dtype(tmp_path):
    path = tmp_path / "model.npz"
    ps = params(0)
    ng.save(path, ps)
    saved = [p.value.copy() for p in ps]
    for p, q in zip(ps, params(1)):
        p.value = q.value
    assert not np.array_equal(ps[0].value, saved[0])
    ng.load(path, ps)
    for p, a in zip(ps, saved):
        assert p.value.dtype == a.dtype
        np.testing.assert_array_equal(p.value, a)


def test_the_file_is_a_plain_npz_that_loads_without_pickle(tmp_path):
    path = tmp_path / "m.npz"
    ps = params(0)
    ng.save(path, ps)
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["W", "b", "count", "flag"]
        np.testing.assert_array_equal(f["W"], ps[0].value)
        assert f["flag"].shape == () and f["flag"].dtype == np.bool_


def test_names_that_np_savez_reserves_work(tmp_path):
    ps = [ng.parameter(np.ones(2, np.float32), name="file"),
          ng.parameter(np.full(3, 2.0, np.float32), name="allow_pickle")]
    ng.save(tmp_path / "r.npz", ps)
    ps[0].value = np.zeros(2)
    ng.load(tmp_path / "r.npz", ps)
    np.testing.assert_array_equal(ps[0].value, np.ones(2))


def test_a_dict_saves_under_its_keys(tmp_path):
    p = ng.parameter(np.arange(3, dtype=np.float32))
    ng.save(tmp_path / "d.npz", {"layer0/kernel": p})
    with np.load(tmp_path / "d.npz", allow_pickle=False) as f:
        assert f.files == ["layer0/kernel"]
    q = ng.parameter(np.zeros(3, np.float32))
    ng.load(tmp_path / "d.npz", {"layer0/kernel": q})
    np.testing.assert_array_equal(q.value, p.value)


def test_an_interrupted_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    ps = params(0)
    ng.save(path, ps)
    before = path.read_bytes()
    real = np.lib.format.write_array
    calls = []

    def fail_on_second(f, a, *args, **kw):  # write the first array, then part of the second, then die
        calls.append(1)
        if len(calls) == 2:
            f.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt("simulated crash mid-write")
        return real(f, a, *args, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", fail_on_second)
    for p, q in zip(ps, params(1)):
        p.value = q.value
    with pytest.raises(KeyboardInterrupt):
        ng.save(path, ps)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    monkeypatch.undo()
    ng.load(path, ps)
    np.testing.assert_array_equal(ps[0].value, params(0)[0].value)


def test_a_missing_parameter_is_named_and_nothing_changes(tmp_path):
    path = tmp_path / "m.npz"
    ps = params(0)
    ng.save(path, ps[:2])
    targets = params(1)
    before = [p.value.copy() for p in targets]
    with pytest.raises(KeyError) as e:
        ng.load(path, targets)
    assert isinstance(e.value, ng.NNGraphError)
    assert str(e.value).startswith("load: parameter 'count' (i64[2,2]) is missing from ")
    assert "the file has W, b" in str(e.value)
    for p, a in zip(targets, before):
        np.testing.assert_array_equal(p.value, a)


@pytest.mark.parametrize("bad", [np.zeros((4, 3), np.float32), np.zeros((3, 4), np.float64)])
def test_a_mismatched_parameter_is_named_and_nothing_changes(tmp_path, bad):
    path = tmp_path / "m.npz"
    ps = params(0)
    ng.save(path, {"b": ps[1], "W": ng.parameter(bad)})
    targets = params(1)
    before = [p.value.copy() for p in targets]
    with pytest.raises(ng.ShapeError) as e:
        ng.load(path, targets[:2])  # b would fit, W does not: b must not change either
    assert f"load: parameter 'W' expects f32[3,4] (float32), {path} has {bad.dtype} of shape {list(bad.shape)}" \
        == str(e.value)
    for p, a in zip(targets, before):
        np.testing.assert_array_equal(p.value, a)


def test_two_parameters_with_one_name_cannot_be_saved(tmp_path):
    a, b = ng.parameter(np.ones(2), name="w"), ng.parameter(np.ones(2), name="w")
    with pytest.raises(ValueError, match="two parameters are named 'w'"):
        ng.save(tmp_path / "x.npz", [a, b])
    assert not (tmp_path / "x.npz").exists()


def test_a_compiled_functions_params_save_and_load(tmp_path):
    x = ng.placeholder((2,), name="x")
    W = ng.parameter(np.array([1.0, 2.0], np.float32), name="W")
    fn = ng.compile([x], (x * W).sum(), updates={W: W * 2.0}, target="reference")
    ng.save(tmp_path / "f.npz", fn.params)
    fn(np.ones(2, np.float32))
    np.testing.assert_array_equal(W.value, [2.0, 4.0])
    ng.load(tmp_path / "f.npz", fn.params)
    np.testing.assert_array_equal(W.value, [1.0, 2.0])


# ----------------------------------------------------------------- issue 11 item 12, 13
def test_saving_over_a_file_keeps_its_mode(tmp_path):
    p = [ng.parameter(np.ones(3, np.float32), name="w")]
    path = tmp_path / "m.npz"
    ng.save(path, p)
    os.chmod(path, 0o644)
    ng.save(path, p)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_a_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        ng.save(tmp_path / "n.npz", [ng.parameter(np.ones(3, np.float32), name="w")])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "n.npz").st_mode) == 0o644


def test_saving_to_a_symlink_writes_its_target(tmp_path):
    w = ng.parameter(np.ones(3, np.float32), name="w")
    target = tmp_path / "real.npz"
    ng.save(target, [w])
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    w.value = np.full(3, 7.0, np.float32)
    ng.save(link, [w])
    assert link.is_symlink()
    w.value = np.zeros(3, np.float32)
    ng.load(target, [w])
    np.testing.assert_array_equal(w.value, 7.0)


def test_temp_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".nngraph-save-{dead}-abc123.npz.tmp"
    stale.write_bytes(b"x" * 1000)
    alive = tmp_path / f".nngraph-save-{os.getppid()}-def456.npz.tmp"   # a save in progress elsewhere
    alive.write_bytes(b"y")
    other = tmp_path / "keep.tmp"
    other.write_bytes(b"z")
    ng.save(tmp_path / "m.npz", [ng.parameter(np.ones(3, np.float32), name="w")])
    assert not stale.exists() and alive.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "keep.tmp", "m.npz"])


def test_loading_a_npy_or_a_text_file_says_what_the_file_is(tmp_path):
    w = ng.parameter(np.ones(3, np.float32), name="w")
    np.save(tmp_path / "a.npy", np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"a\.npy is a single NumPy array \(\.npy\); expected a \.npz"):
        ng.load(tmp_path / "a.npy", [w])
    (tmp_path / "t.txt").write_text("w = 1, 2, 3\n")
    with pytest.raises(ValueError, match=r"t\.txt is a text file \(it starts with 'w = 1, 2'\); expected a \.npz"):
        ng.load(tmp_path / "t.txt", [w])

"""model.save / ng.nn.load_model: architecture as data, weights, optimizer state;
training continues bit for bit; unbuilt models; no pickle anywhere."""
import json
import zipfile

import numpy as np
import pytest

import nngraph as ng
from blobs import blobs

TARGETS = ["reference", "cpu"]


def _blobs(n=96, seed=0):
    return blobs(n, seed)


def _sequential():
    return ng.nn.Sequential([ng.nn.Dense(8, activation="relu", kernel_regularizer=ng.nn.l2(1e-3), seed=1),
                             ng.nn.BatchNorm(), ng.nn.Dense(3, seed=2)], input_shape=(4,))


def _functional():
    a = ng.nn.Input((4,), name="a")
    h1 = ng.nn.Dense(8, activation="tanh", seed=3)(a)
    h = ng.nn.Dense(8, activation="relu", seed=4)(a) + h1 * 0.5  # a plain op and a constant between layers
    return ng.nn.Model(a, [ng.nn.Dense(3, name="cls", seed=5)(h), ng.nn.Dense(1, name="aux", seed=6)(h)])


class Net(ng.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.blocks = [ng.nn.Dense(width, activation="tanh", seed=7), ng.nn.Dense(3, seed=8)]

    def forward(self, x, training=False):
        for b in self.blocks:
            x = b(x)
        return x


def _compile(model, tgt):
    if model.__class__ is ng.nn.Model:
        model.compile(ng.optim.Adam(0.01, clipnorm=1.0), loss={"cls": "sparse_categorical_crossentropy",
                      "aux": "mse"}, loss_weights=[1.0, 0.3], metrics={"cls": "accuracy"}, target=tgt)
    else:
        model.compile(ng.optim.SGD(ng.optim.StepDecay(0.1, 0.5, 1), momentum=0.9, nesterov=True),
                      "sparse_categorical_crossentropy", ["accuracy"], target=tgt)


def _targets(model, y):
    return [y, (y == 1).astype(np.float32)[:, None]] if model.__class__ is ng.nn.Model else y


@pytest.mark.parametrize("tgt", TARGETS)
@pytest.mark.parametrize("make", [_sequential, _functional, lambda: Net(6)], ids=["sequential", "functional", "module"])
def test_load_model_continues_training_bit_for_bit(tmp_path, make, tgt):
    X, y = _blobs()
    straight, resumed = make(), make()
    for m in (straight, resumed):
        _compile(m, tgt)
    straight.fit(X, _targets(straight, y), epochs=2, batch_size=16, verbose=0)
    resumed.fit(X, _targets(resumed, y), epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "model.npz"
    resumed.save(path)
    loaded = ng.nn.load_model(path, custom_objects={"Net": Net})
    assert type(loaded) is type(resumed) and loaded.epochs_done == 1
    assert list(loaded.state_dict()) == list(resumed.state_dict())
    for k, p in resumed.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k].value, p.value)
    loaded.fit(X, _targets(loaded, y), epochs=1, batch_size=16, verbose=0)
    for k, p in straight.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k].value, p.value, err_msg=k)
    assert float(loaded.optimizer.iterations.value) == float(straight.optimizer.iterations.value)


def _set_random_counter(value):
    counter = ng.ops.random.step_counter()
    counter.value = np.asarray(value, counter.value.dtype)


@pytest.mark.parametrize("tgt", TARGETS)
def test_load_model_with_dropout_continues_bit_for_bit(tmp_path, tgt):
    """The dropout masks are keyed by the process-wide random-op counter: the file
    holds it, and load_model sets it, whatever the process did in between."""
    X, y = _blobs()

    def make():
        m = ng.nn.Sequential([ng.nn.Dense(8, activation="relu", seed=1), ng.nn.Dropout(0.5, seed=12),
                              ng.nn.Dense(3, seed=2)], input_shape=(4,))
        _compile(m, tgt)
        return m

    straight, resumed = make(), make()
    _set_random_counter(100)
    straight.fit(X, y, epochs=2, batch_size=16, verbose=0)
    _set_random_counter(100)
    resumed.fit(X, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "model.npz"
    resumed.save(path)
    _set_random_counter(7)  # what a fresh process, or other models' steps, would leave
    loaded = ng.nn.load_model(path)
    assert int(ng.ops.random.step_counter().value) == 100 + 6
    loaded.fit(X, y, epochs=1, batch_size=16, verbose=0)
    for k, p in straight.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k].value, p.value, err_msg=k)


def test_the_file_is_json_and_npy_without_pickle(tmp_path):
    X, y = _blobs(32)
    m = _functional()
    _compile(m, "reference")
    m.fit(X, _targets(m, y), epochs=1, verbose=0)
    path = tmp_path / "m.npz"
    m.save(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert all(n.endswith(".npy") for n in names)
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["model.json"].tobytes())
        assert any(k.startswith("optimizer/m/") for k in f.files)
    assert meta["architecture"]["kind"] == "functional"
    assert meta["compile"]["optimizer"] == {"class": "Adam", "kwargs": {
        "lr": pytest.approx(0.01), "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "clipnorm": 1.0}}
    assert [n.get("op") for n in meta["architecture"]["nodes"] if "op" in n] == ["constant", "mul", "add"]


def test_saving_an_unbuilt_model_is_an_error_and_writes_nothing(tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match="not exist yet"):
        ng.nn.Sequential([ng.nn.Dense(3)]).save(path)
    with pytest.raises(ValueError, match="not exist yet"):
        Net(4).save(path)
    assert not path.exists()


def test_load_into_an_unbuilt_model_builds_it_or_says_what_it_needs(tmp_path):
    X, y = _blobs(32)
    a = ng.nn.Sequential([ng.nn.Dense(5, seed=0), ng.nn.Dense(3, seed=1)], input_shape=(4,))
    a.compile("sgd", target="reference")
    full, weights = tmp_path / "full.npz", tmp_path / "weights.npz"
    a.save(full)
    a.save_weights(weights)
    b = ng.nn.Sequential([ng.nn.Dense(5), ng.nn.Dense(3)])  # no input_shape: unbuilt
    b.load(full)  # the model file knows the input shape
    np.testing.assert_array_equal(b.predict(X), a.predict(X))
    c = ng.nn.Sequential([ng.nn.Dense(5), ng.nn.Dense(3)])
    with pytest.raises(ValueError, match="build"):
        c.load(weights)
    c.build((None, 4))
    c.load(weights)
    np.testing.assert_array_equal(c.predict(X), a.predict(X))
    n = Net(4)
    n.build((None, 4))
    n.save(full)
    fresh = Net(4)
    fresh.load(full)
    np.testing.assert_array_equal(fresh.predict(X), n.predict(X))


def test_a_subclassed_model_needs_its_class(tmp_path):
    n = Net(4)
    n.build((None, 4))
    n.save(tmp_path / "n.npz")
    with pytest.raises(ValueError, match="custom_objects"):
        ng.nn.load_model(tmp_path / "n.npz")


def test_functions_cannot_be_saved_as_data(tmp_path):
    m = ng.nn.Sequential([ng.nn.Dense(3, activation=lambda x: x)], input_shape=(4,))
    m.compile("sgd", target="reference")
    with pytest.raises(ValueError, match="activation"):
        m.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


class Scale(ng.nn.Layer):
    """A custom layer with its own parameter and a sublayer."""

    def __init__(self, units, name=None):
        super().__init__(name)
        self.units = units
        self.inner = ng.nn.Dense(units, seed=9)

    def build(self, input_shape, rng):
        self.add_param("s", np.full(self.units, 2.0, np.float32))

    def forward(self, x, training):
        return self.inner(x) * self.params["s"]


def test_custom_layers_in_a_functional_model_load_with_custom_objects(tmp_path):
    X, y = _blobs(32)
    x = ng.nn.Input((4,), name="x")
    model = ng.nn.Model(x, ng.nn.Dense(3, seed=1)(Scale(5, name="scale")(x)))
    model.compile(ng.optim.RMSProp(0.01), "sparse_categorical_crossentropy", target="reference")
    model.fit(X, y, epochs=1, verbose=0)
    assert list(model.state_dict()) == ["0_scale.s", "0_scale.inner.W", "0_scale.inner.b", "1_dense.W", "1_dense.b"]
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="custom_objects=.*Scale"):
        ng.nn.load_model(tmp_path / "m.npz")
    loaded = ng.nn.load_model(tmp_path / "m.npz", custom_objects={"Scale": Scale})
    assert loaded.layers[0].name == "scale"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))

"""PyTorch-style modules and subclassed Models/Layers: what is assigned is found and
trained, the mode reaches the sublayers, a forward that trains nothing is warned."""
import warnings

import numpy as np
import pytest

import nngraph as ng
from blobs import blobs

TARGETS = ["reference", "cpu"]


def _blobs(n=120, seed=0):
    return blobs(n, seed)


class Nested(ng.nn.Module):
    """Layers in a list of lists, a dict, a plain parameter and a sub-module."""

    def __init__(self):
        super().__init__()
        self.stages = [[ng.nn.Dense(8, activation="tanh", seed=1)], [ng.nn.Dense(8, activation="relu", seed=2)]]
        self.heads = {"main": ng.nn.Dense(3, seed=3)}
        self.scale = ng.parameter(np.ones(3, np.float32), name="scale")
        self.drop = ng.nn.Dropout(0.5)

    def forward(self, x, training=False):
        for stage in self.stages:
            for layer in stage:
                x = layer(x)
        return self.heads["main"](self.drop(x)) * self.scale


@pytest.mark.parametrize("tgt", TARGETS)
def test_module_with_nested_lists_of_layers_trains_everything(tgt):
    X, y = _blobs()
    net = Nested()
    net.compile(ng.optim.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"], target=tgt)
    before = None
    hist = net.fit(X, y, epochs=8, batch_size=30, verbose=0)
    keys = list(net.state_dict())
    assert keys == ["stages.0.0.W", "stages.0.0.b", "stages.1.0.W", "stages.1.0.b", "heads.main.W",
                    "heads.main.b", "scale"]
    assert len(net.parameters()) == 7 and before is None
    assert hist["loss"][-1] < hist["loss"][0] * 0.5
    assert net.evaluate(X, y)["accuracy"] > 0.9
    assert not np.allclose(net.scale.value, 1.0)  # the bare parameter is trained too
    # training mode reaches the sublayers: dropout is in the training step only
    assert "uniform" in net.compiled("train", (("int32", ()),)).dump("graph")
    assert "uniform" not in net.compiled("predict").dump("graph")


def test_module_predict_equals_numpy_and_build_from_shape():
    net = Nested()
    net.build((None, 4))
    assert len(net.parameters()) == 7
    X, _ = _blobs(10)
    p = {k: v.value.astype(np.float64) for k, v in net.state_dict().items()}
    h = np.tanh(X @ p["stages.0.0.W"] + p["stages.0.0.b"])
    h = np.maximum(h @ p["stages.1.0.W"] + p["stages.1.0.b"], 0)
    want = (h @ p["heads.main.W"] + p["heads.main.b"]) * p["scale"]
    np.testing.assert_allclose(net.predict(X), want, rtol=1e-5, atol=1e-5)


def test_module_called_on_a_tensor_builds_the_graph():
    net = Nested()
    x = ng.placeholder((None, 4), name="x")
    out = net(x)
    assert tuple(out.shape[1:]) == (3,) and len(net.parameters()) == 7
    fn = ng.compile([x], out, target="reference")
    assert fn(np.zeros((2, 4), np.float32)).shape == (2, 3)


def test_keras_style_subclassed_model_with_call():
    class Classifier(ng.nn.Model):
        def __init__(self, units):
            super().__init__(name="clf")
            self.hidden = ng.nn.Dense(units, activation="relu")
            self.out = ng.nn.Dense(3)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    X, y = _blobs()
    model = Classifier(16)
    model.compile(ng.optim.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"], target="reference")
    model.fit(X, y, epochs=6, batch_size=30, verbose=0)
    assert model.evaluate(X, y)["accuracy"] > 0.9
    assert model.name == "clf" and len(model.layers) == 2


def test_module_without_super_init_still_works():
    class Forgetful(ng.nn.Module):
        def __init__(self):
            self.fc = ng.nn.Dense(3)

        def forward(self, x):
            return self.fc(x)

    X, y = _blobs(30)
    m = Forgetful()
    m.compile("adam", target="reference")
    m.fit(X, y, epochs=1, verbose=0)
    assert list(m.state_dict()) == ["fc.W", "fc.b"]


def test_forward_using_no_parameter_is_warned():
    class Empty(ng.nn.Module):
        def forward(self, x):
            return x * 2.0

    m = Empty()
    m.compile("sgd", "mse", target="reference")
    with pytest.warns(UserWarning, match="no trainable parameter"):
        m.predict(np.ones((2, 3), np.float32))


def test_layer_made_inside_forward_is_warned():
    class Careless(ng.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = ng.nn.Dense(4)

        def forward(self, x):
            return ng.nn.Dense(3, name="made_in_forward")(self.fc(x))

    with pytest.warns(UserWarning, match="made_in_forward"):
        Careless().build((None, 4))


def test_a_module_that_uses_its_parameters_is_not_warned():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Nested().build((None, 4))


def test_subclassed_layer_with_sublayers_inside_sequential():
    class Residual(ng.nn.Layer):
        def __init__(self, units, name=None):
            super().__init__(name)
            self.inner = ng.nn.Dense(units, activation="relu")
            self.outer = ng.nn.Dense(units)
            self.drop = ng.nn.Dropout(0.3)

        def forward(self, x, training):
            return x + self.outer(self.drop(self.inner(x)))

    X, y = _blobs()
    block = Residual(4)
    model = ng.nn.Sequential([block, ng.nn.Dense(3)], input_shape=(4,))
    model.compile(ng.optim.Adam(0.05), "cross_entropy", ["accuracy"], target="reference")
    model.fit(X, y, epochs=6, batch_size=30, verbose=0)
    assert set(model.state_dict()) == {"0_residual.inner.W", "0_residual.inner.b", "0_residual.outer.W",
                                       "0_residual.outer.b", "1_dense.W", "1_dense.b"}
    assert block.count_params() == 40 and model.evaluate(X, y)["accuracy"] > 0.9
    assert "uniform" in model.compiled("train").dump("graph")  # Residual passed its mode on
    assert "uniform" not in model.compiled("predict").dump("graph")


def test_plain_model_needs_inputs_and_outputs():
    with pytest.raises(TypeError, match="subclass ng.nn.Module"):
        ng.nn.Model()


def test_pytorch_habit_self_layers_list_with_regularizer():
    class Stack(ng.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [ng.nn.Dense(8, activation="relu", kernel_regularizer=ng.nn.l2(1e-3)), ng.nn.Dense(3)]

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    X, y = _blobs()
    m = Stack()
    m.compile(ng.optim.SGD(0.0), "sparse_categorical_crossentropy", target="reference")
    m.build((None, 4))
    assert list(m.state_dict()) == ["layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"]
    W = m.layers[0].params["W"].value.astype(np.float64)
    logits = m.predict(X).astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    ce = np.mean(lse - logits[np.arange(len(y)), y])
    # the training loss includes the penalty 1e-3 * sum(W^2) (lr 0: nothing moves)
    hist = m.fit(X, y, epochs=1, batch_size=len(y), shuffle=False, verbose=0)
    assert hist["loss"][0] == pytest.approx(ce + 1e-3 * np.sum(W * W), rel=1e-5)


def test_models_held_by_a_module_are_found_and_trained():
    x = ng.nn.Input((4,), name="x")
    encoder = ng.nn.Model(x, ng.nn.Dense(6, activation="tanh", seed=0)(x), name="encoder")

    class Wrapper(ng.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.head = ng.nn.Sequential([ng.nn.Dropout(0.2), ng.nn.Dense(3, seed=1)])

        def forward(self, x):
            return self.head(self.encoder(x))

    X, y = _blobs()
    w = Wrapper()
    w.compile(ng.optim.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"], target="reference")
    w0 = encoder.layers[0].params["W"].value.copy()
    w.fit(X, y, epochs=6, batch_size=30, verbose=0)
    assert list(w.state_dict()) == ["encoder.0_dense.W", "encoder.0_dense.b", "head.1_dense.W", "head.1_dense.b"]
    assert not np.allclose(encoder.layers[0].params["W"].value, w0) and w.evaluate(X, y)["accuracy"] > 0.9
    assert "uniform" in w.compiled("train", (("int32", ()),)).dump("graph")  # the held Sequential's dropout
    xs, out = encoder.forward(False)  # the graph in one mode, as before modules existed
    assert xs == [x] and tuple(out.shape[1:]) == (6,)


def test_calling_a_module_on_arrays_predicts():
    net = Nested()
    X, _ = _blobs(6)
    np.testing.assert_array_equal(net(X), net.predict(X))


def test_attribute_names_that_models_also_use_belong_to_the_user():
    class Named(ng.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [ng.nn.Dense(5)]
            self.output = ng.nn.Dense(3)

        def forward(self, x):
            return self.output(self.layers[0](x))

    X, y = _blobs(30)
    m = Named()
    m.compile("adam", target="reference")
    m.fit(X, y, verbose=0)
    assert list(m.state_dict()) == ["layers.0.W", "layers.0.b", "output.W", "output.b"]
    assert m.predict(X).shape == (30, 3)


def test_a_subclassed_layer_compiles_and_fits_on_its_own(tmp_path):
    class TwoLayer(ng.nn.Layer):
        def __init__(self, name=None):
            super().__init__(name)
            self.hidden = ng.nn.Dense(16, activation="relu", seed=0)
            self.out = ng.nn.Dense(3, seed=1)

        def forward(self, x, training):
            return self.out(self.hidden(x))

    X, y = _blobs()
    layer = TwoLayer()
    layer.compile(ng.optim.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"], target="reference")
    layer.fit(X, y, epochs=6, batch_size=30, verbose=0)
    assert layer.evaluate(X, y)["accuracy"] > 0.9 and layer.predict(X).shape == (120, 3)
    assert list(layer.named_parameters()) == ["hidden.W", "hidden.b", "out.W", "out.b"]
    layer.save(tmp_path / "layer.npz")
    again = ng.nn.load_model(tmp_path / "layer.npz", custom_objects={"TwoLayer": TwoLayer})
    np.testing.assert_array_equal(again.predict(X), layer.predict(X))


class _Small(ng.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = ng.nn.Dense(6, activation="tanh", seed=4), ng.nn.Dense(3, seed=5)

    def forward(self, x, training=False):
        return self.out(self.hidden(x))


@pytest.mark.parametrize("kind", ["generator", "list"])
def test_an_unbuilt_module_builds_from_the_first_batch(kind):
    """fit needs the graph (its score names) before a batch is trained on: an unbuilt
    model is built from the first batch, which is still trained on."""
    X, y = _blobs(96)

    def batches():
        return ((X[s:s + 32], y[s:s + 32]) for s in range(0, 96, 32))

    built, unbuilt = _Small(), _Small()
    built.build((None, 4))
    for m in (built, unbuilt):
        m.compile(ng.optim.SGD(0.1), "sparse_categorical_crossentropy", target="reference")
    data = (lambda: batches()) if kind == "generator" else (lambda: list(batches()))
    hb = built.fit(data(), epochs=1, verbose=0)
    hu = unbuilt.fit(data(), epochs=1, verbose=0)
    assert unbuilt.built and hu["loss"] == hb["loss"]
    for k, p in built.state_dict().items():
        np.testing.assert_array_equal(unbuilt.state_dict()[k].value, p.value, err_msg=k)
    fresh = _Small()
    fresh.compile("sgd", "sparse_categorical_crossentropy", target="reference")
    assert set(fresh.evaluate(data())) == {"loss"}
    seq = ng.nn.Sequential([ng.nn.Dense(3, seed=0)])  # no input_shape
    seq.compile("sgd", "sparse_categorical_crossentropy", target="reference")
    assert len(seq.fit(data(), epochs=1, verbose=0)["loss"]) == 1

"""Embedding: rows of the table for integer ids of any shape (dynamic sequence
length), its gradient (a scatter-add: repeated ids add up) against NumPy and PyTorch,
and the errors of bad ids and non-integer inputs."""
import numpy as np
import pytest

import nngraph as ng

import helpers

IDS = np.array([[1, 2, 1, 6], [6, 0, 1, 1]], np.int32)   # id 1 four times, 6 twice; 3, 4, 5 unused


def _layer_and_graph(seed=0):
    ids = ng.placeholder(("N", "T"), "int32", name="ids")
    layer = ng.nn.Embedding(7, 3, seed=seed)
    return ids, layer, layer(ids)


def test_embedding_rows_for_every_sequence_length_from_one_compile(target):
    ids, layer, y = _layer_and_graph()
    assert layer.embeddings.value.shape == (7, 3) and y.shape[2] == 3
    fn = helpers.compile([ids], y, target=target)
    table = layer.embeddings.value
    for arr in (IDS, IDS[:, :1], np.array([[5, 4, 3, 2, 1, 0]], np.int32)):
        np.testing.assert_array_equal(fn(arr), table[arr])


def test_embedding_gradient_adds_up_repeated_ids(target):
    ids, layer, y = _layer_and_graph(1)
    up = ng.placeholder(("N", "T", 3), name="up")
    (g,) = ng.grad(ng.sum(y * up), [layer.embeddings])
    U = helpers.rand((2, 4, 3), 2, "float32")
    got = helpers.compile([ids, up], g, target=target)(IDS, U)
    expected = np.zeros((7, 3), np.float32)
    np.add.at(expected, IDS.reshape(-1), U.reshape(-1, 3))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert np.all(got[[3, 4, 5]] == 0) and not np.allclose(got[1], U[0, 0])  # unused rows; row 1 summed


def test_embedding_matches_pytorch_and_trains(target):
    torch = pytest.importorskip("torch")
    ids, layer, y = _layer_and_graph(2)
    loss = ng.sum(ng.tanh(y) ** 2)
    (g,) = ng.grad(loss, [layer.embeddings])
    step = helpers.compile([ids], loss, target=target, updates={layer.embeddings: layer.embeddings - 0.05 * g})
    ref = torch.nn.Embedding(7, 3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.embeddings.value))
    tl = (torch.tanh(ref(torch.tensor(IDS, dtype=torch.long))) ** 2).sum()
    tl.backward()
    first = float(step(IDS))
    np.testing.assert_allclose(first, tl.item(), rtol=1e-5)
    np.testing.assert_allclose(layer.embeddings.value, (ref.weight - 0.05 * ref.weight.grad).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert float(step(IDS)) < first


def test_embedding_id_out_of_range_is_an_input_error(target):
    if target == "oracle":
        pytest.skip("the index check is added by ng.compile; the oracle runs the graph as built")
    ids, layer, y = _layer_and_graph()
    loss = ng.sum(y ** 2)
    fn = helpers.compile([ids], loss, target=target,
                         updates={layer.embeddings: layer.embeddings - ng.grad(loss, layer.embeddings)})
    before = layer.embeddings.value.copy()
    with pytest.raises(ng.InputError):
        fn(np.array([[0, 7]], np.int32))
    np.testing.assert_array_equal(layer.embeddings.value, before)


def test_embedding_of_float_input_names_it():
    x = ng.placeholder(("N", 5), name="tokens")
    with pytest.raises(ng.ShapeError, match=r"integer token ids.*tokens.*f32\[N,5\]"):
        ng.nn.Embedding(10, 4)(x)
    with pytest.raises(ValueError, match="vocab and dim must be >= 1"):
        ng.nn.Embedding(0, 4)


def test_embedding_in_a_sequential_model_trains():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 10, (64, 6)).astype(np.int32)
    y = (X[:, 0] % 2).astype(np.int32)           # the parity of the first token
    model = ng.nn.Sequential([ng.nn.Embedding(10, 8, seed=0), ng.nn.Flatten(), ng.nn.Dense(2)],
                             input_shape=(6,), input_dtype="int32")
    model.compile(ng.optim.Adam(0.05), "sparse_categorical_crossentropy", target="reference")
    hist = model.fit(X, y, epochs=5, batch_size=16, verbose=0)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]

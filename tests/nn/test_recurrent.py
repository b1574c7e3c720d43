"""SimpleRNN, LSTM and GRU against torch.nn.RNN / LSTM / GRU with copied weights:
outputs (every step and the last), the gradients of every weight and of the
inputs, a given initial state; one compile for several sequence lengths; the
layers inside a Sequential (Embedding -> LSTM -> Dense) that trains; bad inputs."""
import numpy as np
import pytest

import nngraph as ng

import helpers
from scan_models import lstm_sgd_step

N, T, F, H = 3, 5, 4, 6
TORCH = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def _torch_layer(torch, layer):
    """The torch module holding `layer`'s weights (kernel = weight_ih_l0.T, ...); the
    bias goes to bias_ih_l0 and, for GRU, recurrent_bias to bias_hh_l0 (else zero)."""
    kind = type(layer).__name__
    ref = getattr(torch.nn, TORCH[kind])(F, H, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.tensor(layer.kernel.value.T))
        ref.weight_hh_l0.copy_(torch.tensor(layer.recurrent_kernel.value.T))
        ref.bias_ih_l0.copy_(torch.tensor(layer.bias.value))
        rb = layer.recurrent_bias.value if kind == "GRU" else np.zeros_like(layer.bias.value)
        ref.bias_hh_l0.copy_(torch.tensor(rb))
    return ref


def _randomise(layer, rng):
    """Weights of a useful scale (and non-zero biases) so that every gate matters."""
    for p in layer.params.values():
        p.value = rng.uniform(-0.6, 0.6, p.value.shape).astype(np.float32)


def _states(kind, rng):
    n_states = 2 if kind == "LSTM" else 1
    return [rng.standard_normal((N, H)).astype(np.float32) for _ in range(n_states)]


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("sequences", [True, False])
def test_recurrent_layer_matches_pytorch(target, kind, sequences):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(["SimpleRNN", "LSTM", "GRU"].index(kind))
    layer = getattr(ng.nn, kind)(H, return_sequences=sequences, seed=0)
    x = ng.placeholder(("N", "T", F), name="x")
    S = _states(kind, rng) if sequences else []        # a given initial state in half the cases
    s_in = [ng.placeholder(("N", H), name=f"s{i}") for i in range(len(S))]
    y = layer(x, initial_state=s_in or None)
    _randomise(layer, rng)
    u = ng.placeholder(y.shape, name="up")
    weights = ["kernel", "recurrent_kernel", "bias"] + (["recurrent_bias"] if kind == "GRU" else [])
    grads = ng.grad(ng.sum(y * u), [x] + s_in + [getattr(layer, w) for w in weights])
    X = rng.standard_normal((N, T, F)).astype(np.float32)
    U = rng.standard_normal((N, T, H) if sequences else (N, H)).astype(np.float32)
    got = helpers.compile([x] + s_in + [u], [y] + grads, target=target)(X, *S, U)

    ref = _torch_layer(torch, layer)
    tx = torch.tensor(X, requires_grad=True)
    ts = [torch.tensor(s[None], requires_grad=True) for s in S]
    state = (tuple(ts) if kind == "LSTM" else ts[0]) if ts else None
    seq, _ = ref(tx, state)
    ty = seq if sequences else seq[:, -1]
    (ty * torch.tensor(U)).sum().backward()
    expected = [ty.detach().numpy(), tx.grad.numpy()] + [s.grad.numpy()[0] for s in ts]
    expected += [ref.weight_ih_l0.grad.numpy().T, ref.weight_hh_l0.grad.numpy().T, ref.bias_ih_l0.grad.numpy()]
    if kind == "GRU":
        expected.append(ref.bias_hh_l0.grad.numpy())
    names = ["y", "dx"] + [f"ds{i}" for i in range(len(S))] + [f"d{w}" for w in weights]
    assert len(got) == len(expected)
    for name, a, b in zip(names, got, expected):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=f"{kind} {name}")


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_one_compile_serves_every_length(target, kind):
    torch = pytest.importorskip("torch")
    layer = getattr(ng.nn, kind)(H, return_sequences=True, seed=1)
    x = ng.placeholder(("N", "T", F), name="x")
    fn = helpers.compile([x], [layer(x), ng.nn.SimpleRNN(3, seed=2)(x)], target=target)
    ref = _torch_layer(torch, layer)
    for steps in (1, 2, 9):
        X = helpers.rand((2, steps, F), steps, "float32")
        np.testing.assert_allclose(fn(X)[0], ref(torch.tensor(X))[0].detach().numpy(), rtol=1e-4, atol=1e-5)
    seq, last = fn(np.zeros((2, 0, F), np.float32))      # no steps: no outputs, the zero initial state
    assert seq.shape == (2, 0, H) and last.shape == (2, 3) and not last.any()


def test_lstm_weights_and_initial_state_as_attributes():
    lstm = ng.nn.LSTM(H, seed=0)
    x = ng.placeholder(("N", "T", F), name="x")
    h0 = ng.placeholder(("N", H), name="h0")
    c0 = ng.placeholder(("N", H), name="c0")
    lstm.initial_state = (h0, c0)
    y = lstm(x)
    assert lstm.kernel.value.shape == (F, 4 * H) and lstm.recurrent_kernel.value.shape == (H, 4 * H)
    assert lstm.bias.value.shape == (4 * H,)
    np.testing.assert_array_equal(lstm.bias.value[H:2 * H], 1.0)   # unit forget bias
    q = lstm.recurrent_kernel.value[:, :H].astype(np.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(H), atol=1e-5)       # orthogonal recurrent blocks
    fn = helpers.compile([x, h0, c0], y, target="reference")
    X = helpers.rand((2, 3, F), 0, "float32")
    H0, C0 = helpers.rand((2, H), 1, "float32"), helpers.rand((2, H), 2, "float32")
    assert not np.allclose(fn(X, H0, C0), fn(X, 0 * H0, 0 * C0))
    gru = ng.nn.GRU(H)
    with pytest.raises(AttributeError, match="exist once it has been called"):
        gru.kernel


def _lstm_training_step(batch_first: bool):
    """The compiled SGD step of an LSTM(H) on x [N, T, F] (or [T, N, F] with the cell in
    ng.scan), then Dense(3) and cross-entropy (scan_models.lstm_sgd_step)."""
    loss, updates, inputs, _, _ = lstm_sgd_step(batch_first)
    return helpers.compile(inputs, loss, updates=updates, target="reference")


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_training_step_memory_per_step(batch_first):
    """What one more step costs in the work buffer (fn.stats()["peak_bytes"], exact), and
    the kernels of each step: per sequence, one [4H] stack that holds the input
    projection, then the gates i, f, g, o (each step writes them over the projection
    it read), then their gradient (each backward step writes it over the gates it
    read); c[t-1] [H], over which the backward step writes h[t] = o[t]·tanh(c[t]) (c[t]
    and tanh(c[t]) computed again), shifted after the loop into h[t-1] over itself for
    the product of the recurrent kernel's gradient: h[t-1] is not stored. The layer
    makes its time-first copy of x [F] twice, for the input projection and again for
    the kernel's gradient after the backward loop (passes/remat.py), each over the
    region of a dead [H] stack (F <= H): nothing more per step, the issue's bound of 5H."""
    fn = _lstm_training_step(batch_first)
    n, peaks = 4, []
    # long enough that every [T, N, H] stack is larger than the weight gradients the
    # plan puts in its slot once it is dead (passes/memory.py)
    for steps in (10, 14):
        shape = (n, steps, F) if batch_first else (steps, n, F)
        fn(helpers.rand(shape, steps, "float32"), np.arange(n, dtype=np.int32) % 3)
        peaks.append(fn.stats()["peak_bytes"])
    per_step = (peaks[1] - peaks[0]) // 4
    assert per_step == n * 5 * H * 4
    heads = [line for line in fn.dump("kernels").splitlines() if line.startswith("kernel")]
    # the layer's x made time first, before the forward loop and again after the
    # backward one (read transposed by the kernel's gradient, the last kernel); both
    # weight gradients one product over all steps
    assert [h.split(" over ")[1].split()[0] for h in heads if " over [T" in h] == (["[T,N,4]"] * 2 if batch_first else [])
    assert not batch_first or "_again" in heads[-1] and "(k=T*N)" in heads[-1]
    assert sum("(k=T*N)" in h for h in heads) == 2
    # per step: the recurrent product and one pointwise kernel each way; the backward's
    # writes the four gates' gradients and h[t] in one pass over [N, H] (a
    # concatenation); then the copy that shifts h by one step
    loops = fn.stats()["loops"]
    assert [lp["kernels_per_step"] for lp in loops] == [2, 2, 1]
    assert loops[1]["body"][0].startswith("k0_concatenate")
    # the dump names the stacks written over others: gates over projection, dz over
    # gates and h[t] over c[t-1]; the shifted h[t-1] over h[t]
    assert [len(lp["in place"]) for lp in loops] == [1, 2, 1]
    gates = loops[0]["in place"][0].split(" over ")[0]
    dz_over, h_over = sorted(loops[1]["in place"], key=lambda p: p.split(" over ")[1] != gates)
    assert dz_over.split(" over ")[1] == gates
    assert loops[2]["in place"][0].split(" over ")[1] == h_over.split(" over ")[0]


def test_recurrent_layers_explain_bad_inputs():
    lstm = ng.nn.LSTM(H)
    with pytest.raises(ng.ShapeError, match=r"takes \[batch, time, features\].*x2.*f32\[N,4\]"):
        lstm(ng.placeholder(("N", F), name="x2"))
    x = ng.placeholder(("N", "T", F), name="x")
    with pytest.raises(ng.ShapeError, match=r"2 tensor\(s\) \(h, c\), got 1"):
        lstm(x, initial_state=ng.placeholder(("N", H)))
    with pytest.raises(ng.ShapeError, match=r"initial state h must be f32\[N,6\].*f32\[N,5\]"):
        ng.nn.GRU(H)(x, initial_state=ng.placeholder(("N", 5), name="h0"))
    with pytest.raises(ValueError, match="units must be >= 1"):
        ng.nn.SimpleRNN(0)


@pytest.mark.parametrize("tgt", ["reference", "cpu"])
def test_embedding_lstm_dense_sequential_trains(tgt):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 8, (96, 7)).astype(np.int32)
    y = (X == 3).any(axis=1).astype(np.int32)          # did token 3 occur anywhere?
    model = ng.nn.Sequential([ng.nn.Embedding(8, 8, seed=0), ng.nn.LSTM(12, seed=1), ng.nn.Dense(2, seed=2)],
                             input_shape=(7,), input_dtype="int32")
    model.compile(ng.optim.Adam(0.03), "sparse_categorical_crossentropy", metrics=["accuracy"], target=tgt)
    hist = model.fit(X, y, epochs=6, batch_size=16, verbose=0)
    assert hist["loss"][-1] < 0.6 * hist["loss"][0]
    assert hist["accuracy"][-1] > 0.8


def test_functional_model_with_an_initial_state_input_trains_and_saves(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((48, 5, F)).astype(np.float32)
    S0 = rng.standard_normal((48, H)).astype(np.float32)
    Y = (X.sum(axis=(1, 2)) + S0.sum(axis=1) > 0).astype(np.int32)     # needs the given state too
    x, h0 = ng.nn.Input((5, F), name="x"), ng.nn.Input((H,), name="h0")
    out = ng.nn.Dense(2, name="head", seed=1)(ng.nn.GRU(H, name="gru", seed=0)(x, initial_state=h0))
    model = ng.nn.Model([x, h0], out)
    assert [layer.name for layer in model.layers] == ["gru", "head"]
    model.compile(ng.optim.Adam(0.03), "sparse_categorical_crossentropy", target="reference")
    hist = model.fit([X, S0], Y, epochs=5, batch_size=16, verbose=0)
    assert hist["loss"][-1] < 0.7 * hist["loss"][0]
    model.save(str(tmp_path / "gru.npz"))
    back = ng.nn.load_model(str(tmp_path / "gru.npz"))
    np.testing.assert_allclose(back.predict([X, S0]), model.predict([X, S0]), rtol=1e-5, atol=1e-6)

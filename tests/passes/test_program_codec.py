"""A Program through passes/program_codec.py (JSON + raw arrays, what the compile cache
stores) comes back equal: the same kernels, buffers, constants (bit for bit, NaN and
infinities included), memory plan and stats; a value of a foreign type is refused."""
import json

import numpy as np
import pytest

import nngraph as ng
from passes.lowering import to_program
from passes.pipeline import optimize
from passes.program import format_program
from passes.program_codec import CodecError, decode_program, encode_program


def _program(outputs, inputs, updates=None):
    fn = ng.compile(inputs, outputs, updates=updates, target="reference")
    opt, _ = optimize(fn.graph)
    return to_program(opt)


def _round_trip(p):
    data, arrays = encode_program(p)
    # what an entry holds: JSON text and the arrays' raw bytes
    raw = [np.frombuffer(a.tobytes(), np.uint8) for a in arrays]
    return decode_program(json.loads(json.dumps(data)), raw)


def _assert_same(p, q):
    assert format_program(q) == format_program(p)
    assert q.schedule == p.schedule
    assert q.plan == p.plan and q.inputs == p.inputs and q.params == p.params
    assert q.outputs == p.outputs and q.updates == p.updates and q.stats == p.stats
    assert q.nodes is None
    for b, buf in p.buffers.items():
        other = q.buffers[b]
        assert (other.id, other.name, other.dtype, other.shape, other.kind, other.param, other.source,
                other.view_of) == (buf.id, buf.name, buf.dtype, buf.shape, buf.kind, buf.param, buf.source,
                                   buf.view_of)
        if buf.value is not None:
            assert other.value.dtype == buf.value.dtype and other.value.shape == buf.value.shape
            assert other.value.tobytes() == np.asarray(buf.value).tobytes()


def test_training_step_with_convolutions_round_trips():
    rng = np.random.default_rng(0)
    x = ng.placeholder(("N", 1, 8, 8), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    w = ng.parameter(rng.standard_normal((3, 1, 3, 3)).astype(np.float32), name="w")
    v = ng.parameter(rng.standard_normal((48, 4)).astype(np.float32), name="v")
    h = ng.max_pool2d(ng.relu(ng.conv2d(x, w, padding=1)), 2)
    loss = ng.cross_entropy(ng.reshape(h, (x.shape[0], 48)) @ v, y)
    gw, gv = ng.grad(loss, [w, v])
    p = _program(loss, [x, y], {w: w - 0.1 * gw, v: v - 0.1 * gv})
    _assert_same(p, _round_trip(p))


def test_constants_of_every_dtype_and_special_values_round_trip():
    x = ng.placeholder((5,), name="x")
    i = ng.placeholder((5,), "int32", name="i")
    c = ng.constant(np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45], np.float32))
    d = ng.constant(np.arange(5, dtype=np.int32) * 7)
    p = _program([x * c + 0.1, i + d], [x, i])
    q = _round_trip(p)
    _assert_same(p, q)


def test_a_value_of_a_foreign_type_is_refused():
    x = ng.placeholder((3,), name="x")
    p = _program(ng.exp(x), [x])
    p.stats["odd"] = object()
    with pytest.raises(CodecError, match="object"):
        encode_program(p)


@pytest.mark.parametrize("name", ["os:system", "builtins:eval", "passes.program:format_program",
                                  "nngraph.typesx:Dim", "passes.program:Program.kernel_count"])
def test_decoding_builds_only_the_projects_data_classes(name):
    x = ng.placeholder((3,), name="x")
    data, arrays = encode_program(_program(ng.exp(x), [x]))
    data["program"]["schedule"][0]["dc"] = name
    with pytest.raises(CodecError):
        decode_program(data, arrays)


def test_malformed_data_is_a_codec_error():
    with pytest.raises(CodecError):
        decode_program({"program": {"buffers": {"d": [[0, {"dc": "passes.program:Buffer", "fields": {}}]]}}}, [])
    with pytest.raises(CodecError):
        decode_program({}, [])

"""ng.all_reduce in one process: the identity on every target, its type rule, vjp,
textual IR, and how the lowering packs independent all-reduces into one buffer.
The two-process behaviour is tested under mpiexec (tests/distributed/)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nngraph as ng
from helpers import assert_roundtrip, check_grad, compile, rand

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPU_TARGETS = ["oracle", "reference", "cpu"]


@pytest.mark.parametrize("backend", CPU_TARGETS)
@pytest.mark.parametrize("op", ["mean", "sum"])
def test_all_reduce_is_the_identity_in_one_process(backend, op):
    x = ng.placeholder(("N", 3), name="x")
    fn = compile([x], ng.all_reduce(x * 2.0, op), target=backend)
    a = rand((4, 3), seed=1, dtype="float32")
    np.testing.assert_array_equal(fn(a), a * 2.0)


@pytest.mark.parametrize("backend", CPU_TARGETS)
def test_all_reduce_gradient_by_finite_differences(backend):
    check_grad(lambda a, b: ng.all_reduce(ng.tanh(a) * b, "mean") * ng.all_reduce(a, "sum"),
               [rand((3, 4), 1), rand((3, 4), 2)], backend)


def test_vjp_is_all_reduce_of_the_cotangent():
    x = ng.placeholder((2, 3), name="x")
    (g,) = ng.grad(ng.all_reduce(x, "sum").sum(), [x])
    ops = [n for n in ng.Graph([x], [g]).nodes() if n.op == "all_reduce"]
    assert len(ops) == 1 and ops[0].attrs["reduce"] == "sum"


def test_type_rule_names_operand_and_rule():
    x = ng.placeholder((2,), name="x")
    with pytest.raises(ng.ShapeError, match=r"all_reduce: op must be one of 'mean', 'sum', got 'max'.*x: f32\[2\]"):
        ng.all_reduce(x, "max")
    with pytest.raises(ng.ShapeError, match=r"all_reduce: needs a float tensor, got dtype int32"):
        ng.all_reduce(ng.placeholder((2,), "int32", name="i"))


def test_textual_ir_round_trip():
    x = ng.placeholder(("N", 3), name="x")
    text = assert_roundtrip(ng.Graph([x], [ng.all_reduce(x, "sum")]))
    assert '= all_reduce %x {reduce="sum"} : f32[N,3]' in text


def test_constant_is_not_folded():
    fn = ng.compile([], ng.all_reduce(ng.constant(np.ones(3, np.float32))), target="reference")
    assert "all_reduce" in fn.dump("opt")


def _mlp_step(target):
    x = ng.placeholder(("N", 5), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W1 = ng.parameter(rand((5, 7), 1, "float32"), name="W1")
    b1 = ng.parameter(np.zeros(7, np.float32), name="b1")
    W2 = ng.parameter(rand((7, 3), 2, "float32"), name="W2")
    params = [W1, b1, W2]
    loss = ng.cross_entropy(ng.relu(x @ W1 + b1) @ W2, y)
    grads = [ng.all_reduce(g) for g in ng.grad(loss, params)]
    ups = {p: p - 0.1 * g for p, g in zip(params, grads)}
    return ng.compile([x, y], ng.all_reduce(loss), updates=ups, target=target), params


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_independent_all_reduces_share_one_packed_buffer(backend):
    fn, params = _mlp_step(backend)
    st = fn.stats()["all_reduce"]
    assert st["calls"] == 1
    (buf,) = st["buffers"]
    assert buf["elements"] == 1 + sum(p.value.size for p in params) and buf["ranks"] == 1
    offsets = [(v["offset"], v["elements"]) for v in buf["values"]]
    assert sorted(offsets) == offsets and all(a + n == b for (a, n), (b, _) in zip(offsets, offsets[1:]))
    text = fn.dump("kernels")
    assert text.count("all_reduce start sum @allreduce_sum <- @allreduce_pack over 1 process") == 1
    x, y = rand((6, 5), 3, "float32"), np.array([0, 1, 2, 0, 1, 2], np.int32)
    before = [p.value.copy() for p in params]
    plain = _plain_step(before)
    np.testing.assert_allclose(fn(x, y), plain(x, y), rtol=1e-6)
    np.testing.assert_allclose(params[0].value, plain.params[0].value, rtol=1e-6)


def _plain_step(values):
    x = ng.placeholder(("N", 5), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    params = [ng.parameter(v) for v in values]
    W1, b1, W2 = params
    loss = ng.cross_entropy(ng.relu(x @ W1 + b1) @ W2, y)
    ups = {p: p - 0.1 * g for p, g in zip(params, ng.grad(loss, params))}
    return ng.compile([x, y], loss, updates=ups, target="cpu")


def test_dependent_all_reduces_get_one_call_per_phase():
    x = ng.placeholder((4, 3), name="x")
    m = ng.all_reduce(x.mean(axis=0))
    v = ng.all_reduce(((x - m) ** 2).mean(axis=0))      # needs m: a second phase
    s = ng.all_reduce(x.sum())                          # independent of m: first phase
    fn = ng.compile([x], [v, s], target="cpu")
    st = fn.stats()["all_reduce"]
    assert st["calls"] == 2
    assert [len(b["values"]) for b in st["buffers"]] == [2, 1]
    a = rand((4, 3), 5, "float32")
    got_v, got_s = fn(a)
    np.testing.assert_allclose(got_v, a.var(axis=0), rtol=1e-5)
    np.testing.assert_allclose(got_s, a.sum(), rtol=1e-5)


def test_symbolic_shape_gets_its_own_bucket():
    x = ng.placeholder(("N", 2), name="x")
    fn = ng.compile([x], [ng.all_reduce(x), ng.all_reduce(x.sum())], target="cpu")
    sizes = sorted(str(b["elements"]) for b in fn.stats()["all_reduce"]["buffers"])
    assert sizes == ["1", "N*2"]


def test_gpu_target_runs_the_packed_step_like_the_cpu():
    """target="gpu" (Triton's interpreter here) runs the AllReduceKernel (a device copy
    in one process) over the same in-place packed buffers as the CPU."""
    from gpu_skip import require_gpu_target
    require_gpu_target()
    x, y = rand((6, 5), 3, "float32"), np.array([0, 1, 2, 0, 1, 2], np.int32)
    gpu, gpu_params = _mlp_step("gpu")
    cpu, cpu_params = _mlp_step("cpu")
    assert "def all_reduce_start(name, send, recv, ranks)" in gpu.dump("triton")
    assert gpu.stats()["all_reduce"] == cpu.stats()["all_reduce"]
    for _ in range(2):
        np.testing.assert_allclose(gpu(x, y), cpu(x, y), rtol=1e-5)
    for p, q in zip(gpu_params, cpu_params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-7)


def test_gradients_are_written_into_the_packed_buffer_by_their_own_kernels():
    """The memory layout packs them: the matmul writing dW1 and dW2 and the reduction
    writing db1 store into their parts of the send buffer; only the loss (an elementwise
    value nothing else materialises) is computed into its part by the pack kernel, and
    the updates read the reduced values in place (no unpack kernel but the output's)."""
    fn, params = _mlp_step("cpu")
    values = fn.stats()["all_reduce"]["buffers"][0]["values"]
    assert {v["value"].split("@")[0]: v["in_place"] for v in values} == {
        "all_reduce:f32[]": False, "all_reduce:f32[5,7]": True, "all_reduce:f32[7]": True,
        "all_reduce:f32[7,3]": True}
    assert fn.dump("kernels").count("(written in place)") == 3
    prog = fn.runner.program
    pack = next(b for b in prog.buffers.values() if b.name == "allreduce_pack")
    parts = sorted((b.offset, b.shape) for b in prog.buffers.values() if b.view_of == pack.id)
    ends = [off + int(np.prod(shape, dtype=np.int64)) for off, shape in parts]
    assert [off for off, _ in parts] == [0] + ends[:-1] and ends[-1] == pack.shape[0] == 64
    matmuls = [k for k in prog.schedule if type(k).__name__ == "MatmulKernel"]
    assert sum(prog.root(k.out) == pack.id for k in matmuls) == 2
    loops = [k for k in prog.schedule if type(k).__name__ == "LoopKernel"]
    stores = [prog.root(st.buffer) for k in loops for s in k.stages for st in s.stores]
    assert stores.count(pack.id) == 2          # db1 by its reduction, the loss by the pack kernel


def test_a_mean_in_a_job_is_a_sum_whose_scale_fuses_into_its_consumer(monkeypatch):
    """Compiled as one rank of four (the lowering reads the world size when it runs),
    all_reduce(g, mean) becomes all_reduce(g, sum) * 0.25 after the passes, and the
    SGD step reads the sum in place from the receive buffer."""
    from nngraph import distributed
    from passes.pipeline import optimize
    from passes.lowering import to_program
    monkeypatch.setattr(distributed, "size", lambda: 4)
    W = ng.parameter(rand((3, 2), 1, "float32"), name="W")
    x = ng.placeholder(("N", 3), name="x")
    (g,) = ng.grad(ng.sum((x @ W) ** 2), [W])
    graph = ng.Graph([x], [], [(W, W - 0.1 * ng.all_reduce(g, "mean"))])
    opt, log = optimize(graph, 2)
    reduces = [n for n in opt.nodes() if n.op == "all_reduce"]
    assert [n.attrs["reduce"] for n in reduces] == ["sum"]
    assert any(e["pass"] == "all_reduce_means" for e in log)
    prog = to_program(opt)
    start, wait = [k for k in prog.schedule if type(k).__name__ == "AllReduceKernel"]
    assert (start.step, wait.step) == ("start", "wait")
    assert start.ranks == 4 and start.in_place == (True,)
    after = prog.schedule[prog.schedule.index(wait) + 1:]
    assert len(after) == 1 and "0.25" in format_stage_text(prog, after[0])


def format_stage_text(prog, kern) -> str:
    from passes.program import format_stage
    return "\n".join(line for s in kern.stages for line in format_stage(s, 0, lambda b: prog.buffers[b].name))


def _python(code, env_extra):
    env = dict(os.environ, PYTHONPATH=ROOT, **env_extra)
    for v in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"):
        if v not in env_extra:
            env.pop(v, None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


NO_MPI4PY = "import sys; sys.modules['mpi4py'] = None\n"


def test_single_process_without_mpi4py_works_as_before():
    code = NO_MPI4PY + ("import numpy as np, nngraph as ng\n"
                        "x = ng.placeholder((3,), name='x')\n"
                        "fn = ng.compile([x], ng.all_reduce(x, 'sum'), target='cpu')\n"
                        "print(ng.distributed.rank(), ng.distributed.size(), fn(np.arange(3, dtype=np.float32)))")
    r = _python(code, {})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0 1 [0. 1. 2.]"


def test_inside_a_job_without_mpi4py_a_clear_error():
    code = NO_MPI4PY + "import nngraph as ng\nng.distributed.size()"
    r = _python(code, {"PMI_SIZE": "2", "PMI_RANK": "0"})
    assert r.returncode != 0
    assert "DistributedError" in r.stderr and "mpi4py cannot be imported" in r.stderr
    assert "pip install" in r.stderr and "nngraph[distributed]" in r.stderr


def test_a_launcher_of_another_mpi_is_refused_not_run_as_lone_processes():
    """Open MPI's launcher variables around mpi4py built on another MPI (here the mpich
    wheel's, which then starts as a job of one): every rank would train alone, silently."""
    pytest.importorskip("mpi4py")
    code = "import nngraph as ng\nng.distributed.size()"
    r = _python(code, {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"})
    assert r.returncode != 0
    assert "DistributedError" in r.stderr and "launcher started 2 processes" in r.stderr
    assert "sees a job of 1" in r.stderr and "mpiexec" in r.stderr


def test_buckets_follow_the_backward_pass_and_overlap_the_kernels_after_them(monkeypatch):
    """With buckets smaller than the gradients (sizes patched), each gradient gets a
    bucket, in the order the backward pass can produce them (the last layer's first);
    each bucket starts as soon as its gradient is written, the kernels of the next
    buckets run while it is in flight, and the waits come after them. The memory plan
    keeps every send and receive buffer apart from what runs meanwhile: the step still
    equals the plain one."""
    import passes.lower.collective as lower_collective
    monkeypatch.setattr(lower_collective, "FIRST_BUCKET_BYTES", 8)
    monkeypatch.setattr(lower_collective, "BUCKET_BYTES", 8)
    fn, params = _mlp_step("cpu")
    st = fn.stats()["all_reduce"]
    order = [b["values"][0]["value"].split("@")[0] for b in st["buffers"]]
    assert st["calls"] == 4 and order.index("all_reduce:f32[7,3]") < order.index("all_reduce:f32[5,7]")
    sched = fn.runner.program.schedule
    first = st["buffers"][0]
    between = sched[first["start"] + 1:first["wait"]]
    assert any(type(k).__name__ == "MatmulKernel" for k in between)      # dW1 while dW2 is in flight
    assert all(b["start"] < min(c["wait"] for c in st["buffers"]) for b in st["buffers"])
    x, y = rand((6, 5), 3, "float32"), np.array([0, 1, 2, 0, 1, 2], np.int32)
    plain = _plain_step([p.value.copy() for p in params])
    for _ in range(3):
        np.testing.assert_allclose(fn(x, y), plain(x, y), rtol=1e-6)
    for p, q in zip(params, plain.params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_profile_and_report_of_a_step_with_all_reduce(backend, tmp_path):
    """fn.profile() lists the all-reduce start and wait with the bytes they send (it
    raised AttributeError on the collective kernel before) and fn.report() writes."""
    fn, _ = _mlp_step(backend)
    fn(rand((6, 5), 3, "float32"), np.array([0, 1, 2, 0, 1, 2], np.int32))
    table = fn.profile(calls=2)
    rows = {r["kind"]: r for r in table.rows}
    assert {"all_reduce start", "all_reduce wait"} <= set(rows)
    assert rows["all_reduce start"]["bytes"] == 64 * 4
    fn.report(str(tmp_path / "step.html"))
    assert "all_reduce start sum" in (tmp_path / "step.html").read_text()

"""The Program: what fusion makes of a graph and what both backends consume.

A Program is a list of buffers, a list of kernels and a schedule (kernel launches
in order). It is backend-neutral: `codegen/llvm` and `codegen/triton` are two
printers of it, and `passes/program_interpreter.py` runs it with NumPy so fusion
and memory planning are checked before any machine code exists.

Buffers
    Every tensor the Program reads or writes is a Buffer: row-major, contiguous, with
    a dtype and a shape of ints and symbolic sizes (`Dim`). kind is one of
    "input" (a placeholder), "param" (a parameter's current value, read-only),
    "const" (a literal, `value` set), "temp" (an intermediate), "output" (returned),
    "update" (the new value of a parameter; `param` names the parameter buffer).
    The memory plan (`Program.plan`) may map several temps to one arena slot.
    kind "view" (additive): the same memory as buffer `view_of`, read with another
    row-major shape of the same element count and dtype (no copy, never allocated);
    convolutions use views to hand NCHW tensors and OIHW weights to MatmulKernels
    as [batch..., rows, cols] matrices. A view with an `offset` is a *part*: its
    elements (same dtype, its own row-major shape) start `offset` elements into
    `view_of`'s memory; the all-reduce lowering makes each gradient a part of the
    packed buffer that one MPI_Iallreduce sends (passes/lower/collective.py). A part
    is a unit of its own for kernel dependencies (`dependency_root`): kernels writing
    different parts of one buffer do not depend on each other.
    kind "step" (additive): slice t of buffer `view_of` (a stacked buffer whose leading
    axis is time), re-pointed at every step of the ScanLoop that lists it
    (passes/loop.py); `root` follows it to the stacked buffer, `pointer_buffer` stops
    at it (its address is its own, per step).

Loop kernels (`LoopKernel`)
    An outer iteration domain (parallel loops, sizes may be symbolic) and a list of
    stages run in order at every outer point. A stage has its own inner domain
    (empty for per-point work) and a body: a small SSA list of `Instr`.

    - A *map* stage (no `reduce`) runs its body at every inner point and performs
      its `stores`.
    - A *reduce* stage accumulates values over its inner domain with sum/max/min/argmax;
      later stages read the results with `result` instructions.

    So a pointwise kernel is one map stage with an empty inner domain; a row
    reduction is a reduce stage plus a map stage with an empty inner domain (the
    epilogue); softmax is reduce(max), reduce(sum exp(x - m)), map(exp(x - m) / s)
    over one outer row: one kernel, one pass per stage over the row.

    Loop index k counts outer axes first, then the stage's inner axes.

Instructions (`Instr(op, args, attrs, dtype)`, args are indices into the same body)
    idx        attrs axis=k              the loop index k (int64)
    size       attrs size=Size           a (possibly symbolic) size as int64
    const      attrs value=python scalar a literal of `dtype`
    load       attrs buffer=id, fill=v   args: one int64 index per buffer axis, then
                                         optionally a bool mask (attrs masked=True):
                                         where the mask is false, the value is `fill`
                                         and the memory is not touched
    result     attrs stage=s, slot=j     the j-th accumulated value of earlier stage s
    acc                                  (contraction epilogues only) C[b..., i, j]
    <op>       args                      a scalar op: every elementwise graph op name
                                         (add, sub, mul, div, pow, maximum, minimum,
                                         neg, exp, log, log1p, expm1, sqrt, rsqrt, abs,
                                         sign, sin, cos, tanh, sigmoid, relu, softplus,
                                         step, less, less_equal, greater, greater_equal,
                                         equal, not_equal, logical_and, logical_or,
                                         logical_not, where, cast(attrs dtype),
                                         stop_gradient) plus integer index arithmetic:
                                         floordiv, mod (floor semantics, positive divisor);
                                         fmod: C's fmod (the graph ops mod and fmod lower
                                         to it, nngraph/semantics.py; an integer divisor
                                         is never 0 or -1); trunc_div: C's integer
                                         division (the graph op trunc_div lowers to it
                                         by a divisor never 0 or -1)
    uniform    attrs seed=int; args counter (int), flat index (int64): the
               counter-based generator of nngraph/ops/random.py, float32 in [0, 1)

    A reduce stage has `reduce = ((kind, value_arg[, index_arg]), ...)`: kind in
    sum, max, min, argmax (argmax also takes the int64 index to return). The
    identities and the argmax rule (ties keep the first, the first NaN wins) are
    nngraph/semantics.py's (`reduce_identity`).

    A store is `Store(buffer, index_args, value_arg)`; with `accumulate=True` it adds the
    value to the element instead (read-modify-write, printed `+=`; several points of one
    launch may add to one element, so a backend that runs points in parallel adds
    atomically: passes/lower/gather.py's scatter-add). Stores happen in map stages and
    in reduce stages alike, at every inner point, with values from the same body
    (passes/sibling_fusion.py folds a pointwise kernel over a reduction's domain into
    it: one pass computes sum(f(x)) and stores g(x) at every x).

Contraction kernels (`MatmulKernel`)
    out[b..., i, j] = alpha * sum_k A[b..., i, k] * B[b..., k, j] (+ beta * out)
    A and B are buffers holding row-major matrices [batch..., rows, cols]; `trans_a`
    and `trans_b` mean the buffer holds the transpose (so Wᵀ needs no copy). Batch
    axes broadcast: an operand's batch axis of size 1 (or missing) is reused.
    `epilogue` (optional) is a map Stage over the outer domain (batch..., M, N) whose
    body reads the product with `acc` and may load other buffers (bias) and stores
    to `out` and other buffers. Without an epilogue the product is stored to `out`.
    With an epilogue (as passes/lowering.py makes them): `out` has the product's
    shape and dtype and is one of the buffers the epilogue stores (or a temp of its
    own), so a backend may first write the product into `out` (BLAS) and then run
    the epilogue in place, point by point: at each point `acc` is read before the
    stores; the epilogue never loads a buffer the kernel writes. Its stores are
    the kernel's results (e.g. relu(acc + b) for the next layer and the bool mask
    acc + b > 0 for the backward pass, or W - lr * acc straight into W's update).
    Matrix dimensions over several axes (additive; a weight gradient summed over a scan's
    steps is one GEMM with k = (T, N), passes/lower/matmul.py): m, n and k may each be a tuple
    of sizes; that dimension then spans as many row-major buffer axes and its size
    is their product: A is [batch..., *m, *k] ([batch..., *k, *m] when trans_a), B
    [batch..., *k, *n] (or [batch..., *n, *k]), out [batch..., *m, *n], and the
    epilogue's domain (`epilogue_domain()`) is (batch..., *m, *n). A whole-batch
    convolution's columns are (N, OH, OW) and its weight gradient contracts over
    them: with a symbolic N no single size can name such a product.

Conventions of the bodies passes/lowering.py emits (additive to the above)
    - binary scalar ops get operands of one dtype (explicit `cast`s are inserted as
      the graph op's NumPy reference converts); `where`'s condition is bool; index
      arithmetic (idx, size, add/sub/mul/floordiv/mod on indices, comparisons of
      indices) is int64; a `load` index of a size-1 buffer axis is the const 0.
    - loads of a masked value (pad, concatenate) carry the mask and fill = 0 of the
      buffer's dtype; the padded value itself is `where(mask, v, pad_value)`.
    - a LoopKernel's last stage may be a map stage with an empty inner domain that
      stores reduction results (`result`) read by other kernels: the row-wise
      epilogue (mean = sum / N, b - lr * db) lives there too.
    - stages only read buffers written by earlier kernels, never by their own kernel.

Loops (`ScanLoop`, passes/loop.py)
    A schedule entry that repeats a sub-schedule (its body kernels) a (possibly
    symbolic, possibly zero) number of times, with carry buffers copied from the
    step's new value after each step and step buffers pointed at slice t of stacked
    per-step buffers; `reverse` walks time backwards.

Schedule
    `Program.schedule` is the kernels in launch order. `Program.outputs` names the
    buffers returned; `Program.updates` the (param buffer, update buffer) pairs to
    commit after a successful call.

Memory plan (passes/memory.py)
    `Program.plan` maps every temp buffer to an arena slot; temps of one slot have
    disjoint lifetimes (first write .. last use, in schedule positions), so a slot is
    sized per call as the largest of its buffers for the bound sizes
    (`passes.memory.slot_sizes`, `arena_layout`, `peak_bytes(program, env)`; both runtimes
    allocate by `arena_layout`). `Program.root(b)` is the buffer owning a view's memory. `Program.stats` holds
    kernels, library_calls, loop_kernels and "fusion" (why each value was
    materialised, what each kernel computes). `Program.nodes` (passes/kernel_map.py)
    maps back from kernels to the graph nodes each computes, for fn.stats()["fusion"],
    fn.profile(), check_numerics and the report.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from nngraph.types import DTYPES, Dim

# ----------------------------------------------------------------------------- data


@dataclass
class Buffer:
    id: int
    name: str
    dtype: str
    shape: tuple
    kind: str                      # input | param | const | temp | output | update
    value: Optional[np.ndarray] = None   # for const
    param: Optional[int] = None          # for update: the param buffer it replaces
    source: Optional[str] = None         # the user's file:line that built it
    view_of: Optional[int] = None        # kind "view": the buffer whose memory this relabels
    offset: Optional[int] = None         # kind "view": None relabels all of view_of's memory; an int
                                         # makes the view a *part*: its elements start that many
                                         # elements into view_of (a slot of a packed buffer)

    def type_str(self) -> str:
        return f"{DTYPES[self.dtype][0]}[{','.join(map(str, self.shape))}]"


def param_buffer_name(param_name) -> str:
    """The name of a parameter's buffer ("W"; its update's is "W_new"): the
    parameter's own, "param" for an unnamed one. A compile-cache hit renames the stored
    buffers by this rule when the graph's parameters are named otherwise."""
    return param_name or "param"


@dataclass(frozen=True)
class Instr:
    op: str
    args: tuple = ()
    attrs: tuple = ()              # sorted (key, value) pairs; use .attr(k)
    dtype: str = "float32"

    def attr(self, k, default=None):
        for key, v in self.attrs:
            if key == k:
                return v
        return default


def instr(op, args=(), dtype="float32", **attrs) -> Instr:
    return Instr(op, tuple(args), tuple(sorted(attrs.items())), dtype)


@dataclass(frozen=True)
class Store:
    buffer: int
    index: tuple                   # body value ids, one per buffer axis
    value: int
    accumulate: bool = False       # add the value to the element (scatter-add) instead of writing it


@dataclass
class Stage:
    inner: tuple = ()              # inner domain sizes
    body: list = field(default_factory=list)
    reduce: tuple = ()             # ((kind, value_id[, index_id]), ...)
    stores: list = field(default_factory=list)

    def compact(self) -> "Stage":
        """This stage without the body instructions nothing stored or reduced depends
        on, the rest renumbered."""
        need = set()
        stack = [st.value for st in self.stores] + [i for s in self.stores for i in s.index]
        stack += [a for r in self.reduce for a in r[1:]]
        while stack:
            k = stack.pop()
            if k not in need:
                need.add(k)
                stack.extend(self.body[k].args)
        keep = sorted(need)
        new = {old: n for n, old in enumerate(keep)}
        body = [Instr(i.op, tuple(new[a] for a in i.args), i.attrs, i.dtype) for i in (self.body[k] for k in keep)]
        return Stage(self.inner, body, tuple((r[0],) + tuple(new[a] for a in r[1:]) for r in self.reduce),
                     [Store(x.buffer, tuple(new[a] for a in x.index), new[x.value], x.accumulate)
                      for x in self.stores])


@dataclass
class LoopKernel:
    name: str
    outer: tuple
    stages: list
    source: str = ""               # which graph nodes it computes (for dumps)

    def reads(self) -> set:
        return {i.attr("buffer") for s in self.stages for i in s.body if i.op == "load"}

    def writes(self) -> set:
        return {st.buffer for s in self.stages for st in s.stores}


@dataclass
class MatmulKernel:
    name: str
    a: int
    b: int
    out: int
    batch: tuple                   # output batch sizes
    m: Any
    n: Any
    k: Any
    trans_a: bool = False
    trans_b: bool = False
    alpha: float = 1.0
    beta: float = 0.0
    epilogue: Optional[Stage] = None
    source: str = ""
    # split across the backend's own threads from the size that would wake a second
    # BLAS thread (not only above its GEMM split size): for a product whose neighbours
    # are big loop kernels, which the backend splits across the same cores
    own_threads: bool = False
    # a one-image convolution computed directly (passes/lower/conv_direct.py's
    # DirectWindow): b is then its phase-split input, not a [k, n] matrix; the product is
    # a @ window_columns(b, window) (the program interpreter's rule), and the CPU backend
    # runs codegen/llvm/conv_direct.py's kernel in place of the BLAS call
    window: Any = None

    def axes(self, dim: str) -> tuple:
        """The sizes of the buffer axes matrix dimension `dim` ("m", "n" or "k") spans."""
        return matrix_axes(getattr(self, dim))

    def matrix_ndim(self, role: str) -> int:
        """How many trailing axes of operand "a", "b" or "out" its matrix spans."""
        dims = {"a": ("m", "k"), "b": ("k", "n"), "out": ("m", "n")}[role]
        return sum(len(self.axes(d)) for d in dims)

    def epilogue_domain(self) -> tuple:
        """The output's axes, the epilogue's outer domain: (batch..., *m, *n)."""
        return tuple(self.batch) + self.axes("m") + self.axes("n")

    def reads(self) -> set:
        r = {self.a, self.b}
        if self.beta:
            r.add(self.out)
        if self.epilogue:
            r |= {i.attr("buffer") for i in self.epilogue.body if i.op == "load"}
        return r

    def writes(self) -> set:
        w = {self.out}
        if self.epilogue:
            w |= {st.buffer for st in self.epilogue.stores}
        return w


def swapped_stage(s: Stage, swap) -> Stage:
    """Stage s reading and writing buffer swap(b) wherever it used buffer b."""
    body = [Instr(i.op, i.args, tuple((key, swap(v) if key == "buffer" else v) for key, v in i.attrs), i.dtype)
            for i in s.body]
    stores = [Store(swap(st.buffer), st.index, st.value, st.accumulate) for st in s.stores]
    return Stage(s.inner, body, s.reduce, stores)


def swapped_kernel(k, swap):
    """A copy of LoopKernel or MatmulKernel k reading and writing swap(b) wherever it used b."""
    if isinstance(k, MatmulKernel):
        ep = swapped_stage(k.epilogue, swap) if k.epilogue else None
        return dataclasses.replace(k, a=swap(k.a), b=swap(k.b), out=swap(k.out), epilogue=ep)
    return dataclasses.replace(k, stages=[swapped_stage(s, swap) for s in k.stages])


@dataclass
class Program:
    buffers: dict                  # id -> Buffer
    schedule: list                 # kernels in launch order
    inputs: list                   # buffer ids, placeholder order
    params: list                   # buffer ids, Function.params order
    outputs: list                  # buffer ids, graph output order
    updates: list                  # [(param buffer id, update buffer id)]
    plan: dict = field(default_factory=dict)   # temp buffer id -> arena slot (memory plan)
    stats: dict = field(default_factory=dict)
    nodes: Any = None              # passes/kernel_map.NodeMap: the graph nodes each kernel computes

    def kernel_count(self) -> int:
        return len(self.schedule)

    def root(self, b: int) -> int:
        """The buffer that owns b's memory (b itself unless b is a view)."""
        return root_buffer(self.buffers, b)

    def offset(self, b: int) -> int:
        """Elements from the start of b's root memory to b (non-zero for parts only)."""
        return view_offset(self.buffers, b)


def matrix_axes(s) -> tuple:
    """A MatmulKernel's m, n or k as the tuple of axis sizes it spans."""
    return tuple(s) if isinstance(s, tuple) else (s,)


def size_text(s) -> str:
    """m, n or k as printed: a size, or the product of several (N*28*28)."""
    return "*".join(map(str, matrix_axes(s)))


def root_buffer(buffers: dict, b: int) -> int:
    """The buffer of `buffers` (id -> Buffer) that owns b's memory, following views
    (and step buffers to their stacked buffer)."""
    return _follow(buffers, b, lambda buf: False)


def pointer_buffer(buffers: dict, b: int) -> int:
    """The buffer whose address b's data starts at: its root, except that a step
    buffer (passes/loop.py) has an address of its own, set at every step."""
    return _follow(buffers, b, lambda buf: buf.kind == "step")


def dependency_root(buffers: dict, b: int) -> int:
    """The buffer whose writer a reader of b waits for: b's root, except that a part
    (a view with an offset) is its own unit, so the kernels that write different parts
    of one packed buffer stay independent (passes/kernel_dag.py)."""
    return _follow(buffers, b, lambda buf: buf.offset is not None)


def _follow(buffers: dict, b: int, stop) -> int:
    """Follow view_of from b until a buffer that owns memory or one `stop(buffer)` holds for."""
    seen = 0
    while buffers[b].view_of is not None and not stop(buffers[b]):
        b = buffers[b].view_of
        seen += 1
        if seen > len(buffers):
            raise ValueError("cycle of views in the Program")
    return b


def view_offset(buffers: dict, b: int) -> int:
    """Elements from the start of b's root memory to b's first element (0 but for parts
    and views of parts)."""
    off = 0
    while buffers[b].view_of is not None:
        off += buffers[b].offset or 0
        b = buffers[b].view_of
    return off


# ----------------------------------------------------------------------------- printing


def _fmt_val(v) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def format_instr(k: int, ins: Instr) -> str:
    a = ", ".join(f"%{x}" for x in ins.args)
    at = ", ".join(f"{key}={_fmt_val(v)}" for key, v in ins.attrs)
    s = f"%{k} = {ins.op}"
    if ins.op == "idx":
        return f"%{k} = idx {ins.attr('axis')} : i64"
    if a:
        s += " " + a
    if at:
        s += " {" + at + "}"
    return s + f" : {DTYPES[ins.dtype][0]}"


def format_stage(s: Stage, no: int, bufname) -> list:
    head = f"stage {no}"
    if s.inner:
        head += f" over [{','.join(map(str, s.inner))}]"
    if s.reduce:
        head += " reduce " + ", ".join(f"{r[0]}(%{r[1]})" for r in s.reduce)
    lines = [head + ":"]
    for k, ins in enumerate(s.body):
        if ins.op == "load":
            idx = ", ".join(f"%{x}" for x in ins.args[:len(ins.args) - (1 if ins.attr('masked') else 0)])
            m = f" if %{ins.args[-1]} else {ins.attr('fill')}" if ins.attr("masked") else ""
            lines.append(f"  %{k} = load {bufname(ins.attr('buffer'))}[{idx}]{m} : {DTYPES[ins.dtype][0]}")
        else:
            lines.append("  " + format_instr(k, ins))
    for st in s.stores:
        arrow = "+=" if st.accumulate else "<-"
        lines.append(f"  store {bufname(st.buffer)}[{', '.join(f'%{x}' for x in st.index)}] {arrow} %{st.value}")
    return lines


def format_program(p: Program) -> str:
    """fn.dump("kernels"): buffers, kernels and the schedule, readably."""
    def bufname(b):
        return f"@{p.buffers[b].name}"
    out = ["buffers:"]
    for b in p.buffers.values():
        extra = f" slot {p.plan[b.id]}" if b.id in p.plan else ""
        if b.view_of is not None:
            extra += f" of @{p.buffers[b.view_of].name}" + (f" at +{b.offset}" if b.offset is not None else "")
        out.append(f"  @{b.name}: {b.type_str()} {b.kind}{extra}")
    for n, kern in enumerate(p.schedule):
        out.append("")
        out += format_kernel(n, kern, bufname, p)
    out.append("")
    out.append("returns " + ", ".join(bufname(b) for b in p.outputs))
    for pb, ub in p.updates:
        out.append(f"update {bufname(pb)} <- {bufname(ub)}")
    return "\n".join(out) + "\n"


def format_kernel(n: int, kern, bufname, program=None) -> list:
    """The lines of kernel number n of a schedule (or of a loop's body); program, where
    given, lets a kernel show what its memory plan saves (a loop's skipped copies)."""
    out = []
    if isinstance(kern, MatmulKernel):
        out.append(f"kernel {n} {kern.name}: matmul {bufname(kern.out)}[{','.join(map(size_text, kern.batch + (kern.m, kern.n)))}]"
                   f" = {kern.alpha!r} * {bufname(kern.a)}{'ᵀ' if kern.trans_a else ''} @ "
                   f"{bufname(kern.b)}{'ᵀ' if kern.trans_b else ''}"
                   + (f" + {kern.beta!r} * {bufname(kern.out)}" if kern.beta else "")
                   + f"  (k={size_text(kern.k)})" + (f"  direct {kern.window}" if kern.window else "")
                   + (f"  # {kern.source}" if kern.source else ""))
        if kern.epilogue:
            out += ["  epilogue " + ln for ln in format_stage(kern.epilogue, 0, bufname)]
    elif hasattr(kern, "describe"):   # a kernel of its own kind (passes/collective.py, passes/loop.py)
        lines = kern.describe(bufname, program)
        out.append(f"kernel {n} {kern.name}: {lines[0]}")
        out += ["  " + ln for ln in lines[1:]]
        for m, inner in enumerate(getattr(kern, "body", ())):    # a loop's body, nested
            out += ["    " + ln for ln in format_kernel(m, inner, bufname, program)]
    else:
        out.append(f"kernel {n} {kern.name} over [{','.join(map(str, kern.outer))}]"
                   + (f"  # {kern.source}" if kern.source else ""))
        for s_no, st in enumerate(kern.stages):
            out += ["  " + ln for ln in format_stage(st, s_no, bufname)]
    return out


def nested_kernels(schedule):
    """Every entry of `schedule` and, for a loop (passes/loop.py), of its body, in order."""
    for k in schedule:
        yield k
        yield from nested_kernels(getattr(k, "body", ()))


def symbols(p: Program) -> list:
    """The symbolic size names the Program needs bound at run time, sorted."""
    names = set()
    for b in p.buffers.values():
        names |= {s.name for s in b.shape if isinstance(s, Dim)}
    names |= {k.length.name for k in nested_kernels(p.schedule) if isinstance(getattr(k, "length", None), Dim)}
    return sorted(names)

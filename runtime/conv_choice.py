"""Which layout each convolution layer lowers to on target="cpu": one GEMM for the
whole batch, one per example (passes/lower/conv_layout.py), or no GEMM at all, loop
kernels over the windows ("taps", passes/lower/conv_taps.py), chosen by timing
them at the layer's shapes, once per host.

None wins everywhere: the whole batch makes one call instead of N and gives the
BLAS long panels, one example at a time keeps each call's operands in cache (with
OpenBLAS on an AVX-512 Xeon, LeNet's 6 x 25 x 784 products ran about twice as fast
per example, its 16 x 150 x 6400 filter gradient faster as one call), and the taps
kernels skip the columns and the BLAS's packing, which wins where the products are
thin (LeNet's first layer: 1 input channel, 6 outputs; with MKL on an AVX-512 Xeon its
forward and filter gradient took 0.34 ms as taps against 0.68 ms in either GEMM
layout, 32 examples) and loses where they are not (its second layer: 3.6 ms against
0.76). So nothing here is a threshold: the layer's products that the graph makes
(forward, input gradient, filter gradient) are timed in each layout, the whole
batch's with the copies it adds, the taps one as compiled code
(runtime/conv_taps_timing.py), interleaved, best of ROUNDS rounds (or of those
that start within BUDGET_S), the per-example time less what its calls cost from
Python (timed with empty products: the generated code calls the BLAS directly); the
fastest total wins. A symbolic batch size is timed at NOMINAL_BATCH examples.
Results are kept in memory and in `conv-layouts.json` in nngraph's cache directory
(codegen/cache.py: private to the user, written atomically, a damaged file is
measured again), keyed by the host (CPU, its features, the BLAS core type and thread
counts, all the layouts there are to choose from: host_key), so each shape is measured once per host;
one measured while the machine was disturbed (codegen/timing_trust.py) is provisional,
measured again by later processes (at quiet moments) until it is final (MeasuredChoices tells the compile
cache which answers a compiled function was made with).

A layer of one image in one group whose graph makes only the forward product (an
inference) is timed the same way between its two orientations (conv_layout.py:
"one_image", the product channel-major [Og, OH*OW], and "one_image_t", pixel-major
[OH*OW, Og]) and, for float32 windows of more than one point or 1x1 ones of
stride 1 read in place (passes/direct_window.direct_eligible), its direct kernel
("one_image_direct", codegen/llvm/conv_direct.py: no im2col), each with a pass over
its output as the epilogue makes (a copy, or a transposing copy to NCHW); another
layout than the channel-major one where it wins most rounds (time_one_image).

NNGRAPH_CONV_LAYOUT=batch|example|taps forces one layout for every layer and target
(a layer of one image in one group then keeps "one_image", conv_layout.OneImage);
NNGRAPH_CONV_LAYOUT=direct computes every layer that can be computed directly so on
target="cpu" (the others, and every layer on other targets, in the whole batch).
"""
from __future__ import annotations

import functools
import hashlib
import os
import time

import numpy as np

from codegen import timing_trust
from passes.direct_window import direct_eligible, in_place_window, window_of
from passes.lower.conv import identity_window
from passes.lower.conv_layout import LAYOUTS, ONE_IMAGE_LAYOUTS, is_one_image

from . import conv_table
from .conv_taps_timing import taps_call, timing_operand

NOMINAL_BATCH = 32          # examples timed when the batch size is symbolic
MAX_TIMED_ELEMENTS = 1 << 23  # largest operand timed (32 MiB of float32): fewer examples beyond
ROUNDS = 5
BUDGET_S = 0.2              # seconds of timing per layer after which no further round starts
ALL = ("conv2d", "conv2d_grad_input", "conv2d_grad_filter")
FORCED = LAYOUTS + ("direct",)   # NNGRAPH_CONV_LAYOUT's values

_builder: dict = {}         # "build_program": runtime/cpu.py's, given by conv_choice_for("cpu", ...)


def conv_choice_for(target: str, build_program=None):
    """The lowering's conv_choice for `target`: forced by NNGRAPH_CONV_LAYOUT, measured
    on "cpu" (a MeasuredChoices per compile; the taps layout too once the backend has given its `build_program`,
    runtime/conv_taps_timing.py: kept in _builder, as runtime/cpu.py imports this
    module and not the other way round), per example on "gpu", else None (the
    lowering's default, the whole batch).

    On "gpu" the per-example layout (products batched over the examples in one Triton
    launch) was measured on an NVIDIA H100 at 257 us per LeNet-style SGD step against
    2,647 us for the whole-batch columns (benchmarks/gpu.py), whose im2col and
    channel-major copies dominate there."""
    forced = forced_layout()
    if forced == "direct":
        return _forced_direct if target == "cpu" else (lambda geo, dtype, products=ALL: "batch")
    if forced:
        return lambda geo, dtype, products=ALL: forced
    if target == "gpu":
        return lambda geo, dtype, products=ALL: "example"
    if target != "cpu":
        return None
    if build_program is not None:
        _builder["build_program"] = build_program
    return MeasuredChoices()


def forced_layout() -> str:
    raw = os.environ.get("NNGRAPH_CONV_LAYOUT", "").strip().lower()
    if raw and raw not in FORCED:
        raise ValueError(f"NNGRAPH_CONV_LAYOUT must be one of {', '.join(FORCED)} (or unset), got {raw!r}")
    return raw


def _forced_direct(geo: dict, dtype: str, products=ALL) -> str:
    """NNGRAPH_CONV_LAYOUT=direct: every layer that can be computed directly is
    (passes/direct_window.direct_eligible, an inference), the others in the whole batch."""
    return "one_image_direct" if _direct_candidate(geo, dtype, products) else "batch"


def _direct_candidate(geo: dict, dtype: str, products) -> bool:
    return tuple(products) == ("conv2d",) and direct_eligible(geo, dtype)


def measured_layout(geo: dict, dtype: str, products=None) -> str:
    """"batch", "example" or "taps" for a layer of geometry `geo`
    (passes/lower/conv.py) whose graph makes `products` (a subset of ALL; default all
    three); "taps" is timed once a backend has given its build_program
    (conv_choice_for). A one-image inference layer: "one_image", "one_image_t" or
    "one_image_direct" (time_one_image). A choice stored as provisional (timed while
    the machine was disturbed: codegen/timing_trust.py) is timed again, once per
    process, until it is final."""
    products = _products(products)
    where = _memo_key(geo, dtype, products)
    if where is None:
        return "batch"          # one example: the two layouts make the same products
    entry = conv_table.answers.get(where)
    if entry is None:
        entry = _stored_or_timed(*where, geo, dtype, products, _is_one_image(geo, products))
        conv_table.answers[where] = entry
    return entry["choice"]


def _products(products) -> tuple:
    """The products a layer's graph makes, in ALL's order (None: all of them)."""
    return tuple(p for p in ALL if p in (products or ALL))


def _is_one_image(geo: dict, products: tuple) -> bool:
    return is_one_image(geo) and products == ("conv2d",)


def _memo_key(geo: dict, dtype: str, products: tuple):
    """(host key, shape key) of a layer's choice, or None where there is nothing to
    choose (one example of a batched layer)."""
    one_image = _is_one_image(geo, products)
    if isinstance(geo["N"], int) and geo["N"] <= 1 and not one_image:
        return None
    return host_key(), (_one_image_key(geo, dtype) if one_image else _shape_key(geo, dtype, products))


class MeasuredChoices:
    """The conv_choice of one compile on "cpu" (measured_layout), keeping in
    `provisional` [host key, shape, choice] of each answer that is still provisional:
    the compile cache stores them with the compiled function, which a later process
    then compiles again (runtime/conv_table.py: settled), so that the choice is
    timed again."""

    def __init__(self):
        self.provisional = []

    def __call__(self, geo: dict, dtype: str, products=None) -> str:
        choice = measured_layout(geo, dtype, products)
        where = _memo_key(geo, dtype, _products(products))
        entry = conv_table.answers.get(where) if where is not None else None
        if entry is not None and timing_trust.provisional(entry.get("trust")):
            self.provisional.append([*where, entry["choice"]])
        return choice


def _stored_or_timed(key: str, shape: str, geo: dict, dtype: str, products, one_image: bool) -> dict:
    """The table's entry for (key, shape) unless it is due to be timed again
    (_due: provisional, the machine not busy now or at this process's cache check); else (none, damaged,
    or due) the layer timed now and stored, with its trust record."""
    names = ONE_IMAGE_LAYOUTS if one_image else LAYOUTS
    stored = conv_table.stored_entry(conv_table.read_table(), key, shape)
    usable = stored is not None and stored.get("choice") in names and timing_trust.valid(stored.get("trust"))
    if usable and not _due(key, shape, stored.get("trust")):
        return stored
    entry = time_one_image(geo, dtype) if one_image else time_layouts(geo, dtype, products)
    evidence = entry.pop("evidence", None)
    if evidence is not None:
        entry["trust"] = timing_trust.record(evidence, stored.get("trust") if usable else None)
    table = conv_table.read_table()          # as it is now: another process may have added shapes
    conv_table.write_table(conv_table.with_entry(table, key, shape, entry))
    return entry


def _due(key: str, shape: str, rec) -> bool:
    """Is the stored choice with trust record `rec` to be timed again now: due
    (timing_trust.due), or found due by this process's compile cache
    (conv_table.found_due: its entry was refused for it)."""
    if (key, shape) in conv_table.found_due and timing_trust.provisional(rec):
        return True
    return timing_trust.due(rec)


def _shape_key(geo, dtype, products) -> str:
    n = geo["N"] if isinstance(geo["N"], int) else "N"
    return f"{dtype} N={n} Og={geo['Og']} K={geo['K']} P={geo['OH'] * geo['OW']} {'+'.join(products)}"


def _one_image_key(geo, dtype) -> str:
    """The cache key of a one-image layer's orientation or direct kernel (time_one_image:
    the direct kernel's code depends on the vector width, which NNGRAPH_CPU_FEATURES
    may narrow, its tile and its window; a 1x1 stride-1 window read in place, no copy
    and no im2col, is timed apart from a padded one of the same output: direct_window.
    in_place_window)."""
    from codegen.host import host_facts
    from codegen.llvm.conv_direct import tile_shape
    bits = host_facts().vector_bits
    window = (f" {geo['KH']}x{geo['KW']}/{geo['sh']}x{geo['sw']}:{geo['dh']}x{geo['dw']} OW={geo['OW']}"
              + " in place" * in_place_window(geo))
    return (_shape_key(geo, dtype, ("conv2d",)) + window + f" {bits}-bit tile %dx%d" % tile_shape(bits)
            + f" epilogue={geo.get('epilogue') or 'none'} orientation or direct by votes, epilogue timed")


@functools.lru_cache(maxsize=None)
def host_key() -> str:
    """What a timing depends on besides the shapes: the layouts to choose from, CPU,
    features (as NNGRAPH_CPU_FEATURES leaves them), which BLAS (its
    version, core type or threading), thread counts and the split of one-image
    products (codegen/llvm/blas.py, matmul.py, entry.py)."""
    from codegen.host import effective_feature_text, llvm_host
    from codegen.llvm import blas
    from codegen.llvm.entry import GEMM_COLUMN_WORK, N_THREADS
    from codegen.llvm.matmul import BLAS_THREAD_WORK
    parts = ["+".join(LAYOUTS + ONE_IMAGE_LAYOUTS), llvm_host()["cpu"], effective_feature_text(), blas.describe(), blas.core_type_choice(),
             os.environ.get("OPENBLAS_CORETYPE", ""), str(blas.configured_threads()), str(BLAS_THREAD_WORK),
             str(N_THREADS), str(GEMM_COLUMN_WORK)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


# ----------------------------------------------------------------------------- timing

def time_layouts(geo: dict, dtype: str, products=ALL) -> dict:
    """{"choice", "batch_s", "example_s", "taps_s", "examples", "evidence"}: seconds of the layer's
    products for `examples` examples in each layout (one group; all groups alike), the
    whole batch's layout with the copies it adds (the product to NCHW, gy
    channel-major), the taps layout's as compiled code (runtime/conv_taps_timing.py,
    once a backend has given its build_program). The fastest wins.

    The taps layout's code is compiled product by product: the graph's first product
    alone first; the others only once two rounds show that product alone is not
    clearly slower than the leading layout's whole (clearly_slower; where it is, the
    layer's taps code is never compiled whole: LeNet's second layer's forward product
    took 1.7 ms as taps against 0.7 ms for all three products in its BLAS layouts, and
    its input gradient's taps kernels were half of its taps code's compile time).
    "taps_products" names the products its time covers; "evidence" what the
    system saw meanwhile (codegen/timing_trust.py: the chosen layout's rounds)."""
    Og, K, P = geo["Og"], geo["K"], geo["OH"] * geo["OW"]
    n = geo["N"] if isinstance(geo["N"], int) else NOMINAL_BATCH
    n = max(1, min(n, MAX_TIMED_ELEMENTS // max(1, K * P, Og * P)))
    if n == 1:
        return {"choice": "batch", "batch_s": 0.0, "example_s": 0.0, "examples": 1}
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    w, cols, gy = (timing_operand(rng, shape, dt) for shape in ((Og, K), (n, K, P), (n, Og, P)))
    out = {"example": _example_calls(w, cols, gy, products), "batch": _batch_calls(w, cols, gy, products)}
    # what a call costs from Python (the generated code calls the BLAS directly): as many
    # empty products as the per-example layout makes, subtracted from its time
    empty = np.zeros((0, 0), dt)
    out["overhead"] = [_gemm_call(empty, empty, empty, False, False)] * len(out["example"])
    taps = None
    if "build_program" in _builder:
        taps = _TapsCalls(dict(geo, N=n, G=1, O=Og), dtype, products, n, _builder["build_program"])
        out["taps"] = taps.calls
    watch = timing_trust.Watch()
    rounds = _layout_rounds(_timed_rounds(out, taps, watch))
    seconds = {name: min(times) for name, times in rounds.items()}
    choice = min(seconds, key=seconds.get)
    extra = {"taps_products": "+".join(taps.timed)} if taps is not None else {}
    return {"choice": choice, **{f"{k}_s": v for k, v in seconds.items()}, "examples": n, **extra,
            "evidence": watch.evidence(len(rounds[choice]), rounds[choice])}


class _TapsCalls:
    """The taps layout's calls for a layer: the first product's compiled code, then
    (complete) the other products' as a second program."""

    def __init__(self, geo, dtype, products, examples, build_program):
        self._make = lambda some: taps_call(geo, dtype, some, examples, build_program)
        self.timed, self.rest = tuple(products[:1]), tuple(products[1:])
        self.calls = [self._make(self.timed)]

    def complete(self, out: dict, seen: dict) -> None:
        """Build the other products' code; the taps calls of `out` become all of them,
        their rounds in `seen` start anew (a part's times do not count for the whole)."""
        self.calls.append(self._make(self.rest))
        self.timed, self.rest = self.timed + self.rest, ()
        out["taps"], seen["taps"] = self.calls, []


def _timed_rounds(out: dict, taps, watch=None) -> dict:
    """{name: seconds per round} of the calls of `out`, interleaved (a round another
    process interrupts does not decide), up to ROUNDS rounds each or until BUDGET_S of
    timing; a layout clearly slower than the leader is timed no further. The taps
    layout (`taps`, a _TapsCalls) runs its first product alone until two rounds keep
    it in the running, then all of them, timed anew; where the budget ends while that
    first product's time leads, the others are timed too (a part never wins). `watch`
    (a timing_trust.Watch) samples the system after each round and leaves out the
    taps code's compiling."""
    watch = watch if watch is not None else timing_trust.Watch()
    seen = {name: [] for name in out}
    running = set(out)
    spent = 0.0
    while True:
        start = time.perf_counter()
        for name, calls in out.items():
            if name in running and len(seen[name]) < ROUNDS:
                t = time.perf_counter()
                for call in calls:
                    call()
                seen[name].append(time.perf_counter() - t)
        watch.sample()
        partial = {"taps"} if taps is not None and taps.rest else set()
        running -= clearly_slower(_layout_rounds(seen), lower_bounds=partial)
        if "example" not in running:
            running.discard("overhead")
        spent += time.perf_counter() - start
        if partial and "taps" in running and len(seen["taps"]) >= 2:
            with watch.excluded():
                taps.complete(out, seen)     # compiled outside the timing budget
        if all(len(seen[name]) >= ROUNDS for name in running):
            return seen
        if spent > BUDGET_S and all(seen[name] for name in running):
            if not (partial and "taps" in running and _leads(seen, "taps")):
                return seen     # slow products (or a busy machine): fewer rounds, a bounded compile
            with watch.excluded():
                taps.complete(out, seen)     # a time of its first product alone may be out, never lead


def _leads(seen: dict, name: str) -> bool:
    """Is layout `name`'s best round the best of all (`_layout_rounds` of `seen`)?"""
    best = {layout: min(times) for layout, times in _layout_rounds(seen).items() if times}
    return min(best, key=best.get) == name


def _layout_rounds(seen: dict) -> dict:
    """Each layout's seconds per round from the timed calls' (`seen`): the per-example
    layout's less the best of what its calls cost from Python ("overhead")."""
    rounds = {name: times for name, times in seen.items() if name != "overhead"}
    rounds["example"] = [max(0.0, t - min(seen["overhead"])) for t in seen["example"]]
    return rounds


def clearly_slower(rounds: dict, lower_bounds=frozenset()) -> set:
    """The layouts of `rounds` ({layout: seconds per round}) to time no further: those
    whose fastest round is slower than the slowest round of the layout that leads (its
    first round left out: it pays first-touch costs, page faults and cold code and
    caches, that no later call pays; LeNet's second layer's BLAS layout took 1.85 ms in
    its first round and 0.74 ms in its second, and the taps layout's forward product
    alone, 1.79 ms at best, stayed in the running), once every layout has run two
    rounds. A busy machine only ever adds to a round's time,
    so such a layout was slower in each of its rounds than the leader in all of its
    warm ones; timing it again would cost its time (LeNet's second layer as taps: about five
    times its BLAS layouts') and not change the choice, as its best already exceeds
    the leader's. The layouts in `lower_bounds` time only part of their work (the
    taps layout's first product): they may be out, never lead."""
    if len(rounds) < 2 or any(len(times) < 2 for times in rounds.values()):
        return set()
    whole = [name for name in rounds if name not in lower_bounds]
    if not whole:
        return set()
    leader = min(whole, key=lambda name: min(rounds[name]))
    return {name for name, times in rounds.items() if min(times) > max(rounds[leader][1:])}


def time_one_image(geo: dict, dtype: str) -> dict:
    """{"choice", "<layout>_s"..., "evidence"}: seconds of one image's forward product in each
    orientation (and computed directly where it can be) plus a pass over its output
    to NCHW as its epilogue makes (a contiguous copy, or a transposing one),
    interleaved, best of ROUNDS, in this thread's CPU time (every call runs on this
    thread: the BLAS on one thread, as each thread's part of a one-image product
    calls it, the direct kernel, the copies), which a busy
    machine's preemptions do not inflate as they do the wall time (under a load of 16
    on 2 cores, wall times of a 1.5 ms product read 2.5-250 ms and reversed choices).
    The products from im2col's matrix also pay a copy of
    that matrix's size (what im2col writes, a lower bound of its time) unless it is x
    itself (passes/lower/conv.py: identity_window), the direct
    kernel (codegen/llvm/conv_direct.py) a copy of its phase-split input's. Another
    layout than the channel-major one where it beats that one in most rounds (each
    round times all, back to back, so a round another process interrupts is one
    vote) and in its best time; of two such, the one with the better best time: with MKL on an AVX-512 Xeon, ResNet-50's 7x7 layers ran 10-20% faster
    pixel-major; its 14x14 ones, within 1% either way, go with the votes."""
    calls = _one_image_calls(geo, dtype)
    seen = {name: [] for name in calls}
    watch = timing_trust.Watch()
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for name, call in calls.items():
            t = time.thread_time()
            call()
            seen[name].append(time.thread_time() - t)
        watch.sample()
        if time.perf_counter() - start > BUDGET_S:
            break
    base = seen["one_image"]
    winners = [name for name, s in seen.items() if 2 * sum(t < c for t, c in zip(s, base)) > len(base)]
    choice = min(winners, key=lambda name: min(seen[name])) if winners else "one_image"
    if min(seen[choice]) > min(base):
        choice = "one_image"
    return {"choice": choice, **{f"{name}_s": min(s) for name, s in seen.items()},
            "evidence": watch.evidence(len(seen[choice]), seen[choice])}


def _one_image_calls(geo: dict, dtype: str) -> dict:
    """Per one-image layout, a call that runs its forward product as time_one_image says,
    with the layer's epilogue (geo["epilogue"], passes/lower/conv.py: "rows" or
    "points", see _with_epilogue) where it has one."""
    Og, K, P = geo["Og"], geo["K"], geo["OH"] * geo["OW"]
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    w, cols = timing_operand(rng, (Og, K), dt), timing_operand(rng, (K, P), dt)
    cols_copy = np.empty_like(cols)
    y, yt, nchw = np.empty((Og, P), dt), np.empty((P, Og), dt), np.empty((Og, P), dt)
    channel_major = _gemm_call(w, cols, y, False, False, one_thread=True)
    pixel_major = _gemm_call(cols, w, yt, True, True, one_thread=True)
    im2col = (lambda: None) if identity_window(geo) else (lambda: np.copyto(cols_copy, cols))
    calls = {"one_image": lambda: (im2col(), channel_major(), np.copyto(nchw, y)),
             "one_image_t": lambda: (im2col(), pixel_major(), np.copyto(nchw, yt.T))}
    if geo.get("epilogue"):
        calls["one_image"] = _with_epilogue(geo, w, cols, im2col, rng, dt)
    if geo.get("epilogue") == "points":
        r = timing_operand(rng, nchw.shape, dt)
        calls["one_image_t"] = lambda: (im2col(), pixel_major(), np.add(yt.T, r, out=nchw))
    if direct_eligible(geo, dtype):
        calls["one_image_direct"] = _direct_call(geo, w, y, nchw, rng, dt)
    return calls


def _with_epilogue(geo, w, cols, im2col, rng, dt):
    """The channel-major product as conv_gemm.py runs it with an epilogue: in chunks of
    columns whose output fits half the L2, each product then a pass over its output
    that reads it (from the L2) and writes NCHW y, reading the residual at the same
    points where the epilogue has one ("points"); bias and relu add no memory traffic."""
    from codegen.llvm.conv_gemm import chunk_columns
    Og, P = w.shape[0], cols.shape[1]
    step = chunk_columns(Og, dt.itemsize)
    parts = []
    for c0 in range(0, P, step):
        c = np.ascontiguousarray(cols[:, c0:c0 + step])
        y, out = np.empty((Og, c.shape[1]), dt), np.empty((Og, c.shape[1]), dt)
        residual = timing_operand(rng, y.shape, dt) if geo["epilogue"] == "points" else None
        pass_ = (lambda y=y, out=out: np.copyto(out, y)) if residual is None else \
            (lambda y=y, out=out, r=residual: np.add(y, r, out=out))
        parts.append((_gemm_call(w, c, y, False, False, one_thread=True), pass_))

    def call():
        im2col()
        for product, pass_ in parts:
            product()
            pass_()
    return call


def _direct_call(geo, w, y, nchw, rng, dt):
    """The direct kernel (codegen/llvm/conv_direct.py) from a copy of its phase-split
    input (none where it reads x in place); with an epilogue, that applied to its tiles
    (bias + relu, and the residual read at the same points where it has one), else a
    pass over its output."""
    from codegen.llvm.conv_direct import compiled_core
    from codegen.llvm.conv_epilogue import bias_residual_relu
    win = window_of(geo)
    x, x_copy = timing_operand(rng, win.elements(), dt), np.empty(win.elements(), dt)
    copy, src = ((lambda: None), x) if win.in_place else ((lambda: np.copyto(x_copy, x)), x_copy)
    if not geo.get("epilogue"):
        direct = compiled_core(win)
        return lambda: (copy(), direct(src, w, y), np.copyto(nchw, y))
    residual = geo["epilogue"] == "points"
    direct = compiled_core(win, epilogue=bias_residual_relu(residual))
    operands = [timing_operand(rng, w.shape[0], dt)] + ([timing_operand(rng, y.shape, dt)] if residual else [])
    return lambda: (copy(), direct(src, w, nchw, *operands))


def _example_calls(w, cols, gy, products):
    """The products, one call per example: y = w @ cols[e], dcols = wᵀ @ gy[e],
    dw_e = gy[e] @ cols[e]ᵀ."""
    n, K, P = cols.shape
    Og = w.shape[0]
    y, dcols, dw = np.empty((n, Og, P), w.dtype), np.empty((n, K, P), w.dtype), np.empty((n, Og, K), w.dtype)
    calls = []
    for e in range(n):
        calls += [_gemm_call(w, cols[e], y[e], False, False)] if "conv2d" in products else []
        calls += [_gemm_call(w, gy[e], dcols[e], True, False)] if "conv2d_grad_input" in products else []
        calls += [_gemm_call(gy[e], cols[e], dw[e], False, True)] if "conv2d_grad_filter" in products else []
    return calls


def _batch_calls(w, cols, gy, products):
    """The same products over the whole batch, channel-major: one call each, plus the
    copies this layout adds: the product [Og, N, P] to NCHW y, gy to channel-major."""
    n, K, P = cols.shape
    Og = w.shape[0]
    cols_t = np.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(K, n * P)
    gy_t = np.empty((Og, n, P), w.dtype)
    y, dcols, dw = np.empty((Og, n * P), w.dtype), np.empty((K, n * P), w.dtype), np.empty((Og, K), w.dtype)
    y_nchw = np.empty((n, Og, P), w.dtype)
    calls = []
    if "conv2d" in products:
        calls += [_gemm_call(w, cols_t, y, False, False),
                  lambda: np.copyto(y_nchw, y.reshape(Og, n, P).transpose(1, 0, 2))]
    if "conv2d_grad_input" in products or "conv2d_grad_filter" in products:
        calls.append(lambda: np.copyto(gy_t, gy.transpose(1, 0, 2)))
    gy_m = gy_t.reshape(Og, n * P)
    calls += [_gemm_call(w, gy_m, dcols, True, False)] if "conv2d_grad_input" in products else []
    calls += [_gemm_call(gy_m, cols_t, dw, False, True)] if "conv2d_grad_filter" in products else []
    return calls


def _gemm_call(a, b, c, trans_a, trans_b, one_thread=False):
    """c = op(a) @ op(b) (row-major) through the BLAS the generated code calls, with its
    thread rule (one BLAS thread below BLAS_THREAD_WORK multiply-adds; always with
    one_thread, as the parts of a one-image product run): a closure."""
    from codegen.llvm import blas
    from codegen.llvm.blas_call import row_major_gemm
    from codegen.llvm.matmul import BLAS_THREAD_WORK
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    gemm, set_threads = _blas_functions(a.dtype.name)
    product = row_major_gemm(gemm, a, b, c, trans_a, trans_b)
    if m * n * k >= BLAS_THREAD_WORK and not one_thread:
        return product

    def call():
        set_threads(1)
        product()
        set_threads(blas.configured_threads())
    return call


@functools.lru_cache(maxsize=None)
def _blas_functions(dtype: str):
    from codegen.llvm import blas
    from codegen.llvm.blas_call import gemm_function, threads_function
    addr = blas.gemm_addresses()
    return gemm_function(addr, dtype), threads_function(addr)

"""The compile cache: a whole compiled function kept on disk, so that compiling a graph
compiled before (in this process or another) runs no passes, no lowering and no code
generation, only a lookup, a check and a load.

An entry (`<key>.nga` in codegen.cache's directory, with its rules: written
atomically, checksum verified before use, used only when this user owns it and
nobody else can write it) holds what a hit needs: the Program (passes/program_codec:
JSON and raw arrays, no pickle), the object code, the pass log, and which of the
graph's parameters the compiled step reads and updates. The optimised graph and the
kernel -> graph-node map (`fn.dump("opt")`, `fn.stats()["fusion"]`, profiles,
reports, numerics errors in graph terms) are rebuilt from the graph the first time
something asks for them (`Rebuild`): the same passes on the same graph give the same
result.

The key is the sha256 of everything the result depends on:
- the graph's text with every node's file:line (error messages and dumps cite them),
  each parameter named by its position (`key_text`): parameter names are labels, and
  a layer built again gets a new one (ng.nn.LSTM's lstm_1, then lstm_2), so the same
  model built twice in one process shares one entry; a hit gives the stored buffers
  and fusion rows the names of the graph it serves (`adopt_names`);
- target, opt_level, check_numerics;
- the source of the four packages (nngraph, passes, codegen, runtime; each file's
  size and modification time, as Python's bytecode cache checks them): any edit to a
  pass, a lowering rule or the code generator;
- every module-level UPPER_CASE constant of passes, codegen and runtime that is a
  plain value (thresholds such as codegen.llvm.entry.N_THREADS, including values
  derived from the host when the module was imported, or set by a test): those of
  the loaded modules that differ from the module's pristine values (see "Pristine
  settings" below; a module not loaded yet has its pristine values);
- every NNGRAPH_* environment variable but the cache directory and NNGRAPH_RETIME;
- which BLAS the products call (codegen/llvm/blas.py: describe; the machine code is the
  same, but convolution layouts are timed with it, runtime/conv_choice.py);
- the host target (triple, CPU name and features, llvmlite and LLVM versions, LLVM
  options), the host facts and thresholds (codegen/host.py, codegen/tuning.py), the
  number of CPUs this process may use, Python's and NumPy's versions.
Graphs with collectives (their Program depends on the job's size) are not cached.
A function made with conv layouts that are still provisional (timed on a busy machine,
codegen/timing_trust.py) lists them in its entry; a process that has not timed them
again itself does not use it while they are due to be timed again (`settled`): its
compile is a miss whose lowering times them again, and its entry replaces the old one.

A hit's start (`key_context`) imports LLVM's binding, opens the BLAS (the object
code links to both) and reads the host facts; it imports none of the passes, the
lowering, the IR builders or the report (a miss imports them: `load_pipeline`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import sys

import numpy as np

from codegen import cache

FORMAT = b"NNGRAPH-FN1\n"
SUFFIX = ".nga"
PACKAGES = ("nngraph", "passes", "codegen", "runtime")
SETTINGS_PACKAGES = ("passes", "codegen", "runtime")
ALIGN = 64
PLAIN = (bool, int, float, str, type(None))
# NNGRAPH_* variables the compiled result does not depend on: where the cache is, and
# NNGRAPH_RETIME (runtime/host_choices.py: it drops the stored choices and the entries
# made with them; the entries made after are those of the new choices, for every run)
UNKEYED_VARIABLES = ("NNGRAPH_CACHE_DIR", "NNGRAPH_RETIME")
VALUE_NAME = re.compile(r"%(\w+)")     # a value as the textual IR names it: %x, %W1, %12


def cacheable(target: str, graph, dump_dir) -> bool:
    """A compile whose result this cache keeps: target "cpu", no dump_dir (that asks
    for the passes to run and write their IR), no collective in the graph."""
    return target == "cpu" and dump_dir is None and not any(n.op == "all_reduce" for n in graph.nodes())


def compile_key(graph_text: str, options: dict, context: str | None = None) -> str:
    """The entry's name: sha256 of the graph's key text (`key_text`), the options and
    everything else the compiled result depends on (`key_context`; see the module
    docstring)."""
    context = key_context() if context is None else context
    h = hashlib.sha256()
    for part in (FORMAT.decode(), graph_text, json.dumps(options, sort_keys=True), context):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def key_context(loaded_before=None) -> str:
    """What the keys of this moment share: the host key and the settings that differ
    from their pristine values. Starts LLVM and the BLAS (a hit needs both to load
    its object code) but imports none of the passes or IR builders: that is a hit's
    `startup`. `loaded_before`: the names in sys.modules when the compile began (the
    settings modules loaded since then are pristine and are recorded first)."""
    host = host_key()
    settings = _loaded_settings()           # read once: recorded and compared below
    table = _settings_table(host)
    if loaded_before is not None:
        table = _record(host, table, {m: c for m, c in settings.items() if m not in loaded_before})
    return host + "\n" + _deviations(settings, table)


def host_key() -> str:
    """sha256 of everything module constants are made of when imported, and of what
    the machine code depends on besides the IR: the source, the NNGRAPH_* variables,
    the host target (CPU, features, LLVM), the host facts read from the system and the
    thresholds derived from them and from the measured thread start cost
    (codegen/host.py, codegen/tuning.py: the thresholds, rounded to powers of two,
    rather than the measurement itself, which differs a little wherever it is taken
    again), the BLAS, the usable CPUs, Python, NumPy."""
    import dataclasses
    from codegen.host import host_facts
    from codegen.llvm.blas import describe
    from codegen.llvm.target_spec import target_id
    from codegen.tuning import tuning
    facts = repr(dataclasses.replace(host_facts(), thread_start_ns=0.0))
    h = hashlib.sha256()
    for part in (source_digest(), environment_text(), target_id(), facts, repr(tuning()),
                 describe(), str(_usable_cpus()), sys.version, np.__version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def param_names(graph) -> list:
    """[[name, name in the textual IR], ...] of the graph's parameters, in
    graph.params() order ("lstm_1.kernel" prints as %lstm_1_kernel)."""
    from nngraph.textir import value_names
    names = value_names(graph)
    return [[p.name, names[id(p)]] for p in graph.params()]


def key_text(graph, params: list) -> str:
    """The graph's text with locations, each parameter renamed `$i` after its position
    (in the state list, in the updates, and inside scan bodies, whose closed-over
    placeholders carry the parameter's name): two graphs with the same text up to
    their parameters' names compile to the same code. `params`: param_names(graph)."""
    from nngraph.textir import format_graph
    canonical = {printed: f"${i}" for i, (_, printed) in enumerate(params)}
    return rename_values(format_graph(graph, locations=True), canonical)


def rename_values(text: str, renames: dict) -> str:
    """`text` with every %name of `renames`' keys replaced by %renames[name], all at once
    (so a swap of two names is a swap)."""
    return VALUE_NAME.sub(lambda m: "%" + renames.get(m.group(1), m.group(1)), text)


def load_pipeline() -> None:
    """Import every module a CPU compile uses (a miss's `startup`, counted apart from
    the passes that would otherwise import them); a hit imports none of them."""
    import codegen.llvm.entry  # noqa: F401
    import passes.lowering  # noqa: F401
    import passes.pipeline  # noqa: F401
    import passes.program_codec  # noqa: F401
    import runtime.conv_choice  # noqa: F401
    import runtime.cpu  # noqa: F401
    import runtime.index_check  # noqa: F401
    import runtime.targets  # noqa: F401


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def source_digest() -> str:
    """sha256 of the path, size and modification time of every .py file of the four
    packages: what Python's own bytecode cache checks to decide that a module changed
    (so an edit is a miss, as it is a recompiled module), without reading ~250 files
    at a new process's first compile (computed once per process: the code that runs is
    the code imported at start)."""
    h = hashlib.sha256()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for package in PACKAGES:
        for folder, subfolders, files in os.walk(os.path.join(root, package)):
            subfolders.sort()
            for name in sorted(f for f in files if f.endswith(".py")):
                st = os.stat(os.path.join(folder, name))
                rel = os.path.relpath(os.path.join(folder, name), root)
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def settings_text() -> str:
    """The plain UPPER_CASE module constants of the loaded modules of passes, codegen and
    runtime, read at every compile (a test or a user may set one)."""
    return "\n".join(f"{name}.{k}={v}" for name, consts in _loaded_settings().items() for k, v in consts.items())


def _loaded_settings(names=None) -> dict:
    """{module name: {constant: canonical text}} of the loaded settings modules (or of
    those of `names`), sorted."""
    out = {}
    names = list(sys.modules) if names is None else names
    for name in sorted(m for m in names if m.split(".", 1)[0] in SETTINGS_PACKAGES):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = {k: _canonical(v) for k, v in sorted(vars(mod).items()) if k.isupper() and _plain(v)}
    return out


# Pristine settings. A module's constants, right after its import, are a function of
# what host_key covers (literals in its source; values derived from the host facts,
# the tuning and the NNGRAPH_* variables). A settings table per host key (a JSON file
# in the cache directory) records them for every module some compile imported: only
# modules imported during the compile that records them, when no user code can have
# changed them yet. A key lists only the loaded constants that differ from the table
# (or that it does not know); a module not loaded is pristine and lists nothing. So a
# new process's first compile needs neither the passes nor the code generator
# imported to find its entry, and a constant a test or a user sets is still a miss.

def _table_name(host: str) -> str:
    return f"settings-{host[:32]}.json"


def record_pristine(host: str, loaded_before) -> None:
    """Add the settings of the modules loaded since `loaded_before` (sys.modules'
    names when this compile began) to the host's settings table (only those modules'
    constants are read)."""
    fresh = [m for m in list(sys.modules) if m.split(".", 1)[0] in SETTINGS_PACKAGES and m not in loaded_before]
    if fresh:
        _record(host, _settings_table(host), _loaded_settings(fresh))


def _settings_table(host: str) -> dict:
    """{module: {constant: text}} of the host's settings table ({} when missing or damaged)."""
    known = cache.read_json_table(_table_name(host)).get("modules")
    return known if isinstance(known, dict) else {}


def _record(host: str, known: dict, fresh: dict) -> dict:
    """The table with the modules of `fresh` it does not know yet, written if any."""
    new = {m: c for m, c in fresh.items() if m not in known}
    if not new:
        return known
    table = dict(known, **new)
    cache.write_json_table(_table_name(host), {"modules": table})
    return table


def _deviations(settings: dict, known: dict) -> str:
    out = []
    for name, consts in settings.items():
        pristine = known.get(name)
        pristine = pristine if isinstance(pristine, dict) else {}
        out += [f"{name}.{k}={v}" for k, v in consts.items() if pristine.get(k) != v]
        out += [f"{name}.{k} deleted" for k in pristine if k not in consts]
    return "\n".join(out)


def _plain(v) -> bool:
    if isinstance(v, (tuple, frozenset)):
        return all(_plain(x) for x in v)
    return isinstance(v, PLAIN)


def _canonical(v) -> str:
    """repr, with sets sorted (their order changes from one process to the next)."""
    if isinstance(v, tuple):
        return "(" + ", ".join(map(_canonical, v)) + ")"
    if isinstance(v, frozenset):
        return "{" + ", ".join(sorted(map(_canonical, v))) + "}"
    return repr(v)


def environment_text() -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                     if k.startswith("NNGRAPH_") and k not in UNKEYED_VARIABLES)


# ----------------------------------------------------------------------------- entries

class Entry:
    """What a hit needs: the Program, its object code and the facts of the compile."""

    def __init__(self, program, obj: bytes, facts: dict):
        self.program, self.obj, self.facts = program, obj, facts


def store(key: str, program, obj: bytes, facts: dict) -> bool:
    """Write the entry (False when the Program holds something the codec does not store,
    or the directory is not usable)."""
    from passes.program_codec import CodecError, encode_program
    try:
        data, arrays = encode_program(program)
    except CodecError:
        return False
    blobs = [a.view(np.uint8).reshape(-1).data for a in arrays] + [memoryview(obj)]
    data["facts"] = dict(facts, provisional=program.stats.get("provisional_choices", []))
    data["object"] = len(blobs) - 1
    return cache.store(key, pack(data, blobs), SUFFIX)


def load(key: str):
    """The Entry stored under `key`, or None (absent, damaged, from another format, or
    made with provisional per-host choices that this process has not timed again:
    `settled`)."""
    from passes.program_codec import CodecError, decode_program
    payload = cache.load(key, SUFFIX)
    if payload is None:
        return None
    try:
        data, blobs = unpack(payload)
        obj = bytes(blobs[data["object"]])
        if not isinstance(data["facts"]["params"], list) or not settled(data["facts"].get("provisional", [])):
            return None
        arrays = [np.frombuffer(b, dtype=np.uint8) for b in blobs]
        return Entry(decode_program(data, arrays), obj, data["facts"])
    except (CodecError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return None


def settled(provisional) -> bool:
    """Can an entry made with these provisional conv layout choices ([host key, shape,
    choice] each, runtime/conv_choice.py: MeasuredChoices; checked by runtime/conv_table.py, which
    imports none of the passes) be used? Yes when there are
    none, or each is the answer now; else the compile is a miss, whose lowering times
    them again (codegen/timing_trust.py), and its entry replaces this one."""
    if not provisional:
        return True
    from .conv_table import settled as choices_settled
    return isinstance(provisional, list) and choices_settled(provisional)


def adopt_names(entry: Entry, new: list) -> None:
    """Give a hit the names of its graph's parameters (`new`: param_names of it) where
    they differ from those of the graph the entry was compiled for (same text
    otherwise: `key_text`): the buffers of
    each parameter, its update and its views (passes/program.param_buffer_name's rule,
    a suffix kept: W_new, W_view), and the %names in the fusion rows."""
    from passes.program import param_buffer_name
    old = entry.facts["params"]
    if old == new:
        return
    program = entry.program
    bases = {bid: (param_buffer_name(old[g][0]), param_buffer_name(new[g][0]))
             for bid, g in zip(program.params, entry.facts["run_params"])}
    for b in program.buffers.values():
        owner = next((o for o in (b.id, b.param, b.view_of) if o in bases), None)
        if owner is not None and b.name.startswith(bases[owner][0]):
            b.name = bases[owner][1] + b.name[len(bases[owner][0]):]
    printed = {o[1]: n[1] for o, n in zip(old, new)}
    entry.facts["params"] = new
    entry.facts["fusion"] = [{k: _renamed(v, printed) for k, v in row.items()} for row in entry.facts["fusion"]]


def _renamed(value, printed: dict):
    if isinstance(value, str):
        return rename_values(value, printed)
    if isinstance(value, list):
        return [_renamed(v, printed) for v in value]
    return value


def pack(data: dict, blobs: list) -> bytes:
    """FORMAT, the JSON's length (8 bytes), the JSON, then each blob at a multiple of
    ALIGN bytes; the JSON lists the blobs' (offset, length) from the payload's start."""
    head = len(FORMAT) + 8
    text = b""
    while True:             # the JSON lists the blobs' offsets, which follow the JSON
        start = _align(head + len(text))
        offsets, pos = [], start
        for b in blobs:
            offsets.append([pos, b.nbytes])
            pos = _align(pos + b.nbytes)
        text = json.dumps(dict(data, blobs=offsets)).encode()
        if head + len(text) <= start:
            break
    out = bytearray(pos)
    out[:len(FORMAT)] = FORMAT
    out[len(FORMAT):head] = struct.pack("<Q", len(text))
    out[head:head + len(text)] = text
    for (off, n), b in zip(offsets, blobs):
        out[off:off + n] = b
    return bytes(out)


def unpack(payload: bytes):
    """(JSON dict, list of memoryviews) of a `pack` payload; ValueError if malformed."""
    if not payload.startswith(FORMAT):
        raise ValueError("not a compiled-function entry of this format")
    head = len(FORMAT) + 8
    (n,) = struct.unpack("<Q", payload[len(FORMAT):head])
    data = json.loads(payload[head:head + n])
    view = memoryview(payload)
    blobs = []
    for off, size in data["blobs"]:
        if off < head + n or off + size > len(payload):
            raise ValueError("a blob lies outside the entry")
        blobs.append(view[off:off + size])
    return data, blobs


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# ----------------------------------------------------------------------------- a hit's lazy parts

class Rebuild:
    """The optimised graph and the Program's kernel -> node map of a cache hit, made by
    running the passes and the lowering again the first time one is asked for."""

    def __init__(self, checked_graph, opt_level: int):
        self._graph, self._opt_level = checked_graph, opt_level
        self._opt = self._nodes = None

    def opt_graph(self):
        if self._opt is None:
            from passes.pipeline import optimize
            self._opt, _ = optimize(self._graph, opt_level=self._opt_level)
        return self._opt

    def node_map(self):
        if self._nodes is None:
            from passes.lowering import to_program
            self._nodes = to_program(self.opt_graph(), self._opt_level).nodes
        return self._nodes


class LazyNodeMap:
    """Stands for `Program.nodes` on a hit: the real map (passes/kernel_map.NodeMap),
    rebuilt on first use, answers every attribute."""

    def __init__(self, rebuild: Rebuild):
        self._rebuild = rebuild

    def __getattr__(self, name):
        return getattr(self.__dict__["_rebuild"].node_map(), name)

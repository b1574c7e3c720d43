"""The NumPy reference interpreter: the oracle every pass and backend is checked against.

It runs each node's reference implementation in topological order. Correctness
matters here more than speed.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError, NumericsError
from .graph import toposort
from .node import OPS, Parameter, Tensor
from .size_unify import explain_mismatch
from .types import Dim, TupleType, concrete_shape, np_dtype


class Ctx:
    """What a reference implementation may ask about the node it computes."""

    __slots__ = ("node", "env", "check_numerics")

    def __init__(self, node: Tensor, env: dict, check_numerics: bool = False):
        self.node, self.env, self.check_numerics = node, env, check_numerics

    @property
    def attrs(self) -> dict:
        return self.node.attrs

    @property
    def out_shape(self) -> tuple:
        return concrete_shape(self.node.shape, self.env)

    def resolve(self, sizes) -> tuple:
        return concrete_shape(sizes, self.env)

    def resolve_size(self, s) -> int:
        return self.env[s.name] if isinstance(s, Dim) else s


def bind_dims(placeholders, arrays, env=None, joins=None) -> dict:
    """Bind symbolic sizes from the given arrays; raise InputError on any mismatch,
    naming the placeholder, its type, what was given and where a clashing size came from
    (and, for sizes an op joined, `joins` from nngraph/sizes.py, that op and its line)."""
    env = dict(env or {})
    source = {}  # symbol -> (input label, axis, placeholder) that bound it
    for i, (ph, a) in enumerate(zip(placeholders, arrays)):
        label = ph.name or f"#{i}"
        if a.ndim != ph.ndim:
            raise InputError(f"input '{label}': expected {ph.type} (rank {ph.ndim}), got {_given(a)} (rank {a.ndim})")
        for ax, (s, g) in enumerate(zip(ph.shape, a.shape)):
            if isinstance(s, Dim):
                if s.name in env and env[s.name] != g:
                    src = source.get(s.name)
                    frm = f"input '{src[0]}' axis {src[1]}" if src else "the bound sizes"
                    why = explain_mismatch(joins, src[2], src[1], ph, ax) if src else ""
                    raise InputError(f"input '{label}': expected {ph.type}, got {_given(a)}: {s} is "
                                     f"{env[s.name]} from an earlier input ({frm}) but {g} here (axis {ax}); "
                                     f"inputs that share the size {s} must agree{why}")
                env[s.name] = g
                source.setdefault(s.name, (label, ax, ph))
            elif s != g:
                raise InputError(f"input '{label}': expected {ph.type}, got {_given(a)}: axis {ax} "
                                 f"must be {s}, got {g}")
    return env


def _given(a: np.ndarray) -> str:
    from .types import DTYPES, as_dtype
    try:
        short = DTYPES[as_dtype(a.dtype)][0]
    except TypeError:
        short = str(a.dtype)
    return f"{short}[{','.join(map(str, a.shape))}]"


def evaluate(outputs, feeds: dict, env: dict | None = None, params: dict | None = None,
             check_numerics: bool = False) -> list:
    """Compute `outputs` given feeds {placeholder node: array}. Parameters read their
    own value unless `params` maps id(param) to another array."""
    return Plan(outputs, check_numerics).run(feeds, env, params)


class Plan:
    """The nodes that compute `outputs`, in order, found once and run many times (a
    scan runs its body's plan once per step, nngraph/ops/scan.py)."""

    def __init__(self, outputs, check_numerics: bool = False):
        self.outputs = list(outputs)
        self.order = toposort(self.outputs)
        self.check_numerics = check_numerics

    def run(self, feeds: dict, env: dict | None = None, params: dict | None = None) -> list:
        env = dict(env or {})
        vals: dict[int, np.ndarray] = {id(ph): a for ph, a in feeds.items()}
        params = params or {}
        for n in self.order:
            if id(n) in vals:
                continue
            if n.op == "placeholder":
                raise InputError(f"input '{n.name}' ({n.type}) was not given")
            if isinstance(n, Parameter):
                vals[id(n)] = params.get(id(n), n.value)
                continue
            out = OPS[n.op].reference(Ctx(n, env, self.check_numerics), *[vals[id(i)] for i in n.inputs])
            if isinstance(n.type, TupleType):
                vals[id(n)] = tuple(_checked(o, t, n, env, self.check_numerics) for o, t in zip(out, n.type.parts))
            else:
                vals[id(n)] = _checked(out, n.type, n, env, self.check_numerics)
        return [vals[id(o)] for o in self.outputs]


def _checked(out, t, n: Tensor, env: dict, check_numerics: bool) -> np.ndarray:
    """A reference result as an array of type t (the node's type, or one of its parts)."""
    out = np.asarray(out)
    want = np_dtype(t.dtype)
    if out.dtype != want:
        out = out.astype(want)
    shape = concrete_shape(t.shape, env)
    if out.shape != shape:
        raise AssertionError(f"reference of {n.op} gave shape {out.shape}, type says {shape} ({n.where})")
    if check_numerics and out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        raise NumericsError(f"{n.op} made a non-finite value ({'NaN' if np.isnan(out).any() else 'inf'}) "
                            f"in {t} built at {n.where}")
    return out

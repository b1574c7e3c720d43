"""The textual IR: every stage prints in it, tests are written in it, it parses back.

    func @main(%x: f32[N,784], %y: i32[N]) state(%W: f32[784,10]) {
      %0 = matmul %x, %W : f32[N,10]
      %1 = sum %0 {axes=(0,1), keepdims=false} : f32[]
      update %W <- %5
      return %1
    }

One line per node, its type after the colon, attributes by name. Parameters are
listed in `state(...)` (values are not part of the IR; parse gives zeros).
`ng.format(ng.parse(s)) == s`.
"""
from __future__ import annotations

import math
import re

import numpy as np

from .errors import ParseError
from .graph import Graph, toposort
from .node import OPS, ConstValue, Parameter, Tensor, make
from .types import DTYPES, SHORT_TO_DTYPE, Dim, TensorType

# ----------------------------------------------------------------------------- printing


def _fmt_scalar(v) -> str:
    if isinstance(v, np.float32):
        if np.isfinite(v):
            return str(v)  # shortest text that reads back to the same float32
        v = float(v)
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def _fmt_dense(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _fmt_scalar(a[()])
    return "[" + ", ".join(_fmt_dense(x) for x in a) + "]"


def _fmt_attr(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _fmt_scalar(v)
    if isinstance(v, Dim):
        return v.name
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "(" + ",".join(_fmt_attr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, ConstValue):
        return "dense<" + _fmt_dense(v.array) + ">"
    raise TypeError(f"cannot print attribute {v!r}")


def format_graph(g: Graph, locations: bool = False) -> str:
    """The graph as text; `locations=True` adds '# file:line' of each node's builder."""
    names: dict[int, str] = {}
    used: set = set()

    def fresh(base: str) -> str:
        base = re.sub(r"\W", "_", base)
        n, k = base, 1
        while n in used or n.isdigit():
            n, k = f"{base}_{k}", k + 1
        used.add(n)
        return n

    args = []
    for i, ph in enumerate(g.inputs):
        names[id(ph)] = fresh(ph.name or f"arg{i}")
        args.append(f"%{names[id(ph)]}: {ph.type}")
    params = [p for p in g.params()]
    state = []
    for i, p in enumerate(params):
        names[id(p)] = fresh(p.name or f"p{i}")
        extra = "" if p.trainable else " {trainable=false}"
        state.append(f"%{names[id(p)]}: {p.type}{extra}")
    head = f"func @{g.name}({', '.join(args)})"
    if state:
        head += f" state({', '.join(state)})"
    lines = [head + " {"]
    counter = 0
    for n in toposort(g.roots()):
        if id(n) in names:
            continue
        if n.op == "placeholder":
            raise ParseError(f"placeholder {n.name} is used but is not an input of the graph")
        names[id(n)] = str(counter)
        counter += 1
        if n.op == "constant":
            a = n.attrs["value"].array
            body = f"constant {_fmt_scalar(a[()]) if a.ndim == 0 else _fmt_attr(n.attrs['value'])}"
        else:
            body = n.op
            if n.inputs:
                body += " " + ", ".join(f"%{names[id(i)]}" for i in n.inputs)
            if n.attrs:
                body += " {" + ", ".join(f"{k}={_fmt_attr(v)}" for k, v in n.attrs.items()) + "}"
        line = f"  %{names[id(n)]} = {body} : {n.type}"
        if locations:
            line += f"  # {n.where}"
        lines.append(line)
    for p, v in g.updates:
        lines.append(f"  update %{names[id(p)]} <- %{names[id(v)]}")
    lines.append("  return " + ", ".join(f"%{names[id(o)]}" for o in g.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"


def format(x, locations: bool = False) -> str:
    """ng.format: a Graph, a tensor or a list of tensors as textual IR."""
    if isinstance(x, Graph):
        return format_graph(x, locations)
    outs = [x] if isinstance(x, Tensor) else list(x)
    phs, seen = [], set()
    for n in toposort(outs):
        if n.op == "placeholder" and id(n) not in seen:
            seen.add(id(n))
            phs.append(n)
    return format_graph(Graph(phs, outs), locations)


# ----------------------------------------------------------------------------- parsing

_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+(?:[eE][-+]?\d+)?|\d+|inf|nan))|(?P<id>[A-Za-z_]\w*)|(?P<p>[(),\[\]<>{}=]))""")


class _Attr:
    """A tiny recursive-descent reader for attribute values."""

    def __init__(self, s: str, line: int):
        self.s, self.i, self.line = s, 0, line

    def err(self, msg):
        return ParseError(f"line {self.line}: {msg} in {self.s!r}")

    def tok(self):
        m = _TOKEN.match(self.s, self.i)
        if not m or m.end() == self.i:
            raise self.err(f"unexpected text at {self.s[self.i:]!r}")
        self.i = m.end()
        kind = m.lastgroup
        return kind, m.group(kind)

    def peek(self):
        save = self.i
        try:
            return self.tok()
        finally:
            self.i = save

    def value(self):
        kind, t = self.tok()
        if kind == "str":
            return bytes(t[1:-1], "utf-8").decode("unicode_escape")
        if kind == "num":
            return _num(t)
        if kind == "id":
            if t == "true":
                return True
            if t == "false":
                return False
            if t == "dense":
                self.expect("<")
                v = self.nested()
                self.expect(">")
                return ("dense", v)
            return Dim(t)
        if t == "(":
            items = []
            while self.peek() != ("p", ")"):
                items.append(self.value())
                if self.peek() == ("p", ","):
                    self.tok()
            self.tok()
            return tuple(items)
        if t == "[":
            self.i -= 1
            return ("dense", self.nested())
        raise self.err(f"unexpected {t!r}")

    def nested(self):
        kind, t = self.tok()
        if t == "[":
            items = []
            while self.peek() != ("p", "]"):
                items.append(self.nested())
                if self.peek() == ("p", ","):
                    self.tok()
            self.tok()
            return items
        if kind == "num":
            return _num(t)
        if t in ("true", "false"):
            return t == "true"
        raise self.err(f"unexpected {t!r} in a dense literal")

    def expect(self, p):
        kind, t = self.tok()
        if t != p:
            raise self.err(f"expected {p!r}, got {t!r}")

    def attrs(self) -> dict:
        out = {}
        self.expect("{")
        while self.peek() != ("p", "}"):
            kind, k = self.tok()
            self.expect("=")
            out[k] = self.value()
            if self.peek() == ("p", ","):
                self.tok()
        self.tok()
        return out


def _num(t: str):
    if t in ("inf", "+inf", "-inf", "nan", "+nan", "-nan"):
        return float(t)
    if re.fullmatch(r"[-+]?\d+", t):
        return int(t)
    return float(t)


_TYPE = re.compile(r"^(\w+)\[([^\]]*)\]$")


def parse_type(s: str, line: int = 0) -> TensorType:
    m = _TYPE.match(s.strip())
    if not m or m.group(1) not in SHORT_TO_DTYPE:
        raise ParseError(f"line {line}: bad type {s!r} (expected e.g. f32[N,784])")
    dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
    return TensorType(SHORT_TO_DTYPE[m.group(1)], tuple(int(d) if d.isdigit() else Dim(d) for d in dims))


_HEAD = re.compile(r"^func @(\w+)\((.*?)\)(?: state\((.*)\))? \{$")
_NODE = re.compile(r"^%(\w+) = (\w+)(.*?) : (\w+\[[^\]]*\])(?:\s+#\s*(\S.*))?$")


def _split_args(s: str) -> list:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [a.strip() for a in out]


def _thaw(op, attrs):
    out = {}
    for k, v in attrs.items():
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "dense":
            v = v[1]
        out[k] = v
    return out


def parse(text: str) -> Graph:
    """Read a graph back from its textual IR. Parameters are new, holding zeros."""
    lines = [ln.rstrip() for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise ParseError("empty text")
    m = _HEAD.match(lines[0].strip())
    if not m:
        raise ParseError(f"line 1: expected 'func @name(%x: f32[...], ...) {{', got {lines[0]!r}")
    env: dict[str, Tensor] = {}
    inputs = []
    from .api import parameter, placeholder
    for a in _split_args(m.group(2)):
        nm, ty = a.split(":", 1)
        t = parse_type(ty, 1)
        ph = placeholder(t.shape, t.dtype, name=nm.strip().lstrip("%"))
        env[ph.name] = ph
        inputs.append(ph)
    for a in _split_args(m.group(3) or ""):
        nm, rest = a.split(":", 1)
        trainable = True
        if "{" in rest:
            rest, at = rest.split("{", 1)
            trainable = "trainable=false" not in at
        t = parse_type(rest, 1)
        if not t.is_static:
            raise ParseError(f"line 1: parameter {nm.strip()} must have a static shape, got {t}")
        p = parameter(np.zeros(t.shape, DTYPES[t.dtype][1]), name=nm.strip().lstrip("%"), trainable=trainable)
        env[p.name] = p
    outputs, updates = None, []
    for lineno, ln in enumerate(lines[1:], start=2):
        s = ln.strip()
        if s == "}":
            break
        if s.startswith("update "):
            mm = re.match(r"^update %(\w+) <- %(\w+)$", s)
            if not mm or mm.group(1) not in env or mm.group(2) not in env:
                raise ParseError(f"line {lineno}: bad update {s!r}")
            updates.append((env[mm.group(1)], env[mm.group(2)]))
            continue
        if s.startswith("return"):
            names = [x.strip().lstrip("%") for x in s[len("return"):].split(",") if x.strip()]
            for n in names:
                if n not in env:
                    raise ParseError(f"line {lineno}: return of undefined %{n}")
            outputs = [env[n] for n in names]
            continue
        mm = _NODE.match(s)
        if not mm:
            raise ParseError(f"line {lineno}: cannot read {s!r}")
        name, op, rest, ty, where = mm.groups()
        t = parse_type(ty, lineno)
        if op not in OPS:
            raise ParseError(f"line {lineno}: unknown op {op!r}")
        rest = rest.strip()
        if op == "constant":
            r = _Attr(rest, lineno)
            v = r.value()
            arr = np.asarray(v[1] if isinstance(v, tuple) else v, dtype=DTYPES[t.dtype][1]).reshape(
                tuple(t.shape))
            node = make("constant", (), where=where, canonical=False, value=ConstValue(arr))
        else:
            attrs = {}
            if "{" in rest:
                rest, at = rest.split("{", 1)
                attrs = _thaw(op, _Attr("{" + at, lineno).attrs())
            ins = []
            for a in [x.strip() for x in rest.split(",") if x.strip()]:
                if not a.startswith("%") or a[1:] not in env:
                    raise ParseError(f"line {lineno}: undefined operand {a}")
                ins.append(env[a[1:]])
            node = make(op, ins, where=where, canonical=False, **attrs)
        if node.type != t:
            raise ParseError(f"line {lineno}: {op} gives {node.type}, the text says {t}")
        env[name] = node
    if outputs is None:
        raise ParseError("no return line")
    name = m.group(1)
    return Graph(inputs, outputs, updates, name)

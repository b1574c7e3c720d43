"""The textual IR: every stage prints in it, tests are written in it, it parses back.

    func @main(%x: f32[N,784], %y: i32[N]) state(%W: f32[784,10], %s: i64[] {trainable=false}) {
      %0 = matmul %x, %W : f32[N,10]
      %1 = sum %0 {axes=(0,1), keepdims=false} : f32[]
      %2 = constant dense<[1.0, 2.0]> : f32[2]
      update %W <- %5
      return %1
    }

One line per node: `%name = op operands {attrs} : type`. Attribute values are
ints, floats (`1.0`, `inf`, `nan`), `true`/`false`, `none`, strings in JSON
quotes, symbolic sizes by name, tuples `(a,b)` / `(a,)` / `()`, and arrays
`dense<[..] : i32[2]>`. Parameters are listed in `state(...)` in
`Graph.params()` order (updated ones first, then by first use); their values
are not part of the IR (parse gives zeros).

`format(g, locations=True)` ends each node line with `# file:line`, the place
in the user's code that built it, and writes the header one argument per line
so placeholders and parameters carry theirs too:

    func @main(
        %x: f32[N,784],  # model.py:3
    ) state(
        %W: f32[784,10],  # model.py:4
    ) {

`parse` restores `where` from those comments (a node without one gets
`<ir>:LINE`), so `format(parse(s)) == s` with or without locations. Errors in
the text raise `ParseError` naming the line.
"""
from __future__ import annotations

import json
import math
import re

import numpy as np

from .errors import NNGraphError, ParseError
from .graph import Graph, toposort
from .node import OPS, ConstValue, Parameter, Tensor, make
from .size_unify import unify
from .types import DTYPES, SHORT_TO_DTYPE, Dim, TensorType, as_dtype

# ----------------------------------------------------------------------------- printing


def _fmt_scalar(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, np.float32) and np.isfinite(v):
        return str(v)  # numpy prints the shortest text that reads back to the same float32
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


def _array_type(a: np.ndarray) -> TensorType:
    return TensorType(as_dtype(a.dtype), a.shape)


def _fmt_attr(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)):
        return _fmt_scalar(v)
    if isinstance(v, Dim):
        return v.name
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, tuple):
        return "(" + ",".join(_fmt_attr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, ConstValue):
        return f"dense<{_fmt_dense(v.array)} : {_array_type(v.array)}>"
    raise TypeError(f"the textual IR cannot print attribute value {v!r} ({type(v).__name__})")


def _namer():
    used: set = set()

    def fresh(base: str) -> str:
        base = re.sub(r"\W", "_", base) or "_"
        n, k = base, 1
        while n in used or n.isdigit():  # digits are reserved for numbered nodes
            n, k = f"{base}_{k}", k + 1
        used.add(n)
        return n
    return fresh


def value_names(g: Graph) -> dict:
    """id(node) -> the name the textual IR gives it ("x", "W", "12"): the report, the
    profile and the fusion reasons cite nodes as the dump of the same graph does."""
    names: dict[int, str] = {}
    fresh = _namer()
    for i, ph in enumerate(g.inputs):
        names.setdefault(id(ph), fresh(ph.name or f"arg{i}"))
    for i, p in enumerate(g.params()):
        names[id(p)] = fresh(p.name or f"p{i}")
    counter = 0
    for n in toposort(g.roots()):
        if id(n) not in names:
            names[id(n)] = str(counter)
            counter += 1
    return names


def nested_value_names(g: Graph) -> dict:
    """value_names of g and of every scan body in it, a body's values named after the
    scan that holds them (`5/0`: value 0 of scan %5's body), as the report draws them."""
    names = value_names(g)
    for n in g.nodes():
        if n.op == "scan":
            for key, name in nested_value_names(n.attrs["body"].graph).items():
                names.setdefault(key, f"{names[id(n)]}/{name}")
    return names


def format_graph(g: Graph, locations: bool = False) -> str:
    """The graph as text; `locations=True` adds '# file:line' of each node's builder.
    Joined dynamic sizes print as one symbol (nngraph/size_unify.py)."""
    g = unify(g)
    seen: set = set()
    for i, ph in enumerate(g.inputs):
        if id(ph) in seen:
            raise ValueError(f"placeholder {ph.name or i} is listed twice among the graph's inputs")
        seen.add(id(ph))
    names = value_names(g)
    args = [(f"%{names[id(ph)]}: {ph.type}", ph.where) for ph in g.inputs]
    state = [(f"%{names[id(p)]}: {p.type}" + ("" if p.trainable else " {trainable=false}"), p.where)
             for p in g.params()]
    gname = re.sub(r"\W", "_", g.name or "main") or "main"
    lines = _format_header(gname, args, state, locations)
    lines += _node_lines(g, names, locations, "  ")
    for p, v in g.updates:
        lines.append(f"  update %{names[id(p)]} <- %{names[id(v)]}")
    lines.append("  return" + "".join((" " if k == 0 else ", ") + f"%{names[id(o)]}"
                                      for k, o in enumerate(g.outputs)))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_lines(g: Graph, names: dict, locations: bool, indent: str) -> list:
    """One line per node of g (a scan: its line, then its body nested below it)."""
    inputs = {id(x) for x in g.inputs}
    lines = []
    for n in toposort(g.roots()):
        if n.op == "placeholder" and id(n) not in inputs:
            raise ValueError(f"placeholder '{n.name}' ({n.type}, made at {n.where}) is used "
                             "but is not an input of the graph")
        if n.op == "placeholder" or isinstance(n, Parameter):
            continue
        if n.op == "constant":
            a = n.attrs["value"].array
            body = "constant " + (_fmt_scalar(a[()]) if a.ndim == 0 else f"dense<{_fmt_dense(a)}>")
        else:
            body = n.op
            if n.inputs:
                body += " " + ", ".join(f"%{names[id(i)]}" for i in n.inputs)
            attrs = {k: v for k, v in n.attrs.items() if k != "body" or n.op != "scan"}
            if attrs:
                body += " {" + ", ".join(f"{k}={_fmt_attr(v)}" for k, v in attrs.items()) + "}"
        line = f"{indent}%{names[id(n)]} = {body} : {n.type}" + (" {" if n.op == "scan" else "")
        lines.append(line + (f"  # {n.where}" if locations else ""))
        if n.op == "scan":
            lines += _region_lines(n.attrs["body"], locations, indent + "  ")
            lines.append(indent + "}")
    return lines


def _region_lines(body, locations: bool, indent: str) -> list:
    """A scan's body: `^(carries; xs; closed-over values):`, its nodes, `yield carries; ys`."""
    g = body.graph
    names = value_names(g)
    k, nx = body.n_carry, body.n_xs

    def group(items):
        return ", ".join(items)
    decl = [f"%{names[id(p)]}: {p.type}" for p in g.inputs]
    lines = [f"{indent}^({group(decl[:k])}; {group(decl[k:k + nx])}; {group(decl[k + nx:])}):"]
    lines += _node_lines(g, names, locations, indent)
    outs = [f"%{names[id(o)]}" for o in g.outputs]
    lines.append(f"{indent}yield {group(outs[:k])}; {group(outs[k:])}".rstrip())
    return lines


def _format_header(gname, args, state, locations) -> list:
    if not locations:
        head = f"func @{gname}({', '.join(a for a, _ in args)})"
        if state:
            head += f" state({', '.join(s for s, _ in state)})"
        return [head + " {"]
    lines = [f"func @{gname}("]
    lines += [f"    {a}{',' if k < len(args) - 1 else ''}  # {w}" for k, (a, w) in enumerate(args)]
    if state:
        lines.append(") state(")
        lines += [f"    {s}{',' if k < len(state) - 1 else ''}  # {w}" for k, (s, w) in enumerate(state)]
    lines.append(") {")
    return lines


def format(x, locations: bool = False) -> str:
    """ng.format: a Graph, a compiled Function, a tensor or a list of tensors as textual IR."""
    if isinstance(x, Graph):
        return format_graph(x, locations)
    if isinstance(getattr(x, "graph", None), Graph):
        return format_graph(x.graph, locations)
    outs = [x] if isinstance(x, Tensor) else list(x)
    phs, seen = [], set()
    for n in toposort(outs):
        if n.op == "placeholder" and id(n) not in seen:
            seen.add(id(n))
            phs.append(n)
    return format_graph(Graph(phs, outs), locations)


# ----------------------------------------------------------------------------- reading values

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<num>[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+(?:[eE][-+]?\d+)?|\d+|inf\b|nan\b))
  | (?P<ref>%\w+)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<p>[(),\[\]<>{}=:]))""", re.X)
_TYPE_AT = re.compile(r"\s*(\w+\[[^\]]*\])")


class _Reader:
    """A small recursive-descent reader for operands, attribute values and literals."""

    def __init__(self, s: str, line: int):
        self.s, self.i, self.line = s, 0, line

    def err(self, msg):
        return ParseError(f"line {self.line}: {msg} in {self.s.strip()!r}")

    def at_end(self) -> bool:
        return not self.s[self.i:].strip()

    def tok(self):
        m = _TOKEN.match(self.s, self.i)
        if not m:
            rest = self.s[self.i:].strip()
            raise self.err(f"unexpected text {rest!r}" if rest else "unexpected end of text")
        self.i = m.end()
        return m.lastgroup, m.group(m.lastgroup)

    def peek(self):
        save = self.i
        try:
            return self.tok()
        except ParseError:
            return None, None
        finally:
            self.i = save

    def expect(self, p):
        kind, t = self.tok()
        if t != p:
            raise self.err(f"expected {p!r}, got {t!r}")

    def value(self):
        kind, t = self.tok()
        if kind == "str":
            try:
                return json.loads(t)
            except ValueError:
                raise self.err(f"bad string {t}") from None
        if kind == "num":
            return _num(t)
        if kind == "id":
            if t in ("true", "false"):
                return t == "true"
            if t == "none":
                return None
            if t == "dense":
                return self.dense()
            return Dim(t)
        if t == "(":
            items = []
            while self.peek()[1] != ")":
                items.append(self.value())
                if self.peek()[1] == ",":
                    self.tok()
                elif self.peek()[1] != ")":
                    raise self.err("expected ',' or ')' in a tuple")
            self.tok()
            return tuple(items)
        raise self.err(f"unexpected {t!r}")

    def dense(self) -> ConstValue:
        """dense<LITERAL : TYPE> (the type may be left out where the context gives it)."""
        self.expect("<")
        lit = self.nested()
        ty = None
        if self.peek()[1] == ":":
            self.tok()
            m = _TYPE_AT.match(self.s, self.i)
            if not m:
                raise self.err("expected a type after ':' in dense<...>")
            self.i = m.end()
            ty = parse_type(m.group(1), self.line)
        self.expect(">")
        if ty is None:
            return ("dense", lit)
        return ConstValue(_array(lit, ty, self.line))

    def nested(self):
        kind, t = self.tok()
        if t == "[":
            items = []
            while self.peek()[1] != "]":
                items.append(self.nested())
                if self.peek()[1] == ",":
                    self.tok()
                elif self.peek()[1] != "]":
                    raise self.err("expected ',' or ']' in an array literal")
            self.tok()
            return items
        if kind == "num":
            return _num(t)
        if t in ("true", "false"):
            return t == "true"
        raise self.err(f"unexpected {t!r} in an array literal")

    def literal(self):
        """A constant's value: a scalar or dense<[...]> (shape and dtype from the node type)."""
        kind, t = self.peek()
        if t == "dense":
            self.tok()
            v = self.dense()
            return v[1] if isinstance(v, tuple) else v.array
        return self.nested()

    def operands(self) -> list:
        out = []
        while self.peek()[0] == "ref":
            out.append(self.tok()[1][1:])
            if self.peek()[1] != ",":
                break
            self.tok()
        return out

    def attrs(self) -> dict:
        out = {}
        self.expect("{")
        while self.peek()[1] != "}":
            kind, k = self.tok()
            if kind != "id":
                raise self.err(f"expected an attribute name, got {k!r}")
            if k in out:
                raise self.err(f"attribute {k} given twice")
            self.expect("=")
            out[k] = self.value()
            if self.peek()[1] == ",":
                self.tok()
            elif self.peek()[1] != "}":
                raise self.err("expected ',' or '}' between attributes")
        self.tok()
        return out


def _num(t: str):
    if re.fullmatch(r"[-+]?\d+", t):
        return int(t)
    return float(t)


def _leaves(v):
    if isinstance(v, list):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


def _array(lit, t: TensorType, line: int) -> np.ndarray:
    """A literal as an array of type t; ints only for int types, bools only for bool."""
    if not t.is_static:
        raise ParseError(f"line {line}: a constant needs a static type, got {t}")
    for v in _leaves(lit):
        ok = (isinstance(v, bool) if t.dtype == "bool" else
              (isinstance(v, int) and not isinstance(v, bool)) if t.dtype in ("int32", "int64") else
              not isinstance(v, bool))
        if not ok:
            raise ParseError(f"line {line}: value {_fmt_scalar(v)} does not fit {t.dtype}")
    dt = DTYPES[t.dtype][1]
    try:
        a = np.array(lit, dtype=dt)
    except (ValueError, OverflowError) as e:
        raise ParseError(f"line {line}: bad literal for {t}: {e}") from None
    if a.shape != t.shape:
        if a.ndim == 0 and t.ndim > 0 and not isinstance(lit, list):
            raise ParseError(f"line {line}: a scalar literal for type {t}; write dense<[...]>")
        if a.size != int(np.prod(t.shape, dtype=np.int64)) or isinstance(lit, list) and a.ndim != t.ndim and a.size:
            raise ParseError(f"line {line}: literal of shape {list(a.shape)} does not match {t}")
        a = a.reshape(t.shape)
    return a


_TYPE = re.compile(r"^(\w+)\[([^\]]*)\]$")


def parse_type(s: str, line: int = 0) -> TensorType:
    """'f32[N,784]' -> TensorType."""
    m = _TYPE.match(s.strip())
    if not m or m.group(1) not in SHORT_TO_DTYPE:
        raise ParseError(f"line {line}: bad type {s.strip()!r} (expected e.g. f32[N,784]; dtypes: "
                         f"{', '.join(SHORT_TO_DTYPE)})")
    dims = [d.strip() for d in m.group(2).split(",")] if m.group(2).strip() else []
    shape = []
    for d in dims:
        if d.isdigit():
            shape.append(int(d))
        elif d.isidentifier():
            shape.append(Dim(d))
        else:
            raise ParseError(f"line {line}: bad size {d!r} in type {s.strip()!r}")
    return TensorType(SHORT_TO_DTYPE[m.group(1)], tuple(shape))


# ----------------------------------------------------------------------------- reading a graph


def _split_comment(line: str) -> tuple[str, str | None]:
    """Code and the text of a trailing '# ...' comment (a '#' inside a string is code)."""
    in_str = esc = False
    for k, ch in enumerate(line):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "#":
            return line[:k].rstrip(), line[k + 1:].strip() or None
    return line.rstrip(), None


_HEAD = re.compile(r"^\s*func\s+@(\w+)\s*\((.*?)\)\s*(?:state\s*\((.*?)\))?\s*\{\s*$", re.S)
_DECL = re.compile(r"\s*%(\w+)\s*:\s*(\w+\[[^\]]*\])\s*(\{[^}]*\})?\s*")
_NODE = re.compile(r"^\s*%(\w+)\s*=\s*(\w+)(.*?)\s*:\s*(\w+\[[^\]]*\])\s*$")
_UPDATE = re.compile(r"^\s*update\s+%(\w+)\s*<-\s*%(\w+)\s*$")


def _decls(section: str | None, offset: int, joined: str, first: int) -> list:
    """(name, type text, attrs text, line number) per declaration in a header section;
    `offset` is where the section starts in the joined header text, which starts on line `first`."""
    out, pos, section = [], 0, section or ""

    def line_at(k):
        return first + joined.count("\n", 0, offset + k)

    while section[pos:].strip():
        start = pos + len(section[pos:]) - len(section[pos:].lstrip())
        m = _DECL.match(section, pos)
        if not m:
            raise ParseError(f"line {line_at(start)}: cannot read the declaration "
                             f"{section[start:].splitlines()[0].strip()!r} (expected %name: f32[N,4])")
        out.append((m.group(1), m.group(2), m.group(3), line_at(m.start(1))))
        pos = m.end()
        if pos < len(section):
            if section[pos] != ",":
                raise ParseError(f"line {line_at(pos)}: expected ',' after %{m.group(1)}")
            pos += 1
    return out


def parse(text: str, source: str = "<ir>") -> Graph:
    """Read a graph back from its textual IR. Parameters are new, holding zeros.
    Nodes without a '# file:line' comment are placed at `source`:LINE."""
    items = []  # (line number, code, comment) of every line that has code
    for k, ln in enumerate(text.splitlines(), start=1):
        code, comment = _split_comment(ln)
        if code.strip():
            items.append((k, code, comment))
    if not items:
        raise ParseError("line 1: empty text (expected 'func @name(...) {')")
    name, inputs, env, h = _parse_header(items, source)
    outputs, updates = _parse_body(items[h + 1:], env, source, items[-1][0])
    return Graph(inputs, outputs, updates, name)


def _parse_header(items, source):
    """The 'func @name(inputs) [state(params)] {' lines: (graph name, input placeholders,
    name -> node of every input and parameter, index of the header's last item)."""
    # the header runs until the first line whose code ends with '{'
    h = 0
    while h < len(items) and not items[h][1].rstrip().endswith("{"):
        h += 1
    if h == len(items):
        raise ParseError(f"line {items[0][0]}: expected 'func @name(%x: f32[...], ...) {{', got {items[0][1].strip()!r}")
    head_items = items[: h + 1]
    first = head_items[0][0]
    joined = "\n".join(code for _, code, _ in head_items)
    m = _HEAD.match(joined)
    if not m or any(head_items[j][0] != first + j for j in range(len(head_items))):
        raise ParseError(f"line {first}: expected 'func @name(%x: f32[...], ...) [state(...)] {{', got "
                         f"{joined.strip()!r}")
    comments = {k: c for k, _, c in head_items}
    counts: dict = {}
    sections = []
    for grp in (2, 3):
        ds = _decls(m.group(grp), m.start(grp) if m.group(grp) is not None else 0, joined, first)
        sections.append(ds)
        for d in ds:
            counts[d[3]] = counts.get(d[3], 0) + 1

    def where_of(lineno):
        c = comments.get(lineno) if counts.get(lineno) == 1 and len(head_items) > 1 else None
        return c or f"{source}:{lineno}"

    env: dict[str, Tensor] = {}
    inputs = []
    for name, ty, at, lineno in sections[0]:
        if at:
            raise ParseError(f"line {lineno}: inputs take no attributes, got {at}")
        t = parse_type(ty, lineno)
        ph = make("placeholder", (), name=name, where=where_of(lineno), shape=t.shape, dtype=t.dtype)
        _define(env, name, ph, lineno)
        inputs.append(ph)
    for name, ty, at, lineno in sections[1]:
        _define(env, name, _parse_parameter(name, ty, at, lineno, where_of(lineno)), lineno)
    return m.group(1), inputs, env, h


def _parse_parameter(name, ty, at, lineno, where) -> Parameter:
    t = parse_type(ty, lineno)
    opts = _Reader(at, lineno).attrs() if at else {}
    unknown = set(opts) - {"trainable"}
    if unknown or not isinstance(opts.get("trainable", True), bool):
        raise ParseError(f"line {lineno}: a parameter takes only {{trainable=true|false}}, got {at}")
    if not t.is_static:
        raise ParseError(f"line {lineno}: parameter %{name} must have a static shape, got {t}")
    return Parameter(np.zeros(t.shape, DTYPES[t.dtype][1]), name, opts.get("trainable", True), where)


def _define(env, name, node, lineno):
    if name in env:
        raise ParseError(f"line {lineno}: %{name} is defined twice")
    env[name] = node


def _parse_body(items, env, source, last_line):
    """The node, update and return lines up to the closing '}': (outputs, updates)."""
    outputs, updates, closed = None, [], False
    k = 0
    while k < len(items):
        lineno, code, comment = items[k]
        s = code.strip()
        k += 1
        if closed:
            raise ParseError(f"line {lineno}: text after the closing '}}': {s!r}")
        if s == "}":
            closed = True
            continue
        if outputs is not None:
            raise ParseError(f"line {lineno}: nothing may follow 'return' but '}}', got {s!r}")
        if s.startswith("update"):
            updates.append(_parse_update(s, env, lineno, updates))
            continue
        if re.match(r"^return\b", s):
            outputs = _operand_list(s[len("return"):], env, lineno, "return %a, %b")
            continue
        k = _statement(items, k - 1, env, source)
    if outputs is None:
        raise ParseError(f"line {last_line}: no 'return' line")
    if not closed:
        raise ParseError(f"line {last_line}: missing the closing '}}'")
    return outputs, updates


def _operand_list(text: str, env: dict, lineno: int, expected: str) -> list:
    r = _Reader(text, lineno)
    names = r.operands()
    if not r.at_end():
        raise ParseError(f"line {lineno}: cannot read {text.strip()!r} (expected '{expected}')")
    return [_lookup(env, x, lineno) for x in names]


_SCAN_HEAD = re.compile(r"^\s*%(\w+)\s*=\s*scan\b(.*?)\s*:\s*\((.*)\)\s*\{\s*$")
_REGION_HEAD = re.compile(r"^\s*\^\((.*)\)\s*:\s*$")
_REGION_DECL = re.compile(r"\s*%(\w+)\s*:\s*(\w+\[[^\]]*\])\s*")


def _statement(items, k: int, env: dict, source: str) -> int:
    """Define the node (or the scan with its nested body) that starts at items[k];
    returns the index of the item after it."""
    lineno, code, comment = items[k]
    where = comment or f"{source}:{lineno}"
    ms = _SCAN_HEAD.match(code)
    if ms:
        end = _region_end(items, k)
        _define(env, ms.group(1), _parse_scan(ms, items[k + 1:end], env, source, lineno, where), lineno)
        return end + 1
    mm = _NODE.match(code)
    if not mm:
        raise ParseError(f"line {lineno}: cannot read {code.strip()!r} (expected '%name = op %a, %b {{attrs}} : type')")
    name, op, rest, ty = mm.groups()
    _define(env, name, _node(op, rest, parse_type(ty, lineno), env, lineno, where), lineno)
    return k + 1


def _region_end(items, k: int) -> int:
    """Index of the '}' that closes the region opened by items[k]."""
    depth = 0
    for j in range(k, len(items)):
        code = items[j][1].strip()
        if code == "}":
            depth -= 1
            if depth == 0:
                return j
        elif code.endswith("{"):
            depth += 1
    raise ParseError(f"line {items[k][0]}: the scan's body is not closed by a '}}'")


def _parse_scan(ms, region, env, source, lineno, where) -> Tensor:
    """`%s = scan %init.., %xs.., %closure.. {length=.., reverse=..} : (types) {` and its body."""
    r = _Reader(ms.group(2), lineno)
    ins = [_lookup(env, x, lineno) for x in r.operands()]
    attrs = r.attrs() if r.peek()[1] == "{" else {}
    if not r.at_end():
        raise r.err("unexpected text after the scan's operands and attributes")
    body = _parse_region(region, source, lineno)
    try:
        node = make("scan", ins, where=where, canonical=False, body=body, **attrs)
    except NNGraphError as e:
        raise ParseError(f"line {lineno}: {e}") from None
    except (KeyError, TypeError) as e:
        raise ParseError(f"line {lineno}: scan cannot be built from this text ({type(e).__name__}: {e})") from None
    want = [parse_type(t, lineno) for t in re.findall(r"\w+\[[^\]]*\]", ms.group(3))]
    if list(node.type.parts) != want:
        raise ParseError(f"line {lineno}: scan gives {node.type}, the text says ({ms.group(3)})")
    return node


def _parse_region(region, source, head_line: int):
    """A scan body: `^(carries; xs; closed-over):`, nodes, `yield carries; ys`."""
    from .scan_body import Body
    if len(region) < 2:
        raise ParseError(f"line {head_line}: a scan body needs a '^(...):' line and a 'yield' line")
    lineno, code, _ = region[0]
    mh = _REGION_HEAD.match(code)
    groups = mh.group(1).split(";") if mh else []
    if len(groups) != 3:
        raise ParseError(f"line {lineno}: expected '^(%carry: type, ..; %x: type, ..; %closed: type, ..):'")
    env: dict = {}
    counts, inputs = [], []
    for grp in groups:
        decls = [d for d in grp.split("%") if d.strip()]
        for d in decls:
            md = _REGION_DECL.fullmatch("%" + d.rstrip().rstrip(","))
            if not md:
                raise ParseError(f"line {lineno}: cannot read the declaration {('%' + d).strip()!r}")
            t = parse_type(md.group(2), lineno)
            ph = make("placeholder", (), name=md.group(1), where=f"{source}:{lineno}", shape=t.shape, dtype=t.dtype)
            _define(env, md.group(1), ph, lineno)
            inputs.append(ph)
        counts.append(len(decls))
    k = 1
    while k < len(region) and not region[k][1].strip().startswith("yield"):
        k = _statement(region, k, env, source)
    if k < len(region) - 1:
        raise ParseError(f"line {region[k + 1][0]}: text after the scan body's 'yield' (a missing '}}'?)")
    last, code, _ = region[min(k, len(region) - 1)]
    parts = code.strip()[len("yield"):].split(";") if code.strip().startswith("yield") else []
    if len(parts) != 2:
        raise ParseError(f"line {last}: expected 'yield %carry, ..; %y, ..' at the end of the scan body")
    carries = _operand_list(parts[0], env, last, "yield %carry, ..; %y, ..")
    ys = _operand_list(parts[1], env, last, "yield %carry, ..; %y, ..")
    if len(carries) != counts[0]:
        raise ParseError(f"line {last}: the body takes {counts[0]} carries but yields {len(carries)}")
    return Body(Graph(inputs, carries + ys, [], "step"), counts[0], counts[1])


def _parse_update(s, env, lineno, updates):
    mm = _UPDATE.match(s)
    if not mm:
        raise ParseError(f"line {lineno}: cannot read {s!r} (expected 'update %param <- %value')")
    p, v = (_lookup(env, x, lineno) for x in mm.groups())
    if not isinstance(p, Parameter):
        raise ParseError(f"line {lineno}: update of %{mm.group(1)}, which is not a parameter")
    if p.type != v.type:
        raise ParseError(f"line {lineno}: update of %{mm.group(1)}: {p.type} with %{mm.group(2)}: {v.type}")
    if any(p is q for q, _ in updates):
        raise ParseError(f"line {lineno}: %{mm.group(1)} is updated twice")
    return p, v


def _lookup(env, name, lineno) -> Tensor:
    if name not in env:
        raise ParseError(f"line {lineno}: %{name} is not defined")
    return env[name]


def _node(op: str, rest: str, t: TensorType, env: dict, lineno: int, where: str) -> Tensor:
    if op not in OPS:
        raise ParseError(f"line {lineno}: unknown op {op!r}")
    if op in ("placeholder", "parameter"):
        raise ParseError(f"line {lineno}: declare {op}s in the func header, not as nodes")
    r = _Reader(rest, lineno)
    if op == "constant":
        node = make("constant", (), where=where, canonical=False, value=ConstValue(_array(r.literal(), t, lineno)))
    else:
        ins = [_lookup(env, x, lineno) for x in r.operands()]
        attrs = r.attrs() if r.peek()[1] == "{" else {}
        attrs = {k: (v[1] if isinstance(v, tuple) and len(v) == 2 and v[0] == "dense" else v)
                 for k, v in attrs.items()}
        if not r.at_end():
            raise r.err("unexpected text after the operands and attributes")
        try:
            node = make(op, ins, where=where, canonical=False, **attrs)
        except NNGraphError as e:
            raise ParseError(f"line {lineno}: {e}") from None
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ParseError(f"line {lineno}: {op} cannot be built from this text "
                             f"({type(e).__name__}: {e}); a missing attribute?") from None
    if not r.at_end():
        raise r.err("unexpected text after the constant's value")
    if node.type != t:
        raise ParseError(f"line {lineno}: {op} gives {node.type}, the text says {t}")
    return node

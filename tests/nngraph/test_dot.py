"""ng.to_dot: DOT source that a DOT reader accepts, one vertex per node with its
type in the label, one edge per operand, dashed edges for updates."""
import re

import numpy as np

import nngraph as ng

_TOK = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<arrow>->)|(?P<id>[A-Za-z_0-9.]+)|(?P<p>[{}\[\];,=]))')


def read_dot(text):
    """A strict reader for the DOT subset to_dot writes: returns (graph attributes,
    {node: attrs}, [(tail, head, attrs)]); raises on anything that is not DOT."""
    toks, i = [], 0
    while text[i:].strip():
        m = _TOK.match(text, i)
        assert m, f"not DOT at {text[i:i + 30]!r}"
        toks.append((m.lastgroup, m.group(m.lastgroup)))
        i = m.end()
    k = 0

    def take(kind=None, val=None):
        nonlocal k
        t = toks[k]
        assert (kind is None or t[0] == kind) and (val is None or t[1] == val), f"expected {kind} {val}, got {t}"
        k += 1
        return t[1]

    def attr_list():
        out = {}
        take("p", "[")
        while toks[k][1] != "]":
            key = take("id")
            take("p", "=")
            v = take()
            out[key] = v[1:-1].replace('\\"', '"').replace("\\n", "\n") if v.startswith('"') else v
            if toks[k][1] == ",":
                take()
        take("p", "]")
        return out

    take("id", "digraph")
    take("id")
    take("p", "{")
    graph_attrs, nodes, edges = {}, {}, []
    while toks[k][1] != "}":
        a = take()
        if toks[k][1] == "=":
            take()
            graph_attrs[a] = take()
        elif toks[k][0] == "arrow":
            take()
            b = take("id")
            edges.append((a, b, attr_list() if toks[k][1] == "[" else {}))
        else:
            attrs = attr_list()
            if a in ("node", "edge", "graph"):
                graph_attrs[a] = attrs
            else:
                assert a not in nodes, f"node {a} declared twice"
                nodes[a] = attrs
        take("p", ";")
    take("p", "}")
    assert k == len(toks)
    for a, b, _ in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} to an undeclared node"
    return graph_attrs, nodes, edges


def test_to_dot_is_valid_dot_with_types_operands_and_updates():
    x = ng.placeholder(("N", 4), name="x")
    W = ng.parameter(np.ones((4, 3), np.float32), name="W")
    h = x @ W
    loss = ng.sum(h * h)
    g = ng.Graph([x], [loss], [(W, W - 0.5)])
    attrs, nodes, edges = read_dot(ng.to_dot(g))
    assert attrs["rankdir"] == "TB"
    labels = {v["label"]: k for k, v in nodes.items()}
    assert {"x\nf32[N,4]", "W\nf32[4,3]", "matmul\nf32[N,3]", "mul\nf32[N,3]", "sum\nf32[]",
            "0.5\nf32[]", "sub\nf32[4,3]"} == set(labels)
    assert nodes[labels["x\nf32[N,4]"]]["shape"] == "box"
    assert nodes[labels["W\nf32[4,3]"]]["shape"] == "box3d"
    assert nodes[labels["sum\nf32[]"]].get("peripheries") == "2"  # the output
    assert "test_dot.py:" in nodes[labels["matmul\nf32[N,3]"]]["tooltip"]
    pairs = [(nodes[a]["label"].split("\n")[0], nodes[b]["label"].split("\n")[0], e.get("label")) for a, b, e in edges]
    assert sorted(pairs, key=str) == sorted([
        ("x", "matmul", "0"), ("W", "matmul", "1"), ("matmul", "mul", "0"), ("matmul", "mul", "1"),
        ("mul", "sum", None), ("W", "sub", "0"), ("0.5", "sub", "1"), ("sub", "W", "update")], key=str)
    update = [e for a, b, e in edges if e.get("label") == "update"]
    assert update[0]["style"] == "dashed"


def test_to_dot_accepts_a_tensor_and_escapes_names():
    x = ng.placeholder((2,), name='say "hi"')
    _, nodes, edges = read_dot(ng.to_dot(ng.exp(x)))
    assert sorted(v["label"] for v in nodes.values()) == ['exp\nf32[2]', 'say "hi"\nf32[2]']
    assert len(edges) == 1


def test_to_graph_is_a_networkx_graph_of_the_nodes():
    from nngraph.graphviz import to_graph
    x = ng.placeholder((3,), name="x")
    y = ng.tanh(x) + ng.sin(x)
    g = to_graph(y)
    assert g.number_of_nodes() == 4 and g.number_of_edges() == 4
    assert sorted(d["op"] for _, d in g.nodes(data=True)) == ["add", "placeholder", "sin", "tanh"]

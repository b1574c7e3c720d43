"""passes/dag.py gives the answers networkx gives (the lowering used networkx for
them, so the kernel order of every compiled program is unchanged), and a compile
imports no networkx."""
import os
import subprocess
import sys

import networkx as nx
import pytest
from hypothesis import given, settings, strategies as st

from passes.dag import CycleError, Dag

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@st.composite
def dags(draw):
    """(node list in insertion order, edge list) of a random DAG: edges go from an
    earlier node of a random permutation to a later one, inserted in random order."""
    n = draw(st.integers(1, 12))
    labels = draw(st.permutations(range(n)))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))) if pairs else []
    insertion = draw(st.permutations(range(n)))
    return [labels[i] for i in insertion], [(labels[i], labels[j]) for i, j in chosen]


def _both(nodes, edges):
    ours, theirs = Dag(), nx.DiGraph()
    for g in (ours, theirs):
        g.add_nodes_from(nodes)
        for u, v in edges:
            g.add_edge(u, v)
    return ours, theirs


@settings(max_examples=150, deadline=None)
@given(dags(), st.integers(0, 3))
def test_the_answers_are_networkx_answers(graph, salt):
    nodes, edges = graph
    ours, theirs = _both(nodes, edges)
    key = (lambda n: (n * 7 + salt) % 5)          # ties broken by insertion order, as in networkx
    assert ours.lexicographical_topological_sort(key=key) == list(nx.lexicographical_topological_sort(theirs, key=key))
    assert ours.lexicographical_topological_sort() == list(nx.lexicographical_topological_sort(theirs))
    for a in nodes:
        assert ours.ancestors(a) == nx.ancestors(theirs, a)
        for b in nodes:
            assert ours.has_path(a, b) == nx.has_path(theirs, a, b), (a, b)
    assert sorted(ours.edges()) == sorted(theirs.edges())


def test_a_cycle_has_no_order_and_an_unknown_node_is_named():
    g = Dag()
    g.add_edge(0, 1)
    g.add_edge(1, 2)
    g.add_edge(2, 1)
    with pytest.raises(CycleError, match="cycle"):
        g.lexicographical_topological_sort()
    with pytest.raises(KeyError, match="node 7 is not in the graph"):
        g.has_path(0, 7)
    with pytest.raises(KeyError, match="node 'x'"):
        g.ancestors("x")


def test_a_compile_imports_no_networkx(tmp_path):
    """networkx costs ~0.1 s to import: a cold compile (passes, lowering, code
    generation) of an MLP step must not import it."""
    src = """
import sys
import numpy as np
import nngraph as ng
x = ng.placeholder(("N", 12), name="x")
y = ng.placeholder(("N",), "int32", name="y")
W1 = ng.parameter(np.full((12, 16), 0.1, np.float32), name="W1")
W2 = ng.parameter(np.full((16, 5), 0.1, np.float32), name="W2")
loss = ng.cross_entropy(ng.relu(x @ W1) @ W2, y)
gs = ng.grad(loss, [W1, W2])
fn = ng.compile([x, y], loss, updates={p: p - 0.1 * g for p, g in zip([W1, W2], gs)}, target="cpu")
fn(np.ones((3, 12), np.float32), np.zeros(3, np.int32))
assert fn.stats()["cache"] == "none", fn.stats()["cache"]
print("networkx" in sys.modules)
"""
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", src], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"

"""Update groups (runtime/update_locks.py): Functions that update a common parameter
share a lock, a training step takes one lock however many parameters it updates, and
locks are always taken in one global order."""
import numpy as np

import nngraph as ng
from runtime.update_locks import update_locks


def params(n, tag):
    return [ng.parameter(np.zeros(2, np.float32), name=f"{tag}{i}") for i in range(n)]


def test_one_lock_for_all_the_parameters_a_step_updates():
    ps = params(6, "w")
    assert len(update_locks(ps)) == 1
    assert update_locks(ps[2:4]) == update_locks(ps)        # a later function on some of them
    assert update_locks([]) == []


def test_functions_sharing_a_parameter_share_its_lock_and_others_do_not():
    a, b, c = params(2, "a"), params(2, "b"), params(1, "c")
    (la,), (lb,) = update_locks(a), update_locks(b)
    assert la is not lb
    both = update_locks([a[1], b[0], *c])                    # joins two groups: takes both
    assert both == [la, lb]                                  # in the order the groups were made
    assert update_locks(c) == [la]                           # c joined the oldest group
    assert update_locks([b[1], a[0]]) == [la, lb]            # same order whatever the order given


def test_compiled_functions_take_one_group_lock_and_their_own():
    x = ng.placeholder(("N", 2), name="x")
    w, b = params(2, "p")
    loss = ((x * w + b) ** 2).sum()
    gw, gb = ng.grad(loss, [w, b])
    f1 = ng.compile([x], loss, updates={w: w - 0.1 * gw, b: b - 0.1 * gb}, target="reference")
    f2 = ng.compile([x], loss, updates={b: b - 0.1 * gb}, target="reference")
    group = update_locks([w])[0]
    assert f1._locks[0][0] is group and f2._locks[0][0] is group
    assert f1._locks[0][1] is f1._own_lock and len(f1._locks[0]) == 2

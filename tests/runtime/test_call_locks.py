"""The per-parameter locks a call takes (runtime/function.py): all of them, in order,
one `with` statement per 8 (the last of 1, 2, 4 or 8), released after the call whether it returns or raises."""
import threading

import pytest

from runtime.function import lock_chunks, locked


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 8, 9, 17])
def test_every_lock_is_held_during_the_call_and_released_after(n):
    locks = [threading.Lock() for _ in range(n)]
    chunks = lock_chunks(locks)
    assert all(len(c) == 8 for c in chunks[:-1])
    assert not chunks or len(chunks[-1]) == min(k for k in (1, 2, 4, 8) if k >= n - 8 * (len(chunks) - 1))
    flat = [lock for c in chunks for lock in c]
    assert flat[:n] == locks                                    # in the order given
    assert len({id(lock) for lock in flat}) == len(flat)        # padding: distinct locks, none taken twice

    def inside():
        return [lock.locked() for lock in flat]
    assert locked(chunks, inside) == [True] * len(flat)
    assert not any(lock.locked() for lock in flat)


@pytest.mark.parametrize("n", [1, 2, 3, 11])
def test_locks_are_released_when_the_call_raises(n):
    locks = [threading.Lock() for _ in range(n)]
    chunks = lock_chunks(locks)

    def fail(x):
        raise ValueError(x)
    with pytest.raises(ValueError, match="boom"):
        locked(chunks, fail, "boom")
    assert not any(lock.locked() for c in chunks for lock in c)


def test_a_held_lock_makes_another_call_wait():
    shared = threading.Lock()
    a, b = lock_chunks([shared]), lock_chunks([threading.Lock(), shared])
    order = []
    with shared:
        t = threading.Thread(target=locked, args=(b, order.append, "b"))
        t.start()
        t.join(0.05)
        assert t.is_alive() and order == []    # waits for the lock this thread holds
    t.join()
    locked(a, order.append, "a")
    assert order == ["b", "a"]

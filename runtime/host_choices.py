"""Dropping the choices measured once per host, so that they are timed again: the
convolution layouts (runtime/conv_choice.py, conv-layouts.json: runtime/conv_table.py), the BLAS
(codegen/llvm/blas_choice.py, blas-choice.json) and the measured host costs (thread
start, pool hand-off: codegen/host.py, host-<hash>.json), with the compiled functions
the compile cache made from them (`*.nga`: a hit would run code lowered with the old
choices). Object code (`*.o`) is keyed by its IR and stays valid.

A choice timed on a busy machine is provisional and timed again by itself
(codegen/timing_trust.py); this is for the cases that evidence cannot see, or after a
change to the machine: `ng.forget_host_choices()`, or NNGRAPH_RETIME=1 for a run (every
process that starts with it set forgets at its first compile, before it reads a choice).
"""
from __future__ import annotations

import os

_done_here = []     # NNGRAPH_RETIME acted on in this process (once)


def forget_host_choices() -> list:
    """Delete the stored per-host choices and the compiled functions made with them
    from the cache directory (only one that is this user's alone: codegen/cache.py);
    return the names deleted. This process times its conv layouts again at its next
    compile; the BLAS and the host costs, read once when a process starts, are timed
    again by the next process."""
    from codegen.cache import trusted_dir
    from codegen.llvm.blas_choice import CACHE_FILE as BLAS_TABLE
    from . import conv_table
    from .compile_cache import SUFFIX
    conv_table.answers.clear()
    conv_table.found_due.clear()
    d = trusted_dir()
    if d is None:
        return []
    removed = []
    for path in [d / BLAS_TABLE, d / conv_table.CACHE_FILE, *d.glob("host-*.json"), *d.glob(f"*{SUFFIX}")]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            continue
        removed.append(path.name)
    return sorted(removed)


def retime_if_asked(env=None) -> bool:
    """With NNGRAPH_RETIME=1, forget the stored choices once in this process (called at
    the start of every compile, before a choice is read); True when it did now."""
    from codegen.timing_trust import retime_mode
    if _done_here or retime_mode(env) != "forget":
        return False
    _done_here.append(True)
    forget_host_choices()
    return True

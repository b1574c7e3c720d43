"""Names in generated Triton source: buffers, symbolic sizes and size expressions.

Generated code must read well (a buffer `W1` is `W1_ptr`, a size `N` is `N`) and
never clash with the printer's own names (x0, xoffs, v3, ...), Python keywords or
the modules it imports.
"""
from __future__ import annotations

import keyword
import re

from nngraph.types import Dim

# names the printer uses itself; a user's size symbol that equals one is renamed
RESERVED = {"tl", "triton", "torch", "os", "math", "b", "sizes", "grid", "pid", "acc", "c",
            "xoffs", "xmask", "xnumel", "roffs", "rmask", "rnumel", "rstart", "rm", "rn", "rk",
            "mmask", "nmask", "kmask", "mnumel", "nnumel", "knumel", "bid", "XBLOCK", "RBLOCK",
            "BM", "BN", "BK", "k0", "a_ptrs", "b_ptrs", "a", "run", "main", "BUFFERS", "SYMBOLS",
            "INTERPRET", "DEVICE", "DOT_PRECISION", "float", "range", "min", "max", "int",
            "val", "vidx", "take", "best", "first_nan", "rfirst", "CHUNK", "nparts", "device",
            "SPLIT_PROGRAMS", "SPLIT_MIN_CHUNK", "_split", "TILE", "RBLOCK_MAX", "XBLOCK_MAX",
            "INDEX64", "INDEX64_FROM", "_index64"}
_GENERATED = re.compile(r"^(x|r|v|s|b|t|k|acc|acci|res|part|parti|partials)\d.*$")


def identifier(name: str, fallback: str) -> str:
    s = re.sub(r"\W", "_", name or "")
    if not s or s[0].isdigit():
        s = f"{fallback}_{s}" if s else fallback
    if keyword.iskeyword(s):
        s += "_"
    return s


def buffer_names(buffers: dict) -> dict:
    """buffer id -> a unique identifier for it in generated code."""
    out, used = {}, set()
    for bid in sorted(buffers):
        base = identifier(buffers[bid].name, f"buf{bid}")
        name = base if base not in used else f"{base}_{bid}"
        used.add(name)
        out[bid] = name
    return out


def symbol_name(sym: str) -> str:
    s = identifier(sym, "size")
    if s in RESERVED or _GENERATED.match(s):
        s = f"size_{s}"
    return s


def size_expr(s) -> str:
    return symbol_name(s.name) if isinstance(s, Dim) else str(int(s))


def prod_expr(sizes) -> str:
    """The product of sizes as source text, with the integer factors folded."""
    coef, syms = 1, []
    for s in sizes:
        if isinstance(s, Dim):
            syms.append(symbol_name(s.name))
        else:
            coef *= int(s)
    if coef == 0:
        return "0"
    parts = ([str(coef)] if coef != 1 or not syms else []) + syms
    return " * ".join(parts)


def paren(expr: str) -> str:
    return expr if re.fullmatch(r"[\w.]+", expr) else f"({expr})"


def symbols_of(sizes) -> set:
    return {s.name for s in sizes if isinstance(s, Dim)}


def jit_decorator(symbols, extra=()) -> str:
    """@triton.jit, told not to specialise on the size arguments (and the `extra` int
    arguments): a size of 1 would otherwise become a compile-time constant (a Python
    int, not a tensor) and every new batch size of 1 would compile again."""
    names = [symbol_name(s) for s in symbols] + list(extra)
    if not names:
        return "@triton.jit"
    return f"@triton.jit(do_not_specialize={names!r})"

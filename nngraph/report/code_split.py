"""Generated code cut into one piece per kernel, so the report can fold each
kernel's LLVM IR, assembly or Triton source under that kernel.

The backends name every function after its kernel's schedule position
(`k3_...` in LLVM IR and assembly, `k3_...` kernels and their launchers in the
Triton module); whatever belongs to no kernel (the entry point, thread
trampolines, module headers) is kept under the key None.
"""
from __future__ import annotations

import re

KERNEL_NO = re.compile(r"(?:^|_)k(\d+)_")
LLVM_START = re.compile(r'^define\b.*?@"?([\w.$]+)"?\(')
ASM_START = re.compile(r"^([A-Za-z_][\w$]*):")
PY_START = re.compile(r"^(?:async\s+)?def\s+(\w+)|^class\s+(\w+)")


def _owner(name: str | None):
    m = KERNEL_NO.search(name or "")
    return int(m.group(1)) if m else None


def _collect(blocks) -> dict:
    out: dict = {}
    for name, lines in blocks:
        if lines and any(ln.strip() for ln in lines):
            out.setdefault(_owner(name), []).append("\n".join(lines).strip("\n"))
    return {k: "\n\n".join(v) for k, v in out.items()}


def _split(text: str, start, closes) -> dict:
    """Blocks that begin at a line matching `start` (group 1 names the function) and
    end before the next one, or at a line for which closes(line) is true."""
    blocks, name, cur = [], None, []
    for line in text.splitlines():
        m = start.match(line)
        if m:
            blocks.append((name, cur))
            name, cur = m.group(1), []
        cur.append(line)
        if name is not None and closes(line):
            blocks.append((name, cur))
            name, cur = None, []
    blocks.append((name, cur))
    return _collect(blocks)


def split_llvm(text: str) -> dict:
    """kernel position (or None) -> its LLVM IR functions."""
    return _split(text, LLVM_START, lambda line: line == "}")


def split_asm(text: str) -> dict:
    """kernel position (or None) -> its assembly (a function runs to the next global label)."""
    return _split(text, ASM_START, lambda line: False)


def split_python(text: str) -> dict:
    """kernel position (or None) -> its top-level functions (decorators included)."""
    blocks, name, cur, pending = [], None, [], []
    for line in text.splitlines():
        if line.startswith("@"):
            pending.append(line)
            continue
        m = PY_START.match(line)
        if m or (line and not line[0].isspace() and not line.startswith("#")):
            blocks.append((name, cur))
            name, cur = (m.group(1) or m.group(2)) if m else None, []
        cur += pending + [line]
        pending = []
    blocks.append((name, cur + pending))
    return _collect(blocks)


SPLITTERS = {"llvm": split_llvm, "asm": split_asm, "triton": split_python}

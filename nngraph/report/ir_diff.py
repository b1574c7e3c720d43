"""What a pass changed, as a diff of the IR before and after it, showing only the
nodes the pass really touched.

The text IR numbers values in order (%0, %1, ...), so a pass that removes one
node early renumbers every later line, and a plain text diff would show the
whole graph as changed. Lines are therefore compared by what they compute:
each numbered value is renamed by a hash of its definition (op, attributes,
type and the renamed operands), so an untouched node compares equal whatever
its number; the diff then prints the original lines, with their real numbers.
"""
from __future__ import annotations

import difflib
import hashlib
import re

NUMBERED = re.compile(r"%(\d+)\b")
DEFINITION = re.compile(r"^\s*%(\d+) = (.*?)(\s+#\s.*)?$")


def canonical(lines: list) -> list:
    """The lines with every numbered value named by its definition instead."""
    names: dict = {}
    count: dict = {}
    out = []
    for line in lines:
        m = DEFINITION.match(line)
        if not m:
            out.append(NUMBERED.sub(lambda r: names.get(r.group(1), r.group(0)), line))
            continue
        rhs = NUMBERED.sub(lambda r: names.get(r.group(1), r.group(0)), m.group(2))
        key = hashlib.blake2s(rhs.encode(), digest_size=5).hexdigest()
        count[key] = count.get(key, 0) + 1
        names[m.group(1)] = f"%{key}" + (f"_{count[key]}" if count[key] > 1 else "")
        out.append(f"{names[m.group(1)]} = {rhs}")
    return out


def ir_diff(before: str, after: str, context: int = 1) -> list:
    """Unified-diff lines ("@@", "-", "+", " ") between two IR texts, matched by
    canonical(); [] when the pass changed nothing but numbers."""
    a, b = before.splitlines(), after.splitlines()
    matcher = difflib.SequenceMatcher(None, canonical(a), canonical(b), autojunk=False)
    out = []
    for group in matcher.get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        out.append(f"@@ -{i1 + 1},{i2 - i1} +{j1 + 1},{j2 - j1} @@")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                out += [" " + ln for ln in b[b1:b2]]
                continue
            out += ["-" + ln for ln in a[a1:a2]]
            out += ["+" + ln for ln in b[b1:b2]]
    return out

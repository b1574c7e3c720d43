"""The lowering registry: one table that says how each graph op lowers.

Two kinds of rule, each registered beside the code of its op family
(passes/lower/<family>.py) with a decorator:

- ``@lowering("conv2d", ...)``: a *kernel rule* ``rule(ctx, node)`` that turns a
  materialised node into kernels through the public `LoweringContext`
  (passes/lower/context.py): buffers, kernel builders, results, epilogues;
- ``@inline("reshape", ...)``: a *value rule* ``rule(em, node, idx, mask) -> value``
  that emits the node's scalar value at an index into a stage body through the
  `Emitter` (passes/lower/emitter.py), so the node is recomputed where it is read.

``@lowering.default(kind)`` / ``@inline.default(kind)`` register the rule of every op
of an `Op.kind` without a rule of its own (every reduction lowers the same way; a
materialised elementwise value becomes a map stage). Nothing else asks which op
a node is.
"""
from __future__ import annotations

from nngraph.node import OPS

KERNEL_RULES: dict = {}       # op name -> rule(ctx, node)
KERNEL_DEFAULTS: dict = {}    # Op.kind -> rule(ctx, node)
INLINE_RULES: dict = {}       # op name -> rule(em, node, idx, mask)
INLINE_DEFAULTS: dict = {}    # Op.kind -> rule(em, node, idx, mask)


class _Registrar:
    """The decorator ``@name("op", ...)`` and ``@name.default("kind")`` over two tables."""

    def __init__(self, what: str, by_op: dict, by_kind: dict):
        self.what, self.by_op, self.by_kind = what, by_op, by_kind

    def __call__(self, *ops: str):
        return self._into(self.by_op, ops, f"{self.what} rule for op")

    def default(self, *kinds: str):
        return self._into(self.by_kind, kinds, f"default {self.what} rule for kind")

    @staticmethod
    def _into(table: dict, keys, what: str):
        def register(rule):
            for key in keys:
                if key in table:
                    raise ValueError(f"{what} {key!r} registered twice")
                table[key] = rule
            return rule
        return register

    def rule(self, op: str, kind_default: bool = True):
        """The rule for op: its own, else its kind's default (when kind_default), else None."""
        r = self.by_op.get(op)
        if r is None and kind_default and op in OPS:
            r = self.by_kind.get(OPS[op].kind)
        return r


lowering = _Registrar("kernel", KERNEL_RULES, KERNEL_DEFAULTS)
inline = _Registrar("inline", INLINE_RULES, INLINE_DEFAULTS)

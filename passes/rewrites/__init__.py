"""Local rewrite rules: small named functions `rule(node) -> replacement or None`,
applied to a fixed point by passes/rewrite.py.

SIMPLIFY: movement.RULES (chains of transposes, reshapes, broadcasts) then
algebraic.RULES (identities, constants, reductions); STABILIZE: stabilize.RULES
(hand-written formulas made numerically stable).
"""
from . import algebraic, movement, stabilize

SIMPLIFY = movement.RULES + algebraic.RULES
STABILIZE = stabilize.RULES

"""Weight penalties as Keras names them: `kernel_regularizer=ng.nn.l2(1e-4)` adds
1e-4 * sum(W**2) to the training loss (Keras's definition: no factor 1/2), `l1`
adds the sum of absolute values, `l1_l2` both. A regulariser is a small object with
its factors as attributes, so a saved model keeps it as data."""
from __future__ import annotations

from ..ops import elementwise as ew
from ..ops import reduce as rd


class Regularizer:
    """penalty(w) = l1 * sum(|w|) + l2 * sum(w**2)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        for n, v in (("l1", l1), ("l2", l2)):
            if not float(v) >= 0.0:
                raise ValueError(f"regularizer: {n} must be >= 0, got {v}")
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, w):
        terms = []
        if self.l1:
            terms.append(self.l1 * rd.sum(ew.abs(w)))
        if self.l2:
            terms.append(self.l2 * rd.sum(w * w))
        out = terms[0] if terms else rd.sum(w * 0.0)
        return out + terms[1] if len(terms) == 2 else out

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"Regularizer(l1={self.l1}, l2={self.l2})"


def l1(factor: float = 0.01) -> Regularizer:
    return Regularizer(l1=factor)


def l2(factor: float = 0.01) -> Regularizer:
    return Regularizer(l2=factor)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> Regularizer:  # noqa: F811 - Keras's argument names
    return Regularizer(l1=l1, l2=l2)


_BY_NAME = {"l1": l1, "l2": l2, "l1_l2": l1_l2}


def get(reg):
    """None, a Regularizer, or a name ("l2": Keras's default factor 0.01)."""
    if reg is None or isinstance(reg, Regularizer):
        return reg
    if isinstance(reg, str) and reg in _BY_NAME:
        return _BY_NAME[reg]()
    if isinstance(reg, dict):  # a saved model's config
        return Regularizer(**reg)
    raise ValueError(f"unknown regularizer {reg!r}; use ng.nn.l1(f), ng.nn.l2(f), ng.nn.l1_l2(a, b) "
                     f"or one of {', '.join(_BY_NAME)}")

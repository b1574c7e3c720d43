"""Losses and metrics by name, as graphs of (model output, targets).

Keras's names are accepted too: "sparse_categorical_crossentropy" (class ids),
"categorical_crossentropy" (one-hot targets), "binary_crossentropy",
"mean_squared_error".

"cross_entropy" takes logits, or probabilities when the model ends in a softmax
(their log becomes the stable log_softmax as it is built); "binary_cross_entropy"
takes a sigmoid output as probabilities and any other output as logits (PyTorch's
BCEWithLogits); "mse" is the mean squared error.
"""
from __future__ import annotations

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import reduce as rd
from ..errors import ShapeError
from ..types import is_float
from .activations import PROBABILITIES


def cross_entropy(out, target):
    if out in PROBABILITIES:
        if is_float(target.dtype):
            t = ew.cast(target, out.dtype)
        else:
            t = F.one_hot(target, out.shape[-1], out.dtype)
        return rd.mean(ew.neg(rd.sum(ew.mul(t, ew.log(out)), -1)))
    return F.cross_entropy(out, target)


def binary_cross_entropy(out, target):
    return F.binary_cross_entropy(out, target, from_logits=out.op != "sigmoid")


def mse(out, target):
    return F.mse(out, target)


def categorical_crossentropy(out, target):
    """Keras's categorical_crossentropy: one-hot (or probability) targets; the output
    is probabilities when the model ends in softmax, logits otherwise."""
    if not is_float(target.dtype):
        raise ShapeError(f"categorical_crossentropy takes one-hot float targets of the output's shape, got "
                         f"{target.dtype} class ids; use 'sparse_categorical_crossentropy' for class ids")
    return cross_entropy(out, target)


def sparse_categorical_crossentropy(out, target):
    """Keras's sparse_categorical_crossentropy: integer class ids."""
    if is_float(target.dtype):
        raise ShapeError(f"sparse_categorical_crossentropy takes integer class ids, got {target.dtype} targets; "
                         "use 'categorical_crossentropy' for one-hot targets")
    return cross_entropy(out, target)


LOSSES = {"cross_entropy": cross_entropy, "binary_cross_entropy": binary_cross_entropy, "mse": mse,
          # Keras's names for the same things
          "categorical_crossentropy": categorical_crossentropy,
          "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
          "binary_crossentropy": binary_cross_entropy, "mean_squared_error": mse}


def get_loss(loss):
    """A function (output, targets) -> scalar, by name or as given."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)} or pass a function "
                         "(output, targets) -> scalar tensor")
    return LOSSES[loss]


def accuracy(out, target):
    """Class accuracy: argmax of the output against class ids (or one-hot targets);
    for a single output column (or a binary loss) the output is thresholded at 0.5
    (probabilities) or 0 (logits)."""
    if out.ndim >= 2 and out.shape[-1] != 1 and tuple(target.shape) == tuple(out.shape[:-1]):
        pred = rd.argmax(out, -1)
        return rd.mean(ew.cast(ew.equal(pred, ew.cast(target, pred.dtype)), "float32"))
    if out.ndim >= 2 and out.shape[-1] != 1 and tuple(target.shape) == tuple(out.shape):
        return rd.mean(ew.cast(ew.equal(rd.argmax(out, -1), rd.argmax(target, -1)), "float32"))
    threshold = 0.5 if (out.op == "sigmoid" or out in PROBABILITIES) else 0.0
    pred = ew.greater(out, threshold)
    truth = ew.greater(ew.cast(target, out.dtype), 0.5)
    return rd.mean(ew.cast(ew.equal(ew.cast(pred, "int32"), ew.cast(truth, "int32")), "float32"))


METRICS = {"accuracy": accuracy, "acc": accuracy}


def get_metric(m):
    """(name, function) for a metric name or a function (named by its __name__)."""
    if callable(m):
        return getattr(m, "__name__", "metric"), m
    if m not in METRICS:
        raise ValueError(f"unknown metric {m!r}; choose one of {', '.join(METRICS)} or pass a function")
    return ("accuracy" if m == "acc" else m), METRICS[m]

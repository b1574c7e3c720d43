"""The exceptions users see. Each message names the op or tensor, what was
expected and what was given, and where the user built the node."""


class NNGraphError(Exception):
    """Base class of every nngraph error."""


class ShapeError(NNGraphError, ValueError):
    """An op got operands whose types do not fit, raised when the node is built."""


class InputError(NNGraphError, ValueError):
    """A compiled function got an input that does not match its placeholder."""


class GradientError(NNGraphError, ValueError):
    """A gradient was asked through a path that has none."""


class NumericsError(NNGraphError, FloatingPointError):
    """check_numerics found a NaN or infinity; names the op that made it."""


class ParseError(NNGraphError, ValueError):
    """The textual IR could not be read back."""


class VerifyError(NNGraphError, AssertionError):
    """A pass produced an ill-formed graph."""

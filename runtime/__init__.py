"""The runtime: a compiled Function checks inputs, binds dynamic sizes, owns the
buffers, runs a backend's Runner and applies parameter updates atomically."""
from .function import Function, Runner  # noqa: F401

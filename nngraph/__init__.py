"""nngraph: a compiler for neural networks, in the line of Theano.

Declare a static dataflow graph, differentiate it symbolically, compile it
(rewrites, fusion, LLVM or Triton code) and run it. See README.md and the user guide in docs/.
"""
from .types import Dim, TensorType  # noqa: F401
from .errors import (GradientError, InputError, NNGraphError, NumericsError,  # noqa: F401
                     ParseError, ShapeError, VerifyError)
from .node import Parameter, Tensor  # noqa: F401
from . import ops  # noqa: F401  (registers every op)
from .api import constant, parameter, placeholder  # noqa: F401
from .ops.elementwise import (abs, add, bitwise_and, bitwise_not, bitwise_or, bitwise_xor,  # noqa: F401
                              cast, cos, div, equal, exp, expm1, fmod, greater,  # noqa: F401
                              greater_equal, iota, less, less_equal, log, log1p, logical_and,
                              logical_not, logical_or, maximum, minimum, mod, mul, neg, not_equal,
                              pow, relu, rsqrt, sigmoid, sign, sin, softplus, sqrt, step,
                              stop_gradient, sub, tanh, trunc_div, where)
from .ops.reduce import argmax, max, mean, min, sum  # noqa: F401
from .ops.movement import (broadcast_to, concatenate, expand_dims, flatten, pad,  # noqa: F401
                           reshape, squeeze, stack, transpose)
from .ops.contraction import dot, matmul  # noqa: F401
from .ops.conv import conv2d, conv_transpose2d  # noqa: F401
from .ops.upsample import upsample2d  # noqa: F401
from .ops.pool import avg_pool2d, max_pool2d  # noqa: F401
from .ops.gather import arange, take  # noqa: F401
from .ops.collective import all_reduce  # noqa: F401
from . import distributed  # noqa: F401
from .functional import (batch_norm, binary_cross_entropy, clip, cross_entropy, dropout, elu,  # noqa: F401
                         layer_norm, leaky_relu, log_softmax, logsumexp, moments, mse, one_hot,
                         selu, softmax)
from .autodiff import grad, hessian, jacobian  # noqa: F401
from .scan_build import scan  # noqa: F401
from .graph import Graph  # noqa: F401
from .textir import format, parse  # noqa: F401
from .compiler import compile, forget_host_choices  # noqa: F401
from .saving import load, save  # noqa: F401
from .graphviz import to_dot  # noqa: F401
from . import init, optim, nn, data  # noqa: F401,E402  (layers, optimisers, datasets)
from . import onnx  # noqa: F401,E402  (ng.onnx; the onnx package itself is imported on first use)

__version__ = "0.1.0"

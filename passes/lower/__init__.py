"""Graph -> Program lowering, one module per op family, one registry.

| module | what lowers there |
| --- | --- |
| `registry.py` | the registry: `@lowering("op")` kernel rules, `@inline("op")` value rules |
| `context.py` | `LoweringContext`, the public context every kernel rule works through, and the walk |
| `body.py` | `Body` (hash-consed SSA stage body, index arithmetic), index maps, the errors |
| `emitter.py` | `Emitter`: a node's scalar value at an index (load, result, acc, or its value rule) |
| `elementwise.py` | elementwise ops' scalar instructions; materialised values as map stages |
| `movement.py` | reshape, transpose, broadcast_to, slice, pad, concatenate as index maps |
| `concatenate.py` | a materialised concatenation of equal pieces: one pass over a piece's shape, a store per piece |
| `reduce.py` | sum, max, min, argmax as reduce stages |
| `matmul.py` | matmul as a MatmulKernel with an epilogue |
| `conv.py` | conv2d and its gradients: im2col / col2im around MatmulKernels |
| `conv_direct.py` | the phase-split, zero-padded copy of x that a direct convolution reads |
| `pool.py` | max/avg pooling, the max selection and the pooling gradients |
| `collective.py` | all_reduce: buckets of packed buffers whose parts the operands' own kernels write, a start and a wait AllReduceKernel per bucket, pack/unpack kernels only where needed; `phase_order` |
| `gather.py` | take and check_index (value rules), scatter_add (an accumulating kernel) |
| `scan.py` | scan as a ScanLoop whose body is lowered by a `BodyLowering` over the same buffers |
| `window.py` | masks and masked values the windowed families share |
| `assemble.py` | reduction results for other kernels; the Program, schedule, memory plan |

Importing this package registers every family's rules. A new op family is a new
module here that registers its rules and is imported below.
"""
from . import collective, concatenate, conv, elementwise, gather, matmul, movement, pool, reduce, scan  # noqa: F401  (they register their rules)
from .body import Body, LoweringError, NotFusable
from .context import KernelBuilder, LoweringContext, StageBuilder
from .emitter import Emitter
from .registry import inline, lowering

__all__ = ["Body", "Emitter", "KernelBuilder", "LoweringContext", "LoweringError", "NotFusable",
           "StageBuilder", "inline", "lowering"]

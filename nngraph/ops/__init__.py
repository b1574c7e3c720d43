"""Every op, defined once. Importing this package registers them all in
``nngraph.node.OPS``; each module also defines the builder functions users call."""
from . import elementwise, reduce, movement, contraction, random, conv, pool, gather, upsample, collective, scan  # noqa: F401

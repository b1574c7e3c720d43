"""Run under `mpiexec -n 2`: rank 1 raises before it ever talks to MPI while rank 0
waits in a collective; the job must still end (the hook is installed on import)."""
import numpy as np

import nngraph as ng

if int(__import__("os").environ.get("PMI_RANK", "0")) == 1:
    raise ValueError("rank one fails before any collective")
x = ng.placeholder((4,), name="x")
ng.compile([x], ng.all_reduce(x), target="cpu")(np.ones(4, np.float32))
print("rank 0 passed the all-reduce alone", flush=True)

"""Run under `mpiexec -n 2`: rank 1 raises while rank 0 waits in the compiled step's
all-reduce; the job must end (MPI_Abort) with rank 1's error printed, not hang."""
import numpy as np

import nngraph as ng
from nngraph import distributed

x = ng.placeholder((4,), name="x")
fn = ng.compile([x], ng.all_reduce(x), target="cpu")
if distributed.rank() == 1:
    raise RuntimeError("rank one fails on purpose")
fn(np.ones(4, np.float32))          # blocks: rank 1 never joins
print("rank 0 passed the all-reduce alone", flush=True)

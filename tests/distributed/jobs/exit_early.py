"""Run under `mpiexec -n 2` with NNGRAPH_EXIT_TIMEOUT set: rank 1 leaves with
sys.exit(3) (no exception hook sees that) while rank 0 waits for it in the compiled
step's all-reduce; rank 1 must not complete rank 0's collective by accident, and the
job must end (MPI_Abort after the timeout) instead of hanging in MPI_Finalize."""
import sys

import numpy as np

import nngraph as ng
from nngraph import distributed

x = ng.placeholder((4,), name="x")
fn = ng.compile([x], ng.all_reduce(x), target="cpu")
if distributed.rank() == 1:
    sys.exit(3)
fn(np.ones(4, np.float32))          # blocks: rank 1 never joins
print("rank 0 passed the all-reduce alone", flush=True)

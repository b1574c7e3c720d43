"""Two-process jobs under `mpiexec -n 2` (scripts in jobs/), each bounded in time so a
hang is a failure. They need mpi4py and an mpiexec (`pip install "nngraph[distributed]"`,
which .ci/setup's test path installs)."""
import os
import shutil
import subprocess
import sys
import time

import pytest

pytest.importorskip("mpi4py", reason="the MPI tests need mpi4py: pip install 'nngraph[distributed]'")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jobs")
JOB_SECONDS = 240


def mpiexec() -> str:
    """The mpiexec next to this Python (the mpich wheel's), else one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if not found:
        pytest.skip("no mpiexec: pip install 'nngraph[distributed]'")
    return found


def run_job(args, timeout=JOB_SECONDS, ranks=2, **env_extra):
    # OMPI_*: Open MPI's mpiexec refuses to start as root (a container's user) without them
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               NNGRAPH_NUM_THREADS="1", NNGRAPH_BLAS_THREADS="1", OMP_NUM_THREADS="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", **env_extra)
    cmd = [mpiexec(), "-n", str(ranks), sys.executable] + list(args)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return r, time.perf_counter() - t0


def run_script(name, *args):
    r, _ = run_job([os.path.join(JOBS, name)] + list(args))
    assert r.returncode == 0, f"{name} failed:\n{r.stdout}\n{r.stderr}"
    assert r.stdout.count("ok") == 2, r.stdout
    return r


def test_all_reduce_values_and_gradients_in_two_processes():
    run_script("ops_values.py")


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_two_rank_sgd_equals_one_process_on_the_whole_batch_and_packs_one_buffer(backend):
    if backend == "gpu":
        from gpu_skip import require_gpu_target
        require_gpu_target()       # Triton's interpreter here (tests/conftest.py sets it)
    run_script("sgd_equal.py", backend)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_fit_distributed_identical_parameters_and_same_accuracy(backend):
    run_script("fit_equal.py", backend)


@pytest.mark.parametrize("script,error", [("raise_abort.py", "rank one fails on purpose"),
                                          ("raise_early.py", "rank one fails before any collective")])
def test_a_rank_that_raises_ends_the_job_within_seconds(script, error):
    r, seconds = run_job([os.path.join(JOBS, script)], timeout=120)
    assert r.returncode != 0
    assert error in r.stderr and "[nngraph rank 1/2] unhandled exception; aborting the MPI job" in r.stderr
    assert "passed the all-reduce alone" not in r.stdout
    assert seconds < 60, f"the job took {seconds:.0f} s to end"


def test_a_rank_that_exits_early_ends_the_job_after_the_exit_timeout():
    r, seconds = run_job([os.path.join(JOBS, "exit_early.py")], timeout=120, NNGRAPH_EXIT_TIMEOUT="3")
    assert r.returncode != 0
    assert "[nngraph rank 1/2] reached its exit" in r.stderr and "NNGRAPH_EXIT_TIMEOUT=3" in r.stderr
    assert "passed the all-reduce alone" not in r.stdout      # rank 1 did not stand in for the collective
    assert seconds < 60, f"the job took {seconds:.0f} s to end"


def test_train_command_runs_data_parallel(tmp_path):
    pytest.importorskip("sklearn")
    r, _ = run_job(["-m", "nngraph", "train", "--model", "mlp", "--epochs", "1", "--quiet",
                    "--no-augment", "--dump-dir", str(tmp_path / "dumps")])
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "data-parallel on 2 processes" in out and "global batch 32, 16 per process" in out
    assert out.count("mlp: test loss") == 1           # only rank 0 prints
    assert (tmp_path / "dumps" / "mlp" / "train_step.kernels.txt").exists()

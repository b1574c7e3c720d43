"""`python -m nngraph run MODEL.onnx` compiles a model and reports dumps, compile and inference time."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

import nngraph as ng
from torch_models import MLP, export

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "nngraph", "run", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_run_prints_dumps_compile_time_and_one_inference(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "mlp.onnx"
    path.write_bytes(export(MLP(), torch.randn(2, 8, 8)).SerializeToString())
    out = _run(str(path), "--dim", "N=4", "--target", "reference", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dumps = tmp_path / "nngraph-dumps" / "mlp"
    assert f"dumps:      {dumps}" in out.stdout
    assert "compile:" in out.stdout and "inference:" in out.stdout
    assert "x: [4, 8, 8]" in out.stdout and "y: [4, 10]" in out.stdout
    assert any(dumps.iterdir())


def test_run_reports_an_unsupported_model_without_a_traceback(tmp_path):
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Unique", ["x"], ["y"], name="uniq")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    path = tmp_path / "uniq.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    out = _run(str(path), cwd=tmp_path)
    assert out.returncode == 1
    assert "node 'uniq' (Unique" in out.stderr and "Traceback" not in out.stderr
    assert ng.onnx.SUPPORTED_OPS  # the module the command uses

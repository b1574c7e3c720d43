"""`python -m nngraph dump FILE.py`: finds the graph a script builds, compiles it and
prints one stage; `--help` says what the script must define."""
import os
import subprocess
import sys
import textwrap

import pytest

import nngraph as ng
from nngraph.__main__ import SUBCOMMANDS, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUILD = """
import numpy as np
import nngraph as ng

def build():
    x = ng.placeholder(("N", 4), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W = ng.parameter(np.ones((4, 3), np.float32), name="W")
    loss = ng.cross_entropy(x @ W, y)
    return {"inputs": [x, y], "outputs": loss, "updates": {W: W - 0.1 * ng.grad(loss, W)}}

if __name__ == "__main__":
    raise SystemExit("the training block must not run under dump")
"""

FN = """
import numpy as np
import nngraph as ng
x = ng.placeholder((2,), name="x")
fn = ng.compile([x], ng.exp(x) * 2.0, target="reference")
"""

ONE_FUNCTION = """
import nngraph as ng
x = ng.placeholder((2,), name="x")
predict = ng.compile([x], ng.tanh(x), target="reference")
"""

TWO_FUNCTIONS = ONE_FUNCTION + "other = ng.compile([x], ng.sin(x), target='reference')\n"


def script(tmp_path, text, name="model.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def dump(capsys, *argv):
    rc = main(["dump", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_dump_graph_of_build_prints_the_graph_stage(tmp_path, capsys):
    path = script(tmp_path, BUILD)
    rc, out, err = dump(capsys, path)
    assert rc == 0, err
    assert out.startswith("func @main(%x: f32[N,4], %y: i32[N]) state(%W: f32[4,3]) {\n")
    assert "  update %W <- %" in out and out.endswith("}\n")
    g = ng.parse(out)  # the output is the IR: it parses back
    assert ng.format(g) == out


def test_dump_other_stages_and_list_them(tmp_path, capsys):
    path = script(tmp_path, BUILD)
    rc, out, _ = dump(capsys, path, "--stage", "opt", "--target", "reference", "--opt-level", "0")
    assert rc == 0 and out.startswith("func @main(")
    rc, out, _ = dump(capsys, path, "--list-stages")
    assert rc == 0 and out.split()[:2] == ["graph", "opt"]


def test_an_unknown_stage_lists_the_stages(tmp_path, capsys):
    rc, out, err = dump(capsys, script(tmp_path, BUILD), "--stage", "llvm", "--target", "reference")
    assert rc == 2 and out == ""
    assert err.startswith("nngraph dump: error: no stage 'llvm' for target reference; this function has: graph, opt")


def test_a_function_named_fn_is_used(tmp_path, capsys):
    rc, out, _ = dump(capsys, script(tmp_path, FN))
    assert rc == 0
    assert out == ("func @main(%x: f32[2]) {\n  %0 = exp %x : f32[2]\n  %1 = constant 2.0 : f32[]\n"
                   "  %2 = mul %0, %1 : f32[2]\n  return %2\n}\n")
    rc, out2, _ = dump(capsys, script(tmp_path, FN), "--opt-level", "1")  # compiled again, same graph stage
    assert rc == 0 and out2 == out


def test_a_single_module_level_function_is_found(tmp_path, capsys):
    rc, out, _ = dump(capsys, script(tmp_path, ONE_FUNCTION))
    assert rc == 0 and "tanh %x" in out


def test_several_functions_need_a_name(tmp_path, capsys):
    path = script(tmp_path, TWO_FUNCTIONS)
    rc, _, err = dump(capsys, path)
    assert rc == 2 and "several compiled functions (predict, other); choose one with --name" in err
    rc, out, _ = dump(capsys, path, "--name", "other")
    assert rc == 0 and "sin %x" in out


def test_a_script_without_a_graph_is_explained(tmp_path, capsys):
    rc, _, err = dump(capsys, script(tmp_path, "x = 1\n"))
    assert rc == 2 and "defines neither build(), nor fn, nor a module-level compiled Function" in err


def test_build_must_return_a_function_or_the_compile_dict(tmp_path, capsys):
    rc, _, err = dump(capsys, script(tmp_path, "def build():\n    return {'inputs': []}\n"))
    assert rc == 2 and "needs keys 'inputs' and 'outputs'" in err and "missing: outputs" in err
    rc, _, err = dump(capsys, script(tmp_path, "def build():\n    return 3\n"))
    assert rc == 2 and "build() is a int; expected a compiled Function or a dict" in err


def test_errors_in_the_users_graph_are_reported(tmp_path, capsys):
    bad = """
    import numpy as np, nngraph as ng
    x = ng.placeholder((2, 3), name="x")
    W = ng.parameter(np.ones((4, 5), np.float32), name="W")
    y = x @ W
    """
    rc, _, err = dump(capsys, script(tmp_path, bad))
    assert rc == 1
    assert err.startswith("nngraph dump: ShapeError: matmul: cannot multiply x: f32[2,3] by W: f32[4,5]")
    assert "built at model.py:3" in err and err.rstrip().endswith("(raised at model.py:5)")
    rc, _, err = dump(capsys, script(tmp_path, "raise RuntimeError('boom')\n"))
    assert rc == 1 and "RuntimeError: boom" in err and "Traceback" in err


def test_a_missing_file(tmp_path, capsys):
    rc, _, err = dump(capsys, str(tmp_path / "nope.py"))
    assert rc == 2 and "no such file" in err


def test_the_script_can_import_its_neighbours(tmp_path, capsys):
    script(tmp_path, "import nngraph as ng\ndef make():\n    x = ng.placeholder((2,), name='x')\n"
                     "    return {'inputs': [x], 'outputs': ng.sqrt(x)}\n", name="helper_mod_for_cli.py")
    path = script(tmp_path, "from helper_mod_for_cli import make\nbuild = make\n")
    rc, out, _ = dump(capsys, path)
    sys.modules.pop("helper_mod_for_cli", None)
    assert rc == 0 and "sqrt %x" in out


def test_help_documents_what_the_script_must_define(capsys):
    with pytest.raises(SystemExit) as e:
        main(["dump", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for needle in ("build()", '"inputs"', '"outputs"', '"updates"', "named fn", "module-level compiled Function",
                   "--stage", "--target", "--opt-level", "__nngraph_dump__"):
        assert needle in out, needle


def test_subcommands_are_a_table_and_one_is_required(capsys):
    assert "dump" in SUBCOMMANDS
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2


def test_python_dash_m_nngraph_runs(tmp_path):
    path = script(tmp_path, FN)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "nngraph", "dump", path, "--stage", "graph"],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("func @main(%x: f32[2]) {")
    r = subprocess.run([sys.executable, "-m", "nngraph", "--help"], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=60)
    assert r.returncode == 0 and "dump" in r.stdout

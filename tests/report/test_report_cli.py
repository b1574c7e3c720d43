"""`python -m nngraph report FILE.py -o out.html` and the report that
`python -m nngraph train` writes next to its dumps."""
import pytest

from nngraph.__main__ import main

SCRIPT = '''
import numpy as np
import nngraph as ng

def build():
    x = ng.placeholder(("N", 5), name="x")
    W = ng.parameter(np.ones((5, 3), np.float32), name="W")
    return {"inputs": [x], "outputs": ng.softmax(x @ W)}
'''


def test_report_command_writes_the_html(tmp_path, capsys):
    src = tmp_path / "model.py"
    src.write_text(SCRIPT)
    out = tmp_path / "out.html"
    assert main(["report", str(src), "-o", str(out), "--target", "cpu"]) == 0
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'id="g-opt"' in html and "target cpu" in html
    assert str(out) in capsys.readouterr().out


def test_report_command_errors_in_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_train_writes_a_report_per_model(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from nngraph import train_cli
    assert train_cli.main(["--model", "mlp", "--epochs", "1", "--target", "reference", "--no-augment",
                           "--dump-dir", str(tmp_path), "--quiet"]) == 0
    html = (tmp_path / "mlp" / "report.html").read_text(encoding="utf-8")
    assert ">loss</text>" in html and 'id="g-opt"' in html
    assert "training report" in capsys.readouterr().out

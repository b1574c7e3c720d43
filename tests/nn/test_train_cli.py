"""`python -m nngraph train`: trains, reports accuracy and times, writes every stage
of the training step and the per-pass dumps."""
import os

import pytest

pytest.importorskip("sklearn")


def test_train_mlp_writes_dumps_of_every_stage(tmp_path, capsys):
    from nngraph import train_cli
    rc = train_cli.main(["--model", "mlp", "--epochs", "2", "--target", "reference",
                         "--dump-dir", str(tmp_path / "dumps"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "mlp: test loss" in out and "test accuracy" in out
    assert "compiled the training step in" in out and "ms (batch 32)" in out
    folder = tmp_path / "dumps" / "mlp"
    for stage in ("graph", "opt", "kernels"):
        text = (folder / f"train_step.{stage}.txt").read_text()
        assert text.strip()
    assert "update %" in (folder / "train_step.graph.txt").read_text()  # the step holds the updates
    passes = sorted(os.listdir(folder / "passes"))
    assert passes[0].startswith("00-") and len(passes) > 2


def test_train_is_a_subcommand_with_help(capsys):
    from nngraph.__main__ import main
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--epochs", "--model", "--dump-dir", "--target"):
        assert opt in out


def test_bad_epochs(capsys):
    from nngraph import train_cli
    assert train_cli.main(["--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err


def test_train_lstm_reads_rows_as_steps_of_one_loop(tmp_path, capsys):
    """The LSTM model: the training step holds one scan (no unrolling), its dumps
    and report are written like the other models'."""
    from nngraph import train_cli
    rc = train_cli.main(["--model", "lstm", "--epochs", "1", "--target", "cpu", "--no-augment",
                         "--dump-dir", str(tmp_path / "dumps"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "lstm: test loss" in out and "compiled the training step in" in out and "ms (batch 32)" in out
    assert "LSTM" in out                                   # the summary names the layer
    folder = tmp_path / "dumps" / "lstm"
    graph = (folder / "train_step.graph.txt").read_text()
    assert "reverse=false" in graph and "reverse=true" in graph   # the loop and its reverse (BPTT)
    assert (folder / "report.html").stat().st_size > 0


def test_all_is_the_default_and_trains_the_three_models(monkeypatch):
    from nngraph import train_cli
    seen = []
    monkeypatch.setattr(train_cli, "train_one", lambda kind, args, out: seen.append(kind) or {
        "model": kind, "test_accuracy": 1.0, "compile_seconds": {"train": 0.0}, "compile_key": "train",
        "step_ms": 0.0})
    assert train_cli.main(["--dump-dir", "unused"]) == 0
    assert seen == ["mlp", "cnn", "lstm"]
    seen.clear()
    assert train_cli.main(["--model", "both"]) == 0
    assert seen == ["mlp", "cnn"]

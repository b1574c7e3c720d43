"""`python -m nngraph train`: the README's first command. Trains an MLP, a
LeNet-style CNN and an LSTM on scikit-learn's handwritten digits (8x8), prints progress, test
accuracy and compile/step times, and writes what the compiler made of each
training step (every stage of fn.stages(), and the graph after every pass) to a
folder."""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HELP = "train an MLP, a LeNet-style CNN and an LSTM on the handwritten digits; dump the training step's IR"

DESCRIPTION = """\
Train models of a neural-networks course on scikit-learn's handwritten digits
(1797 images of 8x8 pixels; 70% train, 10% validation, 20% test, stratified):

  mlp   64 -> Dense(128, relu) -> Dropout(0.2) -> Dense(10)
  cnn   LeNet-style, sized for 8x8 images: Conv2D(8, 3, same, relu) -> Conv2D(16, 3,
        same, relu) -> MaxPool2D(2) -> Flatten -> Dense(64, relu) -> Dropout(0.25) -> Dense(10)
  lstm  each image read row by row, 8 steps of 8 pixels: Reshape(8, 8) -> LSTM(64) ->
        Dense(10) (one ng.scan loop in the compiled step, backpropagation through time)

all with Adam and a 1cycle learning rate, on the training images plus copies
shifted by one pixel in each direction (--no-augment: the training images only).

Each training step (forward, gradients and update) is one compiled function.
Printed: a summary of each model, a progress bar per epoch, test loss and
accuracy, compile time, and the time per training step. Written to DUMP_DIR/MODEL/:
train_step.<stage>.txt for every stage the function has (graph, opt, kernels,
and llvm, asm on the CPU), passes/NN-<pass>.txt, the graph after every pass, and
report.html: the training curves and what the compiler made of the step, in a browser.

Example:
    python -m nngraph train --model cnn --epochs 5 --dump-dir /tmp/dumps

Under MPI (`mpiexec -n 2 python -m nngraph train`, after pip install "nngraph[distributed]")
the models train data-parallel: --batch-size is the global batch, split across the
processes; gradients are averaged inside the compiled step; rank 0 prints and writes.
"""

DEFAULT_EPOCHS = {"mlp": 10, "cnn": 15, "lstm": 8}
MODELS = ("mlp", "cnn", "lstm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=MODELS + ("all", "both"), default="all",
                   help="which model to train (default: all; both: the MLP and the CNN)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs per model (default: {DEFAULT_EPOCHS['mlp']} for the MLP, "
                        f"{DEFAULT_EPOCHS['cnn']} for the CNN, {DEFAULT_EPOCHS['lstm']} for the LSTM)")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size (default: 32)")
    p.add_argument("--dump-dir", default="nngraph-dumps",
                   help="folder for the IR dumps of the training steps (default: nngraph-dumps)")
    p.add_argument("--target", choices=("cpu", "gpu", "reference"), default=None,
                   help="where to compile for (default: cpu, or reference where the CPU backend "
                        "is not available)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, initialisation and shuffling")
    p.add_argument("--no-augment", action="store_true", help="train without the one-pixel-shift copies")
    p.add_argument("--quiet", action="store_true", help="no progress bars, one line per epoch")


def build_model(kind: str):
    import nngraph as ng
    L = ng.nn
    if kind == "mlp":
        model = L.Sequential([L.Dense(128, activation="relu"), L.Dropout(0.2), L.Dense(10)],
                             input_shape=(64,), name="mlp")
    elif kind == "lstm":
        model = L.Sequential([L.Reshape((8, 8)), L.LSTM(64), L.Dense(10)], input_shape=(64,), name="lstm")
    else:
        model = L.Sequential([
            L.Conv2D(8, 3, padding=1, activation="relu"),
            L.Conv2D(16, 3, padding=1, activation="relu"), L.MaxPool2D(2),
            L.Flatten(), L.Dense(64, activation="relu"), L.Dropout(0.25), L.Dense(10)],
            input_shape=(1, 8, 8), name="cnn")
    return model, ng.optim.Adam(ng.optim.OneCycle(0.01))


def write_dumps(fn, folder: str) -> list:
    """Every stage of a compiled function as folder/train_step.<stage>.txt."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for stage in fn.stages():
        path = os.path.join(folder, f"train_step.{stage}.txt")
        with open(path, "w") as f:
            f.write(fn.dump(stage))
        paths.append(path)
    return paths


def train_one(kind: str, args, out=print) -> dict:
    import nngraph as ng
    ng.nn.set_seed(args.seed)
    data = ng.data.load_digits(images=(kind == "cnn"), seed=args.seed)
    (X, y), val, (Xt, yt) = data["train"], data["val"], data["test"]
    if not args.no_augment:
        X, y = ng.data.shift_augment(X, y, image_shape=None if kind == "cnn" else (8, 8))
    model, opt = build_model(kind)
    folder = os.path.join(args.dump_dir, kind)
    model.compile(opt, "cross_entropy", ["accuracy"], target=args.target,
                  dump_dir=os.path.join(folder, "passes"))
    out(f"\n== {kind}: {len(X)} training{'' if args.no_augment else ' (with shifted copies)'}, {len(val[1])} validation, {len(yt)} test images; "
        f"target {model.target}")
    model.summary(print_fn=out)
    ranks = ng.distributed.size()
    kinds = model._ys(y)[1]       # the targets' kinds, as fit compiles the step for them
    if ranks > 1:
        from .nn.distributed_fit import train_step
        out(f"{kind}: data-parallel on {ranks} processes (MPI): global batch {args.batch_size}, "
            f"{args.batch_size // ranks}{'' if args.batch_size % ranks == 0 else '-' + str(-(-args.batch_size // ranks))} "
            f"per process")
        step, key = train_step(model, kinds), "train_distributed"
    else:
        step, key = model.compiled("train", kinds), "train"
    st = step.stats()
    out(f"compiled the training step in {model.compile_seconds[key]:.3f} s "
        f"({st.get('kernels', '?')} kernels per call, cache hit: {st.get('cache_hit')}"
        + (f", {st['all_reduce']['calls']} MPI_Iallreduce per step" if "all_reduce" in st else "") + ")")
    epochs = args.epochs or DEFAULT_EPOCHS[kind]
    t0 = time.perf_counter()
    report = os.path.join(folder, "report.html")
    hist = model.fit(X, y, epochs=epochs, batch_size=args.batch_size, validation_data=val,
                     verbose=2 if args.quiet else 1, seed=args.seed, report=report, distributed=ranks > 1)
    train_s = time.perf_counter() - t0
    scores = model.evaluate(Xt, yt)
    steps = np.asarray(model.step_seconds[1:] or model.step_seconds)
    out(f"{kind}: test loss {scores['loss']:.4f}, test accuracy {100 * scores['accuracy']:.2f}% "
        f"(validation {100 * hist['val_accuracy'][-1]:.2f}%)")
    out(f"{kind}: {len(model.step_seconds)} steps in {train_s:.2f} s; step time median "
        f"{1e3 * np.median(steps):.3f} ms (batch {args.batch_size}); compile: "
        + ", ".join(f"{k} {v:.3f} s" for k, v in model.compile_seconds.items()))
    paths = write_dumps(step, folder) if ng.distributed.is_main() else []
    out(f"{kind}: IR of the training step written to {folder}/ "
        f"({', '.join(os.path.basename(p) for p in paths)}; passes/ after every pass)")
    out(f"{kind}: training report (curves, graph, kernels) in {report}")
    return {"report": report, "model": kind, "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
            "compile_seconds": dict(model.compile_seconds), "compile_key": key,
            "step_ms": 1e3 * float(np.median(steps)),
            "dumps": paths}


def run(args) -> int:
    if args.epochs is not None and args.epochs < 1:
        print("train: --epochs must be >= 1", file=sys.stderr)
        return 2
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("train: the digits come with scikit-learn: pip install scikit-learn", file=sys.stderr)
        return 1
    kinds = {"all": list(MODELS), "both": ["mlp", "cnn"]}.get(args.model, [args.model])
    from . import distributed
    out = print if distributed.is_main() else _silent      # in an MPI job, rank 0 speaks
    results = [train_one(k, args, out) for k in kinds]
    out("\nsummary:")
    for r in results:
        out(f"  {r['model']}: test accuracy {100 * r['test_accuracy']:.2f}%, training step compiled in "
            f"{r['compile_seconds'][r['compile_key']]:.3f} s, {r['step_ms']:.3f} ms per step")
    out(f"IR dumps in {os.path.abspath(args.dump_dir)}")
    return 0


def _silent(*args, **kwargs) -> None:
    """print for ranks other than 0 of an MPI job."""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nngraph train", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

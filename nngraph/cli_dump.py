"""`python -m nngraph dump FILE.py`: compile the graph a user script builds and print
one stage of it (see DESCRIPTION for what the script must define)."""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback

from .compiler import TARGETS, is_compiled

# The CPU backend becomes the default once it is complete; until then the NumPy
# reference interpreter is the target every graph compiles for.
DEFAULT_TARGET = "reference"
RUN_NAME = "__nngraph_dump__"

HELP = "print a compiled function at one stage (graph, opt, kernels, llvm, asm, triton)"

DESCRIPTION = f"""\
Run FILE.py, compile the graph it defines, and print the program at one stage.

FILE.py runs with __name__ == "{RUN_NAME}" (so an `if __name__ == "__main__":`
block, e.g. a training loop, does not run) and its directory on sys.path. It must
define one of, looked up in this order:

  1. a function build() returning either a compiled Function, or a dict
       {{"inputs": [x, y], "outputs": [loss, acc], "updates": {{W: W - 0.1 * gW}}}}
     ("updates" may be left out; the dict is passed to ng.compile);
  2. a compiled Function named fn (fn = ng.compile(...));
  3. exactly one module-level compiled Function, under any name.

--name VAR picks another variable instead (a function like build, a dict, or a
Function). A Function the script compiled is printed as compiled, unless --target
or --opt-level asks for something else: then its graph is compiled again.

Stages: graph (as built, gradients included), opt (after the graph passes),
kernels (fused kernels, schedule, buffers), llvm and asm (target cpu), triton
(target gpu); --list-stages prints the ones this function has.

Example:
    # mlp.py
    import numpy as np, nngraph as ng
    def build():
        x = ng.placeholder(("N", 784), name="x")
        y = ng.placeholder(("N",), "int32", name="y")
        W = ng.parameter(np.zeros((784, 10), np.float32), name="W")
        loss = ng.cross_entropy(x @ W, y)
        return {{"inputs": [x, y], "outputs": loss,
                "updates": {{W: W - 0.1 * ng.grad(loss, W)}}}}

    python -m nngraph dump mlp.py --stage opt
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.py", help="the Python script that builds the graph")
    p.add_argument("--stage", default="graph",
                   help="the stage to print (default: graph); see --list-stages")
    p.add_argument("--target", choices=TARGETS, default=None,
                   help=f"the target to compile for (default: {DEFAULT_TARGET})")
    p.add_argument("--opt-level", type=int, choices=(0, 1, 2), default=None,
                   help="how much the graph passes do (default: 2)")
    p.add_argument("--name", default=None, metavar="VAR",
                   help="the variable of FILE.py to use instead of build / fn")
    p.add_argument("--list-stages", action="store_true", help="print the stage names and exit")


class DumpError(Exception):
    """A problem to report in one line (exit status 2)."""


def _load(path: str) -> dict:
    if not os.path.isfile(path):
        raise DumpError(f"no such file: {path}")
    d = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, d)
    try:
        return runpy.run_path(path, run_name=RUN_NAME)
    finally:
        if sys.path and sys.path[0] == d:
            del sys.path[0]


def _spec_to_function(spec, what: str, target: str, opt_level: int):
    import nngraph as ng
    if is_compiled(spec):
        return spec, False
    if not isinstance(spec, dict):
        raise DumpError(f"{what} is a {type(spec).__name__}; expected a compiled Function or a dict "
                        '{"inputs": [...], "outputs": [...], "updates": {...}}')
    unknown = set(spec) - {"inputs", "outputs", "updates"}
    missing = {"inputs", "outputs"} - set(spec)
    if unknown or missing:
        raise DumpError(f"{what}: the dict needs keys 'inputs' and 'outputs' (and optionally 'updates'); "
                        + (f"unknown: {', '.join(sorted(unknown))}" if unknown else
                           f"missing: {', '.join(sorted(missing))}"))
    fn = ng.compile(spec["inputs"], spec["outputs"], spec.get("updates"), target=target, opt_level=opt_level)
    return fn, True


def find_function(ns: dict, name: str | None, target: str, opt_level: int):
    """The Function a script defines, following the rules of DESCRIPTION.
    Returns (function, whether it was compiled here with target and opt_level)."""
    if name is not None:
        if name not in ns:
            raise DumpError(f"the script defines no variable {name!r}")
        obj = ns[name]
        if callable(obj) and not is_compiled(obj):
            return _spec_to_function(obj(), f"{name}()", target, opt_level)
        return _spec_to_function(obj, name, target, opt_level)
    if callable(ns.get("build")) and not is_compiled(ns["build"]):
        return _spec_to_function(ns["build"](), "build()", target, opt_level)
    if is_compiled(ns.get("fn")):
        return ns["fn"], False
    found = [k for k, v in ns.items() if is_compiled(v) and not k.startswith("__")]
    if len(found) == 1:
        return ns[found[0]], False
    if found:
        raise DumpError(f"the script defines several compiled functions ({', '.join(found)}); "
                        "choose one with --name")
    raise DumpError("the script defines neither build(), nor fn, nor a module-level compiled Function "
                    "(see python -m nngraph dump --help)")


def _recompile(fn, target: str, opt_level: int):
    import nngraph as ng
    g = fn.graph
    return ng.compile(list(g.inputs), list(g.outputs), dict(g.updates), target=target, opt_level=opt_level,
                      name=g.name)


def _raised_at(e: BaseException, path: str) -> str:
    """' (raised at FILE.py:LINE)' for the last frame of the user's script in e's traceback."""
    target, where = os.path.abspath(path), ""
    for frame, lineno in traceback.walk_tb(e.__traceback__):
        if os.path.abspath(frame.f_code.co_filename) == target:
            where = f" (raised at {os.path.basename(path)}:{lineno})"
    return where


def guarded(command: str, path: str, body) -> int:
    """Run body() -> exit status; the errors a user's script can cause become a
    message on stderr: a DumpError one line (status 2), an nngraph error one line
    with the script's line that raised it (1), anything else its traceback (1)."""
    from .errors import NNGraphError
    try:
        return body()
    except DumpError as e:
        print(f"nngraph {command}: error: {e}", file=sys.stderr)
        return 2
    except NNGraphError as e:
        print(f"nngraph {command}: {type(e).__name__}: {e}{_raised_at(e, path)}", file=sys.stderr)
        return 1
    except Exception:  # the user's script failed: show them where
        print(f"nngraph {command}: error while building the graph of {path}:", file=sys.stderr)
        traceback.print_exc()
        return 1


def load_function(args, target: str, opt_level: int):
    """The Function that args.file (and --name) define, compiled again when --target or
    --opt-level asks for something other than what the script compiled."""
    ns = _load(args.file)
    fn, compiled_here = find_function(ns, args.name, target, opt_level)
    if not compiled_here and ((args.target and args.target != fn.target) or args.opt_level is not None):
        fn = _recompile(fn, target, opt_level)
    return fn


def run(args) -> int:
    target = args.target or DEFAULT_TARGET
    opt_level = 2 if args.opt_level is None else args.opt_level

    def body():
        fn = load_function(args, target, opt_level)
        stages = fn.stages()
        if args.list_stages:
            print("\n".join(stages))
            return 0
        if args.stage not in stages:
            raise DumpError(f"no stage {args.stage!r} for target {fn.target}; this function has: "
                            f"{', '.join(stages)}")
        text = fn.dump(args.stage)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    return guarded("dump", args.file, body)

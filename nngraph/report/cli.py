"""`python -m nngraph report FILE.py -o out.html`: compile the graph a script
builds (found as `python -m nngraph dump` finds it) and write its HTML report."""
from __future__ import annotations

import argparse

from ..cli_dump import DEFAULT_TARGET, DumpError, guarded, load_function
from ..compiler import TARGETS

HELP = "write a self-contained HTML report of the function a script builds"

DESCRIPTION = """\
Run FILE.py, compile the graph it defines (the same rules as `python -m nngraph
dump --help`: build(), fn, or the one module-level compiled Function) and write
one self-contained HTML file: the graph as built and after the passes, coloured
by fused kernel; every pass with its rewrites and IR diff; the nodes kept apart
and why; the kernels with their code; the memory plan; with --profile, the time
per kernel measured on the inputs of the script's last call of the function.

Example:
    python -m nngraph report mlp.py -o mlp.html --target cpu
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.py", help="the Python script that builds the graph")
    p.add_argument("-o", "--output", default=None, help="the HTML file to write (default: FILE.html)")
    p.add_argument("--target", choices=TARGETS, default=None,
                   help=f"the target to compile for (default: {DEFAULT_TARGET}, or the script's own)")
    p.add_argument("--opt-level", type=int, choices=(0, 1, 2), default=None, help="0, 1 or 2 (default 2)")
    p.add_argument("--name", default=None, metavar="VAR", help="the variable of FILE.py to use")
    p.add_argument("--profile", type=int, default=0, metavar="CALLS",
                   help="profile CALLS calls first, on the inputs of the script's last call")
    p.add_argument("--title", default=None, help="the report's title")


def run(args) -> int:
    target = args.target or DEFAULT_TARGET
    opt_level = 2 if args.opt_level is None else args.opt_level
    out = args.output or (args.file[:-3] if args.file.endswith(".py") else args.file) + ".html"

    def body():
        fn = load_function(args, target, opt_level)
        if not hasattr(fn, "report"):
            raise DumpError("the function was not made by ng.compile, so it has no report")
        if args.profile:
            fn.profile(calls=args.profile)
        fn.report(out, title=args.title)
        print(f"report written to {out}")
        return 0
    return guarded("report", args.file, body)

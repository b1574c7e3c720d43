"""The command line: `python -m nngraph SUBCOMMAND ...` (also installed as `nngraph`).

This file only dispatches. Each subcommand lives in its own module, which
provides HELP (one line), DESCRIPTION (the --help text), add_arguments(parser)
and run(args) -> exit status. To add one, write the module and list it in
SUBCOMMANDS.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "dump": "nngraph.cli_dump",   # print a compiled function at one stage
    "train": "nngraph.train_cli",  # train an MLP and a CNN on the digits, dump the IR
    "report": "nngraph.report.cli",  # a self-contained HTML report of a compiled function
    "run": "nngraph.onnx.cli",     # compile an ONNX model, time one inference
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nngraph",
        description="nngraph: compile neural-network graphs and look at what the compiler made of them.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, modname in SUBCOMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    return args._run(args)


if __name__ == "__main__":
    sys.exit(main())

"""The ONNX conformance suite (onnx.backend.test.BackendTest) over nngraph.

Every node case of the onnx wheel and its 9 light real models (AlexNet, ResNet-50,
VGG-19, ...) run through `nngraph.onnx.backend` on the reference target (the NumPy
interpreter of the compiled Program: all passes run, no LLVM, so ~1,900 cases fit
in CI time). Cases nngraph does not pass are listed, with the reason, in
expected_failures.txt; each is an xfail(strict=True), so one that starts to pass
fails the suite until it is taken off the list.
"""
from __future__ import annotations

import os
import re

import onnx.backend.test

from nngraph.onnx.backend import NNGraphBackend


class ReferenceBackend(NNGraphBackend):
    """The backend with target "reference" (see the module docstring)."""

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        return NNGraphBackend.prepare(model, device, target="reference", **kwargs)


def expected_failures() -> dict:
    path = os.path.join(os.path.dirname(__file__), "expected_failures.txt")
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, why = line.rstrip("\n").split("\t", 1)
                out[name] = why
    return out


_suite = onnx.backend.test.BackendTest(ReferenceBackend, __name__)
for _name in expected_failures():
    _suite.xfail(f"^{re.escape(_name)}_cpu$")
globals().update(_suite.test_cases)

"""GPU code generation: each Program kernel becomes Triton source (pointwise block
programs with masks, row kernels with one loop per stage, long reductions over few rows
split across programs and combined by a second launch, tiled tl.dot matmuls with their
epilogue), plus launch code that computes grids from the dynamic sizes.

    source, names = generate(program, name)   # the text fn.dump("triton") shows
    module = load(source)                      # importable; module.run(buffers, sizes)
"""
from .body import CodegenError
from .loader import load
from .module import generate

__all__ = ["generate", "load", "CodegenError"]

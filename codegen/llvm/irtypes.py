"""LLVM types for nngraph dtypes, and small IR helpers shared by the emitters."""
from __future__ import annotations

import llvmlite.ir as ir

F32 = ir.FloatType()
F64 = ir.DoubleType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
VOID = ir.VoidType()
I8P = ir.PointerType(I8)

VALUE = {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "bool": I1}
STORAGE = {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "bool": I8}


def value_type(dtype: str):
    """The type of a value in registers (bool is i1)."""
    return VALUE[dtype]


def storage_type(dtype: str):
    """The type of an element in memory (bool is one byte, as in NumPy)."""
    return STORAGE[dtype]


def is_float_type(t) -> bool:
    return isinstance(t, (ir.FloatType, ir.DoubleType))


def const(dtype: str, v):
    t = VALUE[dtype]
    if dtype == "bool":
        return ir.Constant(I1, int(bool(v)))
    if is_float_type(t):
        return ir.Constant(t, float(v))
    return ir.Constant(t, int(v))


def i64(v: int):
    return ir.Constant(I64, int(v))


def intrinsic(module, name: str, ret, args):
    """Declare (once) and return an intrinsic or external function by name."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, list(args)), name)
    return fn


def suffix(t) -> str:
    return "f32" if t == F32 else "f64" if t == F64 else f"i{t.width}"


def call_intrinsic(b: ir.IRBuilder, base: str, *args):
    """llvm.<base>.<type>(args...) with the result of the first argument's type."""
    t = args[0].type
    fn = intrinsic(b.module, f"llvm.{base}.{suffix(t)}", t, [a.type for a in args])
    return b.call(fn, list(args))

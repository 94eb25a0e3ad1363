"""anekit: build, check, estimate, simulate and run Apple Neural Engine programs.

    import anekit as ak
    x = ak.input("x", (1, 64, 1, 256))
    y = ak.softmax(ak.relu(ak.conv(x, W)), axis=1)
    prog = ak.program({"y": y})
    out = ak.compile(prog, target="m1")({"x": x_np})
"""
from __future__ import annotations

import importlib

from . import errors
from .ir import Function, Op, Program, Tensor, input, program
from .ir.builder import make_builder as _make_builder
from .ir.spec import REGISTRY as _REGISTRY

__version__ = "0.1.0"

# Subpackages and top-level functions load on first use, so `import anekit` stays light.
_LAZY_MODULES = {"mil", "sim", "targets", "preflight", "cost", "runtime", "hwx", "coreml", "models", "io",
                 "train", "importers"}
_LAZY_FUNCS = {
    "compile": ("anekit.runtime", "compile"),
    "check": ("anekit.preflight", "check"),
    "estimate": ("anekit.cost", "estimate"),
    "load": ("anekit.io", "load"),
    "save": ("anekit.io", "save"),
    "quantize": ("anekit.quantization", "quantize"),   # module named apart: an import would shadow it
    "param": ("anekit.train.autodiff", "param"),
    "grad": ("anekit.train.autodiff", "grad"),
    "optim": ("anekit.train", "optim"),
    "log_softmax": ("anekit.ir.composite", "log_softmax"),
    "rms_norm": ("anekit.ir.composite", "rms_norm"),
    "group_norm": ("anekit.ir.composite", "group_norm"),
    "l2_norm": ("anekit.ir.composite", "l2_norm"),
    "from_torch": ("anekit.importers", "from_torch"),
    "from_onnx": ("anekit.importers", "from_onnx"),
}

# Every declared op is a function here: ak.conv, ak.relu, ... (generated from the declarations),
# except where a top-level function has the name: ak.quantize quantizes a program's weights;
# the MIL op of that name is anekit.ir.declared.F.quantize.
for _name, _spec in _REGISTRY.items():
    if _name not in _LAZY_FUNCS:
        globals()[_name] = _make_builder(_spec)
del _name, _spec


def __getattr__(name: str):
    if name in _LAZY_FUNCS:
        mod, attr = _LAZY_FUNCS[name]
        value = getattr(importlib.import_module(mod), attr)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"anekit.{name}")
    else:
        raise AttributeError(f"module 'anekit' has no attribute '{name}'")
    globals()[name] = value
    return value


__all__ = ["errors", "Function", "Op", "Program", "Tensor", "input", "program", "__version__",
           *sorted(set(_REGISTRY) - set(_LAZY_FUNCS)), *sorted(_LAZY_FUNCS), *sorted(_LAZY_MODULES)]

"""Importers: PyTorch (through torch.export) and ONNX models as anekit programs.

    prog = ak.from_torch(module.eval(), (x,))        # or ak.from_onnx("model.onnx")
    out = ak.compile(prog, target="m4")({"x": x.numpy()})

Each importer walks the source graph once, turning every source op into declared anekit ops
through one table keyed by the source framework's op names (`aten_table.ATEN`,
`onnx_table.ONNX`). Values that depend only on weights and constants are folded with the source
framework itself, so mask and position bookkeeping never reaches the program. torch and onnx
are imported only when an importer is called.
"""
from __future__ import annotations


def from_torch(module, example_inputs, *, dtype: str = "fp16", decompose: bool = False):
    from .torch_export import from_torch as impl
    return impl(module, example_inputs, dtype=dtype, decompose=decompose)


def from_onnx(path, *, dtype: str = "fp16"):
    from .onnx_graph import from_onnx as impl
    return impl(path, dtype=dtype)


__all__ = ["from_torch", "from_onnx"]

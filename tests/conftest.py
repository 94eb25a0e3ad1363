"""Session-wide test setup.

PyPI's torchvision for torch 2.13 is built against CUDA torch: on the CPU torch we test with its
`_C` extension does not load and `import torchvision` fails in `_meta_registrations.py`
("operator torchvision::nms does not exist") — and so does every `import transformers` path that
imports torchvision when it is installed (ENV-NOTES.md). Defining the two operator schemas with
torch.library before anything imports torchvision lets the import succeed; only the detection
ops stay unusable. Nothing happens where torchvision is absent or its extension loads.
"""
import importlib.util
import pathlib

_TORCHVISION_SCHEMAS = None   # keeps the torch.library.Library alive for the session


def _define_torchvision_schemas():
    global _TORCHVISION_SCHEMAS
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or importlib.util.find_spec("torch") is None:
        return
    import torch
    ext = next(pathlib.Path(spec.origin).parent.glob("_C*.so"), None)
    if ext is not None:
        try:
            torch.ops.load_library(str(ext))
            return                  # a matching build: torchvision registers its own ops
        except (OSError, RuntimeError):
            pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SCHEMAS = lib


_define_torchvision_schemas()

"""Training-graph rule: which form an op with a runtime (trainable) weight takes, and why.

A trainable weight is a graph input (guide ch. 15). A matmul reads it as an ordinary
operand; a convolution reads it through the dynamic-weight path, which compiles at batch one
only (guide ch. 19); MIL's linear takes a constant weight only and its conv_transpose does
before iOS 17 (coremltools' op definitions). anekit.train.lower_runtime_weights rewrites
the ops that cannot take a runtime weight as matmuls and names them after their form.
"""
from __future__ import annotations

from ..ir.weights import is_weight
from .report import Finding

_CH19 = "ANE guide ch. 19, dynamic-weight convolution above batch one"
_MIL = "coremltools MIL op definitions: linear (iOS 15, 17) and conv_transpose (iOS 15) take a const weight"


def runtime_weight_rule(op, chip):
    from ..train.lowering import FORMS, lowered_form
    form = lowered_form(op.name) if op.type == "matmul" else None
    if form is not None:
        batch = op.outputs[0].shape[0] if op.outputs[0].rank else 1
        return [Finding(op.name, op.type, "decomposed", "runtime-weight",
                        "lowered: " + FORMS[form].format(batch=batch), "batch 1 for dynamic-weight conv",
                        form, _CH19 if form == "patch_matmul" else _MIL)]
    if op.type in ("linear", "conv_transpose") and not is_weight(op.inputs["weight"]):
        form = "a matmul" if op.type == "linear" else "per-tap matmuls"
        return [Finding(op.name, op.type, "unsupported", "runtime-weight",
                        f"the weight is a runtime input, and MIL's {op.type} takes a constant weight"
                        + (" before iOS 17; the dynamic-weight path also fails above batch one"
                           if op.type == "conv_transpose" else "")
                        + f"; anekit.train.lower_runtime_weights rewrites it as {form}", "constant weight",
                        "runtime", _MIL)]
    if op.type == "conv" and not is_weight(op.inputs["weight"]):
        batch = op.inputs["x"].shape[0]
        if batch == 1:
            return [Finding(op.name, op.type, "native", "runtime-weight",
                            "kept: the weight is a runtime input and the batch is 1, which the engine's "
                            "dynamic-weight convolution takes", "batch 1", batch, _CH19)]
        return [Finding(op.name, op.type, "unsupported", "runtime-weight",
                        f"the weight is a runtime input at batch {batch}; anekit.train.lower_runtime_weights "
                        "rewrites it as patch expansion + matmul", "batch 1", batch, _CH19)]
    return []

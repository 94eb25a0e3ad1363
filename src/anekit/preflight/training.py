"""Training-graph rule: which form an op with a runtime (trainable) weight takes, and why.

A trainable weight is a graph input (guide ch. 15). A matmul reads it as an ordinary
operand; a convolution reads it through the dynamic-weight path, which compiles at batch one
only (guide ch. 19), so anekit.train.lower_runtime_weights rewrites the others as matmuls and
names the rewritten ops after their form.
"""
from __future__ import annotations

from ..ir.weights import is_weight
from .report import Finding

_CH15 = "ANE guide ch. 15, 'A trainable weight is a graph input'"
_CH19 = "ANE guide ch. 19, dynamic-weight convolution above batch one"


def runtime_weight_rule(op, chip):
    from ..train.lowering import FORMS, lowered_form
    form = lowered_form(op.name) if op.type == "matmul" else None
    if form is not None:
        batch = op.outputs[0].shape[0] if op.outputs[0].rank else 1
        return [Finding(op.name, op.type, "decomposed", "runtime-weight",
                        "lowered: " + FORMS[form].format(batch=batch), "batch 1 for dynamic-weight conv",
                        form, _CH19 if form != "weight_matmul" else _CH15)]
    if op.type in ("conv", "conv_transpose") and not is_weight(op.inputs["weight"]):
        batch = op.inputs["x"].shape[0]
        if batch == 1:
            return [Finding(op.name, op.type, "native", "runtime-weight",
                            "kept: the weight is a runtime input and the batch is 1, which the engine's "
                            "dynamic-weight convolution takes", "batch 1", batch, _CH19)]
        return [Finding(op.name, op.type, "unsupported", "runtime-weight",
                        f"the weight is a runtime input at batch {batch}; anekit.train.lower_runtime_weights "
                        "rewrites it as patch expansion + matmul", "batch 1", batch, _CH19)]
    return []

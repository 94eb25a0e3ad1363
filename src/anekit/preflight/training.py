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

# Forms anekit.train.lower_runtime_weights writes; each rewritten op is named `<op>__<form>`.
FORMS = {
    "patch_matmul": "conv with a runtime weight at batch {batch}: patch expansion + matmul, because the "
                    "engine's dynamic-weight convolution fails to compile above batch one",
    "tap_matmul": "conv_transpose with a runtime weight: one matmul per kernel tap, scattered back, because MIL's "
                  "conv_transpose takes a constant weight before iOS 17 and the dynamic-weight path fails to "
                  "compile above batch one",
    "weight_matmul": "linear with a runtime weight: a matmul with the weight as an input (weights as inputs), "
                     "because MIL's linear takes a constant weight only",
}


def lowered_form(op_name: str | None) -> str | None:
    """The FORMS key an op name carries, or None."""
    if not op_name or "__" not in op_name:
        return None
    head, _, tail = op_name.rpartition("__")
    form = tail.rstrip("0123456789_")
    return form if form in FORMS and head else None


def runtime_weight_rule(op, chip):
    """Which form an op with a runtime weight took. The refusals themselves come from each
    op's declared compile-time inputs (`OpSpec.const_inputs`, preflight/ane_route.py)."""
    form = lowered_form(op.name) if op.type == "matmul" else None
    if form is not None:
        batch = op.outputs[0].shape[0] if op.outputs[0].rank else 1
        return [Finding(op.name, op.type, "decomposed", "runtime-weight",
                        "lowered: " + FORMS[form].format(batch=batch), "batch 1 for dynamic-weight conv",
                        form, _CH19 if form == "patch_matmul" else _MIL)]
    if op.type == "conv" and not is_weight(op.inputs["weight"]) and op.inputs["x"].shape[0] == 1:
        return [Finding(op.name, op.type, "native", "runtime-weight",
                        "kept: the weight is a runtime input and the batch is 1, which the engine's "
                        "dynamic-weight convolution takes", "batch 1", 1, _CH19)]
    return []

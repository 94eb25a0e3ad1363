"""A composite's own vector-Jacobian product (the idea of JAX's custom_vjp).

A composition built from declared ops differentiates through its parts, which is exact in
float64 but can be poor in fp16: rms_norm's rsqrt'(ms) = -ms^-1.5 / 2 is ~4e4 for a residual
stream of rms 0.03, so the backward overflows whatever the loss scale. A composite can instead
mark its output with a rule over its inputs, written with forward ops:

    y = x * inv * w
    return custom_vjp(y, {"x": x, "w": w}, lambda g: {"x": ..., "w": ...})

`ak.grad` then sends y's cotangent straight to x and w through the rule and does not walk
the ops inside (an inner tensor that something else also uses still gets its own cotangent
from that use). The rule may return a cotangent of a broadcast shape (summed down, as for op
rules) or None for an input that gets none.
"""
from __future__ import annotations

from typing import Callable

from ..errors import GradientError
from .graph import Tensor


class CustomVJP:
    """What `ak.grad` reads on a marked tensor: the inputs and rule(g) -> {name: cotangent}."""

    __slots__ = ("name", "inputs", "rule")

    def __init__(self, name: str, inputs: dict, rule: Callable):
        self.name, self.inputs, self.rule = name, inputs, rule


def custom_vjp(out: Tensor, inputs: dict, rule: Callable, name: str = "composite") -> Tensor:
    """Mark `out` (computed from `inputs`, {name: Tensor or None}) with its own VJP `rule`."""
    if not isinstance(out, Tensor) or out.op is None:
        raise GradientError(f"custom_vjp({name}): the output must be a tensor computed by an op")
    ins = {k: v for k, v in inputs.items() if v is not None}
    for k, v in ins.items():
        if not isinstance(v, Tensor):
            raise GradientError(f"custom_vjp({name}): input '{k}' is {type(v).__name__}, not a graph Tensor")
    out.vjp = CustomVJP(name, ins, rule)
    return out

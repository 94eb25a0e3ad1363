"""Preflight rule for training graphs: a loss-scaled cotangent through a width-offset slice.

On the families whose width-axis slices with a nonzero begin offset go through the x16
fixed-point crop (M1, M2, A14: guide ch. 3), a value above 4094 becomes inf. A training graph
multiplies every cotangent by the loss scale (the `loss_scale` input the trainer seeds the
backward pass with), so a backward slice that is safe at scale 1 saturates at a large scale:
the guide's conv weight-gradient divergence (ch. 15: exact at 384, first inf at 512).

Cotangents are linear in the seed, so the rule bounds each such slice's input at loss scale 1
from the declared input ranges and names the largest safe power-of-two scale.
"""
from __future__ import annotations

import math

from . import ranges
from .report import Finding
from .rules import SLICE_OPS

LOSS_SCALE_INPUT = "loss_scale"   # the name anekit.train.Trainer gives the backward seed
RULE = "train-width-slice-saturation"


def width_offset(op) -> int:
    """The begin offset of a slice/crop on the last (width) axis; 0 when none."""
    if op.type == "crop":
        return int((op.attr("crop_width") or (0, 0))[0])
    if op.type not in SLICE_OPS:
        return 0
    begin = op.attr("begin")
    if not begin:
        return 0
    b = int(begin[-1])
    if op.type == "slice_by_index":
        mask = op.attr("begin_mask")
        if mask and mask[-1]:
            return 0
    return b + op.inputs["x"].shape[-1] if b < 0 else b


def findings(fn, chip) -> list[Finding]:
    if not chip.features.width_slice_saturates:
        return []
    seed = next((t for t in fn.inputs if t.name == LOSS_SCALE_INPUT), None)
    if seed is None:
        return []
    scaled = {id(seed)}
    at_risk = []
    for op in fn.ops:
        if any(id(t) in scaled for t in op.tensor_inputs()):
            scaled.update(id(t) for t in op.outputs)
            if width_offset(op) and id(op.inputs["x"]) in scaled:
                at_risk.append(op)
    if not at_risk:
        return []
    # Bounds at loss scale 1 (cotangents scale linearly with the seed).
    res = ranges.start(fn)
    res.intervals[id(seed)] = (1.0, 1.0)
    for op in fn.ops:
        ranges.step(op, res)
    lim = chip.limits.width_slice_max_value or 4094.0
    unit = max(ranges.mag(res.of(op.inputs["x"])) for op in at_risk)
    names = ", ".join(op.name for op in at_risk[:3]) + (f" and {len(at_risk) - 3} more" if len(at_risk) > 3 else "")
    if math.isfinite(unit) and unit > 0:
        safe = 2.0 ** math.floor(math.log2(lim / unit))
        advice = (f"at loss scale 1 they reach {unit:.4g}, so a loss scale up to {safe:g} is safe "
                  f"(values stay <= {lim:g})")
    else:
        safe = None
        advice = ("their values are unbounded (declare input ranges to get a safe loss scale); use "
                  "dynamic loss scaling, which halves the scale when a gradient overflows")
    if seed.range is not None and safe is not None and seed.range[1] > safe:
        advice += f"; the declared loss scale {seed.range[1]:g} is above it"
    reason = (f"{len(at_risk)} width-offset slice(s) read the loss-scaled backward pass ({names}); on "
              f"{chip.family} values above {lim:g} there become inf (guide ch. 15 conv weight-gradient "
              f"saturation); {advice}")
    return [Finding("(program)", "program", "risk", RULE, reason, lim, safe,
                    chip.features.source("width_slice_saturates"))]

"""The latency formula, as functions of op-level quantities (OpWork) and chip constants.

One op:   us = max(compute, weight stream, spill traffic) + program I/O it carries
          compute = array flops / (roof x lane fill x spill factor)   (MAC ops)
                  = bytes x passes / vector stream                     (everything else)
One program: dispatch floor (once: fusion amortizes it) + sum over ops.
The structure follows the guide's roofline (ch. 9) and three-stage model (ch. 18): a roof per
path, a stream per operand class, a fixed floor; the terms it adds are program I/O, the lane
fill of small layers and the working-set spill (ch. 9, 21).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .opwork import OpWork
from .params import FULL_CHANNELS, WIDTH_GRANULE, CostParams


@dataclass
class OpTime:
    compute_us: float = 0.0
    weights_us: float = 0.0
    spill_us: float = 0.0
    io_us: float = 0.0
    utilization: float = 1.0

    @property
    def us(self) -> float:
        return max(self.compute_us, self.weights_us, self.spill_us) + self.io_us

    @property
    def bound(self) -> tuple[str, str | None]:
        """("compute" | "bandwidth" | "free", which stream when bandwidth)."""
        parts = {"compute": self.compute_us, "weights": self.weights_us, "activations": self.spill_us + self.io_us}
        if max(parts.values()) <= 0.0:
            return "free", None
        top = max(parts, key=parts.get)
        return ("compute", None) if top == "compute" else ("bandwidth", top)


def lane_fill(w: OpWork) -> float:
    """Fraction of the array a MAC op keeps busy: output-channel lanes and width granules."""
    ch = min(1.0, w.out_channels / FULL_CHANNELS) if w.out_channels else 1.0
    if w.spatial:
        sp = w.spatial / (math.ceil(w.spatial / WIDTH_GRANULE) * WIDTH_GRANULE)
    else:
        sp = 1.0
    return ch * sp


def op_time(w: OpWork, p: CostParams, io_bytes: float = 0.0, spill_bytes: float = 0.0) -> OpTime:
    """Time of one op. io_bytes: program inputs/outputs it reads or writes; spill_bytes: its
    intermediate activations too large to stay in the working set (written and read via DRAM)."""
    t = OpTime()
    if w.path == "const":
        return t
    t.io_us = io_bytes / (p.io_gbs * 1e3)
    if w.path == "free":   # a descriptor edit: only the program I/O it happens to carry
        return t
    t.spill_us = spill_bytes / (p.io_gbs * 1e3)
    if w.path in ("conv", "matmul"):
        t.utilization = lane_fill(w)
        roof = p.conv_tflops if w.path == "conv" else p.matmul_tflops
        rate = roof * 1e6 * t.utilization          # flops per microsecond
        if w.path == "matmul" and w.largest_operand > p.working_set_bytes:
            rate *= p.spill_factor
        t.compute_us = w.exec_flops / rate
        stream = p.conv_weight_gbs if w.path == "conv" else p.matmul_weight_gbs
        t.weights_us = w.weight_bytes / (stream * 1e3)
    else:
        t.compute_us = (w.act_in_bytes + w.act_out_bytes) * w.passes / (p.vector_gbs * 1e3)
        t.weights_us = w.weight_bytes / (p.vector_gbs * 1e3)
    return t

"""Latency estimates for ANE programs, per chip, with no device in hand.

    est = anekit.cost.estimate(prog, "m4max")
    est.total_us, est.low_us, est.high_us   # estimate and its interval (validation residuals)
    est.bound                                 # "dispatch", "compute" or "bandwidth"
    for name, type, us, flops, nbytes, bound in est.ops: ...
    anekit.cost.compare(prog, ["m1", "m4", "m4max"])       # one estimate per chip
    anekit.cost.estimate_decode(token_prog, "m4 pro").tokens_per_s
    anekit.cost.estimate_step({"fwd": f, "bwd": b}, "m1").ms
    anekit.cost.plot_roofline(est, "roofline.png")
    anekit.cost.host_ms(flops, bytes, "m4"), anekit.cost.compile_ms(kernels)   # off-engine parts

The model, its parameters and their fit: anekit.cost.model, .params, .fit; its validation
against published measurements (leave one source out): benchmarks/cost_validation.py and
docs/targets.md.
"""
from __future__ import annotations

from .host import compile_ms, host_ms
from .params import CostParams, params_for
from .program import Estimate, OpRow, estimate
from .roofline import plot_roofline
from .workloads import DecodeEstimate, StepEstimate, estimate_decode, estimate_step
from .. import targets


def compare(prog, chips, function: str | None = None, route: str = "standard") -> list[Estimate]:
    """Estimates of one program on several chips (names, records, or "all" for every chip)."""
    if chips == "all":
        chips = [c.name for c in targets.all_chips()]
    return [estimate(prog, c, function=function, route=route) for c in chips]


__all__ = ["estimate", "compare", "Estimate", "OpRow", "params_for", "CostParams", "plot_roofline",
           "estimate_decode", "estimate_step", "DecodeEstimate", "StepEstimate", "host_ms", "compile_ms"]

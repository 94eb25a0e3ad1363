"""Latency estimates for ANE programs, per chip, with no device in hand.

    est = anekit.cost.estimate(prog, "m4max")
    est.total_us, est.bound        # whole program; "dispatch", "compute" or "bandwidth"
    for name, type, us, flops, nbytes, bound in est.ops: ...
    anekit.cost.plot_roofline(est, "roofline.png")

The model and its validation against published measurements: docs/targets.md and
benchmarks/cost_validation.py.
"""
from __future__ import annotations

from .program import Estimate, OpRow, estimate
from .params import CostParams, params_for
from .roofline import plot_roofline

__all__ = ["estimate", "Estimate", "OpRow", "params_for", "CostParams", "plot_roofline"]

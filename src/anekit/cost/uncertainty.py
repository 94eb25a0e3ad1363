"""Intervals around an estimate, from the model's own validation residuals.

For every published point the fit records its leave-one-source-out log residual
r = log(predicted / measured) (anekit.cost.fit). An estimate on generation g whose program is
bound by b ("dispatch", "compute", "bandwidth") gets the 10th-90th percentile of the residuals
of the points with the same (g, b); with fewer than MIN_POINTS such points it pools all points
bound by b, then all points. A generation no point measures widens the pooled band by
UNMEASURED_WIDEN on each side. The interval is [total / exp(r90), total / exp(r10)]: it says where
the measured time of a similar program fell relative to the model's prediction.
"""
from __future__ import annotations

import math

from .params import fitted

MIN_POINTS = 4
UNMEASURED_WIDEN = 1.5
# Without fitted.json (no residuals recorded): the guide's broad-sweep median error ~31%
# (ch. 18), as a symmetric factor.
DEFAULT_BAND = (math.log(1 / 1.45), math.log(1.45))


def band(generation: str, bound: str, measured: bool = True, table: dict | None = None) -> tuple[float, float, str]:
    """(r10, r90, basis): the log-residual band used for this generation and bound."""
    tab = (fitted() if table is None else table).get("intervals", {})
    for key in (f"{generation}/{bound}", f"*/{bound}", "*/*"):
        rec = tab.get(key)
        if rec and rec["n"] >= MIN_POINTS:
            lo, hi = rec["r10"], rec["r90"]
            if not measured or key != f"{generation}/{bound}" and generation not in tab.get("_measured", ()):
                w = math.log(UNMEASURED_WIDEN)
                lo, hi = lo - w, hi + w
            return lo, hi, key
    lo, hi = DEFAULT_BAND
    return lo, hi, "default (guide ch. 18 broad-sweep error)"


def interval(total_us: float, params, bound: str) -> tuple[float, float]:
    """(low_us, high_us) around a total estimate."""
    r10, r90, _ = band(params.generation, bound, params.measured)
    lo = total_us / math.exp(max(r90, 0.0))
    hi = total_us / math.exp(min(r10, 0.0))
    return lo, hi

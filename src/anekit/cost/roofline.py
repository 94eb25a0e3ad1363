"""Roofline plot of an estimate: the chip's roofs and the program's ops placed on them."""
from __future__ import annotations

from ..errors import AnekitError, DependencyError


def plot_roofline(est, path) -> str:
    """Write a PNG: attainable FLOP/s against arithmetic intensity, the chip's conv and matmul
    roofs and its weight and activation streams, each op as a point. Returns the path."""
    try:   # imported here: matplotlib is optional (the `plot` extra) and slow to import
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DependencyError("plot_roofline needs matplotlib: pip install 'anekit[plot]'") from None
    if not hasattr(est, "ops") or not hasattr(est, "params"):
        raise AnekitError(f"plot_roofline needs an Estimate, got {type(est).__name__}")
    p = est.params
    # x: flops per byte the model charges to DRAM (weights, program I/O, spills); intermediates
    # that stay in the on-chip working set cost no DRAM traffic, as in the model (guide ch. 9, 21).
    pts = [(r.flops / r.dram_bytes, r.flops / r.us * 1e6, r) for r in est.ops
           if r.bound in ("compute", "bandwidth") and r.us > 0 and r.dram_bytes > 0 and r.flops > 0]
    lo = min([0.1] + [x / 3 for x, _, _ in pts])
    hi = max([1e4] + [x * 10 for x, _, _ in pts])
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for roof, bw, label, style, color in (
            (p.conv_tflops, p.conv_weight_gbs, "conv", "-", "tab:blue"),
            (p.matmul_tflops, p.matmul_weight_gbs, "matmul", "--", "tab:purple"),
            (max(p.conv_tflops, p.matmul_tflops), p.io_gbs, "activation stream", ":", "tab:orange")):
        ys = [min(roof * 1e12, x * bw * 1e9) for x in xs]
        ax.plot(xs, ys, style, color=color, lw=1.2, label=f"{label}: {roof:g} TFLOP/s, {bw:.3g} GB/s")
    markers = {("compute", None): ("o", "tab:green", "compute-bound op"),
               ("bandwidth", "weights"): ("s", "tab:red", "weight-stream-bound op"),
               ("bandwidth", "activations"): ("^", "tab:orange", "activation-bound op")}
    for key, (marker, color, label) in markers.items():
        sel = [(x, y) for x, y, r in pts if (r.bound, r.stream if r.bound == "bandwidth" else None) == key]
        if sel:
            ax.scatter(*zip(*sel), marker=marker, color=color, s=30, zorder=3, label=label)
    if len(pts) <= 24:
        for x, y, r in pts:
            ax.annotate(r.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / DRAM byte)")
    ax.set_ylabel("FLOP/s")
    ax.set_title(f"{est.target} ({est.compiler}): {est.total_us:.0f} us, {est.bound}-bound; "
                 f"dispatch floor {est.dispatch_us:.0f} us")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(str(path), dpi=110)
    except OSError as e:
        raise AnekitError(f"cannot write roofline plot to {path}: {e}") from None
    finally:
        plt.close(fig)
    return str(path)

"""Roofline plot of an estimate: the chip's roofs and the program's ops placed on them.

x: arithmetic intensity, FLOP per byte the model charges to DRAM (weights, program I/O,
spills); intermediates that stay in the on-chip working set cost no DRAM traffic, as in the
model (guide ch. 9, 21). y: attainable FLOP/s. Each roof is a compute ceiling joined to the
bandwidth slope that feeds it, named on the plot; each op is a point labelled with its name
and coloured by what bounds it.
"""
from __future__ import annotations

import math
import os

from .._files import open_new
from ..errors import AnekitError, DependencyError, UsageError

PLOT_FORMATS = (".png", ".svg")
MAX_LABELS = 40          # beyond this the slowest ops are labelled, the rest stay unlabelled points

# What bounds an op -> (marker, colour, legend text).
BOUND_STYLES = {
    ("compute", None): ("o", "tab:green", "compute-bound op"),
    ("bandwidth", "weights"): ("s", "tab:red", "weight-stream-bound op"),
    ("bandwidth", "activations"): ("^", "tab:orange", "activation-stream-bound op"),
}


def _points(est):
    """(intensity, FLOP/s, row) for every op the roofline can place."""
    return [(r.flops / r.dram_bytes, r.flops / r.us * 1e6, r) for r in est.ops
            if r.bound in ("compute", "bandwidth") and r.us > 0 and r.dram_bytes > 0 and r.flops > 0]


def roofline_figure(est):
    """The matplotlib Figure of `plot_roofline` (for callers that embed or inspect it)."""
    try:   # imported here: matplotlib is optional (the `plot` extra) and slow to import
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DependencyError("plot_roofline needs matplotlib: pip install 'anekit[plot]'") from None
    if not hasattr(est, "ops") or not hasattr(est, "params"):
        raise AnekitError(f"plot_roofline needs an Estimate, got {type(est).__name__}")
    p = est.params
    pts = _points(est)
    lo = min([0.1] + [x / 3 for x, _, _ in pts])
    hi = max([1e4] + [x * 10 for x, _, _ in pts])
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    fig, ax = plt.subplots(figsize=(10, 6.5))
    roofs = (("conv", p.conv_tflops, "conv weight stream", p.conv_weight_gbs, "-", "tab:blue"),
             ("matmul", p.matmul_tflops, "matmul weight stream", p.matmul_weight_gbs, "--", "tab:purple"),
             ("peak", max(p.conv_tflops, p.matmul_tflops), "activation stream", p.io_gbs, ":", "tab:gray"))
    named_flat: dict[float, list[str]] = {}
    for i, (name, tflops, stream, gbs, style, color) in enumerate(roofs):
        ys = [min(tflops * 1e12, x * gbs * 1e9) for x in xs]
        ax.plot(xs, ys, style, color=color, lw=1.4,
                label=f"{name} roof {tflops:g} TFLOP/s, {stream} {gbs:.3g} GB/s")
        named_flat.setdefault(tflops, []).append(name)
        # Name each slope on the plot, at staggered points so the names do not overlap.
        x0 = lo * (hi / lo) ** (0.04 + 0.2 * i)
        if x0 * gbs * 1e9 < tflops * 1e12:
            ax.annotate(f"{stream} {gbs:.3g} GB/s", (x0, x0 * gbs * 1e9), xytext=(6, -10),
                        textcoords="offset points", fontsize=7, color=color,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    for tflops, names in named_flat.items():     # one name per ceiling, even when roofs share it
        ax.annotate(f"{' / '.join(names)} roof {tflops:g} TFLOP/s", (xs[-1], tflops * 1e12), xytext=(-4, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7)
    for key, (marker, color, label) in BOUND_STYLES.items():
        sel = [(x, y) for x, y, r in pts if (r.bound, r.stream if r.bound == "bandwidth" else None) == key]
        if sel:
            ax.scatter(*zip(*sel), marker=marker, color=color, s=36, zorder=3, edgecolors="black",
                       linewidths=0.4, label=f"{label} ({len(sel)})")
    # Ops that land on the same spot (the per-layer copies of one projection) share one label.
    spots: dict[tuple, list] = {}
    for x, y, r in pts:
        spots.setdefault((round(math.log10(x), 2), round(math.log10(y), 2)), []).append((x, y, r))
    ranked = sorted(spots.values(), key=lambda group: -max(r.us for _, _, r in group))
    for group in ranked[:MAX_LABELS]:
        x, y, _ = group[0]
        names = [r.name for _, _, r in group]
        text = names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1} more"
        ax.annotate(text, (x, y), fontsize=6.5, xytext=(5, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of DRAM traffic)")
    ax.set_ylabel("attainable performance (FLOP/s)")
    hidden = len(est.ops) - len(pts)
    notes = []
    if hidden:
        notes.append(f"{hidden} op(s) not placed: fused, free, or no DRAM traffic")
    if len(spots) > MAX_LABELS:
        notes.append(f"labels on the {MAX_LABELS} slowest of {len(spots)} spots")
    ax.set_title(f"{est.target} ({est.compiler}) roofline: {est.total_us:.0f} us, {est.bound}-bound; "
                 f"dispatch floor {est.dispatch_us:.0f} us" + (f"\n{'; '.join(notes)}" if notes else ""),
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", title="roofs and ops", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_roofline(est, path) -> str:
    """Write the roofline of `est` to `path` (.png or .svg): log axes with units, the chip's
    conv, matmul and activation-stream roofs named, each op a labelled point coloured by its
    bound, and a legend. Returns the path."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in PLOT_FORMATS:
        raise UsageError(f"roofline plot {path}: the file name must end in {' or '.join(PLOT_FORMATS)}")
    fig = roofline_figure(est)
    import matplotlib.pyplot as plt
    try:
        with open_new(path, AnekitError) as f:     # a regular file: a FIFO would block savefig
            fig.savefig(f, dpi=120, format=ext[1:])
    except OSError as e:
        raise AnekitError(f"cannot write roofline plot to {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path

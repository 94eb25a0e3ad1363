"""Loss-curve PNGs for the trainer and `anekit train --plot` (matplotlib, the `plot` extra)."""
from __future__ import annotations

from pathlib import Path

from ..errors import DependencyError, UsageError


def plot_loss(history: list[dict], path, title: str = "training loss") -> Path:
    if not history:
        raise UsageError("no steps to plot: run fit() first")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DependencyError("plotting needs matplotlib: pip install 'anekit[plot]'") from None
    steps = [r["step"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, [r["loss"] for r in history], lw=1.2, label="loss")
    over = [r["step"] for r in history if r.get("overflow")]
    if over:
        ax.scatter(over, [history[steps.index(s)]["loss"] for s in over], color="red", s=12,
                   label=f"skipped (overflow): {len(over)}", zorder=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path

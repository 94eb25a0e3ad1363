"""Learning-rate schedules: a function of the step number (1-based, as the optimizers count).

    ak.optim.constant(1e-3)
    ak.optim.cosine(1e-3, total_steps=300, warmup_steps=20, min_lr=0.0)

The learning rate is a per-step scalar the host sends with each update (guide ch. 15: the host
sends only the minibatch and the scalar learning rate), so a schedule never changes the program.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Schedule:
    kind: str
    lr: float
    total_steps: int = 0
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __call__(self, step: int) -> float:
        """The learning rate of update number `step` (1, 2, ...)."""
        if self.kind == "constant":
            return self.lr
        if self.warmup_steps and step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "lr": self.lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}


def _positive(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise UsageError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def constant(lr: float) -> Schedule:
    return Schedule("constant", _positive("lr", lr))


def cosine(lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0) -> Schedule:
    """Linear warmup from 0 over `warmup_steps`, then half a cosine from `lr` down to `min_lr`
    at `total_steps` (held there after)."""
    for name, v in (("total_steps", total_steps), ("warmup_steps", warmup_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UsageError(f"{name} must be an integer >= 0, got {v!r}")
    if total_steps < 1 or warmup_steps > total_steps:
        raise UsageError(f"cosine schedule needs 1 <= total_steps and warmup_steps <= total_steps, "
                         f"got total_steps={total_steps}, warmup_steps={warmup_steps}")
    return Schedule("cosine", _positive("lr", lr), total_steps, warmup_steps, _positive("min_lr", min_lr))


def as_schedule(lr) -> Schedule:
    return lr if isinstance(lr, Schedule) else constant(lr)

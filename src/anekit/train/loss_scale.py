"""Loss scaling: multiply the loss by S before the backward pass so small fp16 gradients do not
flush to zero (guide ch. 15: x256 and up against fp16 gradient underflow; it trains at 1024).

    static:  LossScaler(256)           S never changes; the optimizer's learning rate absorbs it
    dynamic: LossScaler("dynamic")     an inf/NaN gradient skips the step and halves S; after
                                       `growth_interval` clean steps S doubles

Every scale is a power of two, so scaling and unscaling are exact in fp16.
"""
from __future__ import annotations

import math

from ..errors import CheckpointError, UsageError
from ..sim.fp16 import all_finite

STATIC_DEFAULT = 256.0       # the guide's and the seeds' static scale
DYNAMIC_START = 1024.0       # the guide's digits run (ch. 15)
# The scale is an fp16 graph input: 2**16 is already inf in fp16, so growth stops at 2**15.


def _pow2(name, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 \
            or math.frexp(v)[0] != 0.5:
        raise UsageError(f"{name} must be a positive power of two, got {v!r}")
    return float(v)


class LossScaler:
    def __init__(self, scale="dynamic", *, init_scale: float = DYNAMIC_START, growth_interval: int = 200,
                 min_scale: float = 1.0, max_scale: float = 32768.0):
        if scale == "dynamic":
            self.dynamic, self.scale = True, _pow2("init_scale", init_scale)
        elif scale == "static" or scale is None:
            self.dynamic, self.scale = False, STATIC_DEFAULT
        else:
            self.dynamic, self.scale = False, _pow2("loss_scale", scale)
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
            raise UsageError(f"growth_interval must be an integer >= 1, got {growth_interval!r}")
        self.growth_interval = growth_interval
        self.min_scale, self.max_scale = _pow2("min_scale", min_scale), _pow2("max_scale", max_scale)
        self.clean_steps = 0          # consecutive steps without overflow
        self.overflow_steps = 0       # steps skipped (dynamic) or with a non-finite gradient (static)

    @staticmethod
    def finite(grads) -> bool:
        """Whether every gradient is finite (the engine turns NaN into inf, guide ch. 3)."""
        return all(all_finite(g) for g in grads)

    def update(self, finite: bool) -> bool:
        """Record one step's outcome; True if the optimizer should apply it."""
        if finite:
            self.clean_steps += 1
            if self.dynamic and self.clean_steps >= self.growth_interval:
                self.scale = min(self.scale * 2.0, self.max_scale)
                self.clean_steps = 0
            return True
        self.overflow_steps += 1
        self.clean_steps = 0
        if self.dynamic:
            self.scale = max(self.scale / 2.0, self.min_scale)
            return False
        return False    # a static scale cannot recover either; the step is skipped and counted

    def state_dict(self) -> dict:
        return {"dynamic": self.dynamic, "scale": self.scale, "growth_interval": self.growth_interval,
                "min_scale": self.min_scale, "max_scale": self.max_scale,
                "clean_steps": self.clean_steps, "overflow_steps": self.overflow_steps}

    def load_state(self, d: dict) -> None:
        try:
            if d["dynamic"] != self.dynamic:
                raise CheckpointError(f"checkpoint used {'dynamic' if d['dynamic'] else 'static'} loss scaling; "
                                      f"this run uses {'dynamic' if self.dynamic else 'static'}")
            scale = _pow2("scale", d["scale"])
            clean, over = int(d["clean_steps"]), int(d["overflow_steps"])
        except (KeyError, TypeError, ValueError, UsageError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"checkpoint loss-scale state is invalid: {e}") from None
        self.scale, self.clean_steps, self.overflow_steps = scale, clean, over

    def __repr__(self) -> str:
        return f"LossScaler({'dynamic' if self.dynamic else 'static'}, scale={self.scale:g}, overflows={self.overflow_steps})"

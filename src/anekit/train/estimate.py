"""The cost model's estimate of one training step per chip: the forward+backward program and
the optimizer's update program, each one dispatch (anekit.cost; no device needed)."""
from __future__ import annotations
from ..cost import estimate


def estimate_step(trainer, target=None) -> dict:
    """{"total_us", "train_step_us", "update_us", "target"} for `trainer` on `target` (default:
    the trainer's own target)."""
    chip = target if target is not None else trainer.target
    fwd_bwd = estimate(trainer.program, chip)
    update = estimate(trainer.opt.update_program(), chip)
    return {"target": getattr(chip, "name", chip), "train_step_us": fwd_bwd.total_us,
            "update_us": update.total_us, "total_us": fwd_bwd.total_us + update.total_us}

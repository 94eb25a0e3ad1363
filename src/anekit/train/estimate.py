"""The cost model's estimate of one training step per chip: the engine programs (anekit.cost)
plus the host's part of the step and, for pipelines that re-bake weights, the compiles
(anekit.cost.host). No device needed; nothing here is fitted to published step times."""
from __future__ import annotations

from ..cost import compile_ms, estimate, host_ms

ADAM_BYTES_PER_PARAM = 28   # fp32 AdamW: read weight, gradient, m, v; write weight, m, v


def estimate_step(trainer, target=None) -> dict:
    """{"total_us", "train_step_us", "update_us", "target"} for `trainer` on `target` (default:
    the trainer's own target)."""
    chip = target if target is not None else trainer.target
    fwd_bwd = estimate(trainer.program, chip)
    update = estimate(trainer.opt.update_program(), chip)
    return {"target": getattr(chip, "name", chip), "train_step_us": fwd_bwd.total_us,
            "update_us": update.total_us, "total_us": fwd_bwd.total_us + update.total_us}


def llama_host_work(config, head_on_host: bool = True) -> dict:
    """Host work of one step of a llama2.c model whose layers run on the engine: the classifier
    forward and backward (three matmuls of vocab x dim x seq) when it stays on the CPU, and an
    fp32 AdamW pass over every parameter (a memory stream). {name: (flops, bytes)}."""
    c = config
    n_params = c.vocab_size * c.dim + c.n_layers * (4 * c.dim * c.dim + 3 * c.dim * c.hidden_dim + 2 * c.dim) + c.dim
    out = {"AdamW": (12.0 * n_params, float(ADAM_BYTES_PER_PARAM * n_params))}
    if head_on_host:
        out["classifier fwd+bwd"] = (3 * 2.0 * c.vocab_size * c.dim * c.seq_len, 0.0)
    return out


def stories_step_ms(config, pipeline: str, target, engine_ms: float, head_on_host: bool = True,
                    compiles_per_step: int = 0) -> dict:
    """A whole training step on a chip: the engine programs' time (`engine_ms`, from ak.estimate),
    the host work (llama_host_work priced by anekit.cost.host_ms), and the compile time of
    `compiles_per_step` programs (anekit.cost.compile_ms), reported apart because published
    ms/step figures leave compiles out (maderix/ANE training README: compile time is listed
    separately from train time)."""
    host = {k: host_ms(f, b, target) for k, (f, b) in llama_host_work(config, head_on_host).items()}
    step = engine_ms + sum(host.values())
    return {"engine": engine_ms, **{f"host {k}": v for k, v in host.items()}, "step": step,
            "compile": compile_ms(compiles_per_step), "pipeline": pipeline}

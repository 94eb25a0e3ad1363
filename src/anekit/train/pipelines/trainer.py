"""Training a llama2.c (Stories) model: AdamW with cosine warmup, loss scaling, checkpoints.

    tr = StoriesTrainer(TINY, pipeline="dynamic", target="m4", steps=300)
    tr.fit(corpus.Windows(ids, TINY.seq_len), on_step=print)
    tr.model().save("model.bin")                     # run.c's format

Parameters are float32 master weights updated by the AdamW update program on the host
simulator (the seeds ran Adam on the CPU too); gradients come from StoriesPipeline with the
loss multiplied by the loss scale, and a step with a non-finite gradient is skipped (dynamic
scaling halves the scale). Batches are chosen by step number, so a resumed run is bit-exact.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ...errors import CheckpointError, TrainingError, UsageError
from ...models import llama2c
from ...models.llama2c import _deinterleave
from .. import checkpoint as ckpt
from ..loss_scale import LossScaler
from ..optim import AdamW, cosine
from . import layer as L
from .stories import StoriesPipeline

# A config that trains in a minute or two on the simulator (byte-level vocabulary).
TINY = llama2c.Config(dim=64, hidden_dim=176, n_layers=2, n_heads=4, n_kv_heads=4, vocab_size=259, seq_len=64)
CONFIGS = {"tiny": TINY, "15M": llama2c.STORIES15M, "42M": llama2c.STORIES42M, "110M": llama2c.STORIES110M}


def init_params(config, seed: int = 0) -> dict[str, np.ndarray]:
    """llama2.c's model.py init: N(0, 0.02), residual projections (wo, w3 there; wo, w2 here
    as in GPT-2) scaled by 1/sqrt(2 n_layers), norms 1. Names l<i>_<weight>, run.c shapes."""
    rng = np.random.default_rng(seed)
    c = config
    shapes = {"rms_att": (c.dim,), "wq": (c.dim, c.dim), "wk": (c.dim, c.dim), "wv": (c.dim, c.dim),
              "wo": (c.dim, c.dim), "rms_ffn": (c.dim,), "w1": (c.hidden_dim, c.dim),
              "w3": (c.hidden_dim, c.dim), "w2": (c.dim, c.hidden_dim)}
    p = {"embed": (0.02 * rng.standard_normal((c.vocab_size, c.dim))).astype(np.float32)}
    for i in range(c.n_layers):
        for n in L.LAYER:
            if n.startswith("rms"):
                a = np.ones(shapes[n])
            else:
                std = 0.02 / math.sqrt(2 * c.n_layers) if n in ("wo", "w2") else 0.02
                a = std * rng.standard_normal(shapes[n])
            p[f"l{i}_{n}"] = a.astype(np.float32)
    p["rms_final"] = np.ones(c.dim, np.float32)
    return p


def _interleave(w: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama2c._deinterleave: rotate-half rows back to run.c's interleaved pairs."""
    idx = _deinterleave(np.arange(w.shape[0]), heads)
    out = np.empty_like(w)
    out[idx] = w
    return out


def to_model(config, params: dict) -> llama2c.Model:
    """A llama2c.Model (run.c tensors) from training parameters."""
    c = config
    stack = {n: np.stack([np.asarray(params[f"l{i}_{n}"], np.float32) for i in range(c.n_layers)])
             for n in L.LAYER}
    stack["wq"] = np.stack([_interleave(w, c.n_heads) for w in stack["wq"]])
    stack["wk"] = np.stack([_interleave(w, c.n_heads) for w in stack["wk"]])
    tensors = {"embed": np.asarray(params["embed"], np.float32),
               "rms_final": np.asarray(params["rms_final"], np.float32), **stack}
    tensors["freq_cis_real"], tensors["freq_cis_imag"] = llama2c._freq_cis(c)
    return llama2c.Model(c, tensors)


def from_model(model: llama2c.Model) -> dict[str, np.ndarray]:
    c, t = model.config, model.tensors
    if not c.shared_classifier:
        raise UsageError("training supports the shared classifier of the Stories models")
    p = {"embed": t["embed"].copy(), "rms_final": t["rms_final"].copy()}
    for i in range(c.n_layers):
        for n in L.LAYER:
            w = t[n][i]
            p[f"l{i}_{n}"] = (_deinterleave(w, c.n_heads) if n in ("wq", "wk") else w).astype(np.float32)
    return p


class StoriesTrainer:
    def __init__(self, config, pipeline: str = "dynamic", target="m4", *, steps: int = 300, lr: float = 3e-3,
                 warmup: int = 20, weight_decay: float = 0.01, clip_norm: float | None = 1.0,
                 loss_scale="dynamic", numerics: str = "profile", checkpoint_dir=None,
                 checkpoint_every: int = 50, seed: int = 0, params: dict | None = None, head: str = "cpu",
                 backend: str = "sim"):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise UsageError(f"steps must be a non-negative integer, got {steps!r}")
        self.config, self.steps, self.seed = config, steps, seed
        self.pipe = StoriesPipeline(config, pipeline, target, numerics, backend=backend, head=head)
        self.opt = AdamW(params if params is not None else init_params(config, seed),
                         lr=cosine(lr, max(steps, 1), warmup_steps=min(warmup, max(steps - 1, 0)), min_lr=lr / 10),
                         weight_decay=weight_decay, clip_norm=clip_norm, master_weights=True)
        self.scaler = LossScaler(loss_scale)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_every = checkpoint_every
        self.step = 0
        self.history: list[dict] = []

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.opt.params

    def train_step(self, windows) -> dict:
        tokens, targets = windows(self.step)
        scale = self.scaler.scale
        t0 = time.perf_counter()
        c0, d0 = self.pipe.compiles, self.pipe.dispatches
        loss, grads = self.pipe.loss_and_grads(self.opt.params, tokens, targets, scale)
        if not math.isfinite(loss):
            raise TrainingError(f"step {self.step + 1}: the loss is {loss}; training stopped")
        applied = self.scaler.update(self.scaler.finite(grads.values()))
        if applied:
            self.opt.step(grads, grad_scale=scale)
        self.step += 1
        row = {"step": self.step, "loss": loss, "lr": self.opt.lr_at(self.opt.t), "loss_scale": scale,
               "skipped": not applied, "step_ms": (time.perf_counter() - t0) * 1e3,
               "compiles": self.pipe.compiles - c0, "kernels": self.pipe.dispatches - d0,
               "worker_recycles": self.pipe.worker_recycles}
        self.history.append(row)
        return row

    def fit(self, windows, on_step=None) -> list[dict]:
        rows = []
        while self.step < self.steps:
            rows.append(self.train_step(windows))
            if on_step is not None:
                on_step(rows[-1])
            if self.checkpoint_dir and (self.step % self.checkpoint_every == 0 or self.step == self.steps):
                self.save()
        return rows

    def model(self) -> llama2c.Model:
        return to_model(self.config, self.opt.params)

    # --- checkpoints --------------------------------------------------------------------------

    def _meta(self) -> dict:
        c = self.config
        return {"config": [c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len],
                "pipeline": self.pipe.mode, "seed": self.seed}

    def save(self) -> Path:
        tensors, opt_meta = self.opt.state_dict()
        meta = {"kind": "stories", "step": self.step, "optimizer": opt_meta, "loss_scale": self.scaler.state_dict(),
                "data": {"kind": "count", "position": self.step}, **self._meta()}
        return ckpt.write(self.checkpoint_dir / ckpt.FILE_NAME, tensors, meta)

    def resume(self) -> int:
        """Load the checkpoint in checkpoint_dir (checked before anything changes); its step."""
        if self.checkpoint_dir is None:
            raise UsageError("resume needs a checkpoint directory")
        path = self.checkpoint_dir / ckpt.FILE_NAME
        tensors, meta = ckpt.read(path)
        want = self._meta()
        if meta.get("kind") != "stories" or meta.get("config") != want["config"]:
            raise CheckpointError(f"{path} holds another model (config {meta.get('config')}, this run "
                                  f"{want['config']})")
        step = meta.get("step")
        if not isinstance(step, int) or step < 0:
            raise CheckpointError(f"{path}: step missing or invalid")
        self.opt.check_state(tensors, meta.get("optimizer", {}))
        LossScaler("dynamic" if self.scaler.dynamic else self.scaler.scale).load_state(meta.get("loss_scale") or {})
        self.opt.load_state(tensors, meta["optimizer"])
        self.scaler.load_state(meta["loss_scale"])
        self.step = step
        return step

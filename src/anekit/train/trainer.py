"""The training loop: forward+backward program, loss scaling, update program, checkpoints.

    trainer = ak.train.Trainer(loss, params, opt, target="m1", backend="sim",
                               loss_scale="dynamic", checkpoint_dir="ckpt")
    result = trainer.fit(batches, steps=300)     # `steps` counts from step 0, also after resume

One program computes the loss and every gradient of (loss * loss_scale) — the scale is a
graph input, so dynamic scaling never recompiles — and the optimizer's update program applies
them (guide ch. 15: forward, backward and update are ordinary inference graphs). Both compile
once. A gradient with inf/NaN skips the step (dynamic scaling halves the scale); a non-finite
loss stops with TrainingError naming the step, leaving the last checkpoint as it was. Ctrl-C
(SIGINT) finishes the current step, writes a checkpoint and returns with `interrupted=True`.
"""
from __future__ import annotations

import hashlib
import json
import math
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, TrainingError, UsageError
from ..preflight.train_risk import LOSS_SCALE_INPUT   # the backward seed's input name, shared with the rule
from . import checkpoint as ckpt
from .loss_scale import LossScaler
from .optim import Optimizer
from .. import ir
from .autodiff import grad
from .lowering import lower_runtime_weights
from .. import runtime
from .plots import plot_loss

GRAD_PREFIX = "grad_"
METRICS_FILE = "metrics.jsonl"


@dataclass
class FitResult:
    steps: int                      # the trainer's step count at the end
    final_loss: float | None
    step_ms: float | None           # median wall time of the steps run in this call
    overflow_steps: int
    loss_scale: float
    interrupted: bool = False
    history: list = field(default_factory=list)   # one metrics dict per step run in this call


def training_program(loss, params, seed_name: str = LOSS_SCALE_INPUT, lower: bool = True, target=None):
    """{loss, grad_<param>...} of (loss * seed) as one Program; the seed is an input. With
    `lower`, convs and linears whose weight is a parameter are rewritten into forms the engine
    compiles (anekit.train.lowering; `ak.check` names the form chosen), and runtime matmuls
    are padded where `target` needs it (M1)."""
    seed = ir.input(seed_name, loss.shape, loss.dtype)
    grads = grad(loss, params, seed=seed)
    outs = {"loss": loss}
    outs.update({f"{GRAD_PREFIX}{p.name}": g for p, g in zip(params, grads)})
    return ir.program(lower_runtime_weights(outs, target) if lower else outs, name="train_step")


def fingerprint(prog) -> str:
    """A digest of the program's structure (inputs, op types, shapes): a checkpoint of another
    model does not load."""
    h = hashlib.sha256()
    fn = prog.main
    for t in fn.inputs:
        h.update(f"in {t.name} {t.dtype} {t.shape}\n".encode())
    for op in fn.ops:
        h.update(f"{op.type} {[(t.dtype, t.shape) for t in op.outputs]}\n".encode())
    return h.hexdigest()[:16]


class Trainer:
    def __init__(self, loss, params, opt: Optimizer, target="m1", backend: str = "sim",
                 loss_scale="dynamic", checkpoint_dir=None, *, numerics: str = "profile",
                 checkpoint_every: int = 50, progress: bool = True, metrics_path=None, seed: int = 0,
                 lower: bool = True):
        if not isinstance(opt, Optimizer):
            raise UsageError(f"opt must be an ak.optim optimizer, got {type(opt).__name__}")
        self.params = list(params)
        names = [p.name for p in self.params]
        if sorted(names) != sorted(opt.params):
            raise UsageError(f"the optimizer holds {sorted(opt.params)} but the trainer was given {sorted(names)}")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise UsageError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
        self.opt, self.target, self.backend, self.numerics = opt, target, backend, numerics
        self.scaler = loss_scale if isinstance(loss_scale, LossScaler) else LossScaler(loss_scale)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every, self.progress = checkpoint_every, progress
        self.metrics_path = Path(metrics_path) if metrics_path else (
            self.checkpoint_dir / METRICS_FILE if self.checkpoint_dir else None)
        self.rng = np.random.default_rng(seed)     # for user augmentation; saved in checkpoints
        self.step = 0
        self.program = training_program(loss, self.params, lower=lower, target=runtime.resolve_target(target))
        self.fingerprint = fingerprint(self.program)
        param_names = set(names) | {LOSS_SCALE_INPUT}
        self.batch_inputs = [t.name for t in self.program.main.inputs if t.name not in param_names]
        opts = {"numerics": numerics} if backend == "sim" else {}
        self.exe = runtime.compile(self.program, backend=backend, target=target, **opts)
        opt.compile(target, backend, numerics)
        self.history: list[dict] = []
        self._data_state = None            # the data position at self.step
        self._pending_data = None          # restored from a checkpoint, applied by fit()
        self._stop = False
        self._saved_step: int | None = None   # the step of the last checkpoint written or loaded

    # --- one step -------------------------------------------------------------------------

    def _run_step(self, batch) -> dict:
        if not isinstance(batch, dict):
            raise UsageError(f"a batch must be a dict {{input name: array}} with {self.batch_inputs}, "
                             f"got {type(batch).__name__}")
        scale = self.scaler.scale
        t0 = time.perf_counter()
        # Parameters stay in the engine's stored form between steps (no fp16 cast per step); the
        # loss scale goes in that form too (a power of two in dynamic scaling: its fp16 cast).
        seed_t = self.program.main.input(LOSS_SCALE_INPUT)
        seed = np.full(seed_t.shape, scale, np.float32)
        if seed_t.dtype == "fp16":
            with np.errstate(over="ignore"):        # a scale past 65504 is inf in fp16, as in `run`
                seed = seed.astype(np.float16).astype(np.float32)
        out = self.exe.run_stored(batch, {**self.opt.stored_params, LOSS_SCALE_INPUT: seed})
        loss = float(np.asarray(out["loss"], np.float64).reshape(-1)[0])
        n = self.step + 1
        if not math.isfinite(loss):
            last = f"; the last checkpoint (step {self._saved_step}) is intact" if self._saved_step is not None else ""
            raise TrainingError(f"step {n}: the loss is {loss} (forward pass overflowed or diverged); "
                                f"training stopped{last}")
        grads = {p.name: out[f"{GRAD_PREFIX}{p.name}"] for p in self.params}
        finite = self.scaler.finite(grads.values())
        applied = self.scaler.update(finite)
        if applied:
            self.opt.step(grads, grad_scale=scale, stored=True)
        ms = (time.perf_counter() - t0) * 1e3
        self.step = n
        row = {"step": n, "loss": loss, "step_ms": round(ms, 3), "loss_scale": scale,
               "lr": self.opt.lr_at(max(self.opt.t, 1)), "overflow": not finite,
               "overflow_steps": self.scaler.overflow_steps}
        if applied and self.opt.last_grad_norm is not None:
            row["grad_norm"] = self.opt.last_grad_norm
        return row

    # --- the loop -------------------------------------------------------------------------

    def fit(self, batches, steps: int, callback=None) -> FitResult:
        """Train until the step count reaches `steps`; `callback(trainer, row)` runs after each
        step (e.g. an evaluation every N steps)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise UsageError(f"steps must be an integer >= 0, got {steps!r}")
        it = iter(batches)
        self._restore_data(batches, it)
        self._stop = False
        run: list[dict] = []
        interrupted = False
        bar = self._bar(steps)
        prev = self._install_sigint()
        try:
            while self.step < steps:
                self._data_state = self._data_position(batches)
                try:
                    batch = next(it)
                except StopIteration:
                    break
                except KeyboardInterrupt:
                    interrupted = True
                    break
                try:
                    row = self._run_step(batch)
                except KeyboardInterrupt:          # mid-step: nothing of this step was kept
                    interrupted = True
                    break
                run.append(row)
                self.history.append(row)
                if callback is not None:
                    callback(self, row)
                self._log(row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", ms=f"{row['step_ms']:.0f}",
                                    overflow=row["overflow_steps"], refresh=False)
                if self._stop:
                    interrupted = True
                    self._data_state = self._data_position(batches)
                    break
                if self.step % self.checkpoint_every == 0 or self.step == steps:
                    self._data_state = self._data_position(batches)
                    self.save()
        finally:
            self._restore_sigint(prev)
            if bar is not None:
                bar.close()
        if interrupted:
            self.save()
        ms = [r["step_ms"] for r in run]
        return FitResult(self.step, run[-1]["loss"] if run else None, statistics.median(ms) if ms else None,
                         self.scaler.overflow_steps, self.scaler.scale, interrupted, run)

    def _data_position(self, batches) -> dict:
        if hasattr(batches, "state") and callable(batches.state):
            return {"kind": "stream", **batches.state()}
        return {"kind": "count", "position": self.step}

    def _restore_data(self, batches, it) -> None:
        state, self._pending_data = self._pending_data, None
        if state is None:
            return
        if state.get("kind") == "stream":
            if not hasattr(batches, "restore"):
                raise CheckpointError("the checkpoint saved a batch-stream position; pass the same kind of "
                                      "stream (e.g. ak.train.data.Batches) to fit()")
            batches.restore({k: v for k, v in state.items() if k != "kind"})
        else:
            for _ in range(int(state.get("position", 0))):   # a plain iterable: skip what was used
                next(it)

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(_signum, _frame):
            if self._stop:                  # a second Ctrl-C: stop now (the step in flight is dropped)
                raise KeyboardInterrupt
            self._stop = True
        return signal.signal(signal.SIGINT, handler)

    @staticmethod
    def _restore_sigint(prev) -> None:
        if prev is not None:
            signal.signal(signal.SIGINT, prev)

    def _bar(self, steps):
        if not self.progress or steps <= self.step:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=steps, initial=self.step, unit="step", file=sys.stderr, dynamic_ncols=True)

    def _log(self, row: dict) -> None:
        if self.metrics_path is None:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")

    # --- checkpoints ----------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / ckpt.FILE_NAME if self.checkpoint_dir else None

    def save(self, path=None) -> Path | None:
        path = Path(path) if path else self.checkpoint_path
        if path is None:
            return None
        tensors, opt_meta = self.opt.state_dict()
        meta = {"step": self.step, "fingerprint": self.fingerprint,
                "params": {k: list(v.shape) for k, v in self.opt.params.items()},
                "optimizer": opt_meta, "loss_scale": self.scaler.state_dict(),
                "rng": self.rng.bit_generator.state, "data": self._data_state or {"kind": "count", "position": self.step},
                "target": getattr(self.exe.target, "name", str(self.target)), "backend": self.backend,
                "numerics": self.numerics}
        ckpt.write(path, tensors, meta)
        self._saved_step = self.step
        return path

    def resume(self, path=None) -> int:
        """Load a checkpoint (the trainer's own by default) and return its step. Everything is
        checked before anything changes: a bad checkpoint raises CheckpointError and loads nothing."""
        path = Path(path) if path else self.checkpoint_path
        if path is None:
            raise UsageError("resume: no checkpoint_dir was given")
        tensors, meta = ckpt.read(path)
        if meta.get("fingerprint") != self.fingerprint:
            raise CheckpointError(f"{path} was written for another model (fingerprint {meta.get('fingerprint')!r}, "
                                  f"this model {self.fingerprint!r}); parameters: {meta.get('params')}")
        step = meta.get("step")
        if not isinstance(step, int) or step < 0 or not isinstance(meta.get("data"), dict):
            raise CheckpointError(f"{path}: step or data position missing or invalid")
        self.opt.check_state(tensors, meta.get("optimizer", {}))
        probe = LossScaler("dynamic" if self.scaler.dynamic else self.scaler.scale)
        probe.load_state(meta.get("loss_scale") or {})
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = meta["rng"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: RNG state is invalid ({e})") from None
        # All checked: apply.
        self.opt.load_state(tensors, meta["optimizer"])
        self.scaler.load_state(meta["loss_scale"])
        self.rng = rng
        self.step = self._saved_step = step
        self._pending_data = meta["data"]
        self._data_state = meta["data"]
        return step

    # --- reporting ------------------------------------------------------------------------

    def plot(self, path) -> Path:
        """The loss curve (and skipped steps) of this trainer's history as a PNG."""
        return plot_loss(self.history, path)

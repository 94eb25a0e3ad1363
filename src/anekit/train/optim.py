"""Optimizers whose update is itself an anekit program: SGD (momentum, Nesterov), Adam, AdamW.

    opt = ak.optim.AdamW({"w": w0}, lr=ak.optim.cosine(1e-3, 300, warmup_steps=20),
                         weight_decay=0.01, clip_norm=1.0)
    opt.step({"w": g})          # runs the update program; opt.params["w"] is the new weight

The update program (`opt.update_program()`) reads each parameter, its gradient and its state
(moments, momentum buffer) as graph inputs and returns their new values, so it checks,
estimates and simulates like any other program and could run on the engine beside the model
(guide ch. 15: "the optimizer update is a third graph"). Per-step numbers (learning rate, bias
corrections, loss scale) are scalar inputs the host sends, so the program compiles once.

Loss scaling: the state is kept in units of the first step's gradient scale S0 (first moment
S0 * g, second moment S0 * g**2), because unscaled fp16 second moments underflow (g = 1e-4
gives g * g below the fp16 subnormal floor) and S0**2 * g**2 overflows for g above 1 at S0=256. The learning rate absorbs the scale: Adam's ratio
m / sqrt(v) is scale-free (eps is scaled by S0), SGD's step uses lr / S0. A later step with a
different scale S (dynamic loss scaling) multiplies its gradients by S0 / S, a power of two.

`master_weights=True` keeps parameters and state in float32 and runs the update with fp32
numerics on the host simulator (the engine has no fp32 datapath, guide ch. 3); without it
everything is fp16 and the update runs with the target's engine numerics.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np

from ..errors import UsageError
from .schedules import Schedule, as_schedule, constant, cosine
from .. import ir
from ..ir.declared import F
from ..ir.fp16cast import from_fp16, to_fp16
from .. import runtime
from ..errors import CheckpointError

FP16_MIN_NORMAL = 2.0 ** -14

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Schedule", "constant", "cosine", "param_arrays"]


def param_arrays(params) -> dict[str, np.ndarray]:
    """{name: initial array} from `ak.param` tensors, (name, array) pairs or a mapping."""
    if isinstance(params, Mapping):
        items = list(params.items())
    else:
        items = []
        for p in params:
            if isinstance(p, tuple) and len(p) == 2:
                items.append(p)
            else:
                init = getattr(p, "init", None)
                if init is None:
                    raise UsageError(f"{p!r} is not a parameter: make it with ak.param(name, init), "
                                     "or pass {name: array}")
                items.append((p.name, init))
    out: dict[str, np.ndarray] = {}
    for name, value in items:
        if not isinstance(name, str) or not name.isidentifier():
            raise UsageError(f"parameter names must be identifiers, got {name!r}")
        if name in out:
            raise UsageError(f"parameter '{name}' given twice")
        a = np.asarray(value)
        if a.dtype.kind != "f" or a.ndim == 0:
            raise UsageError(f"parameter '{name}' must be a float array with at least one axis, "
                             f"got {a.dtype} {list(a.shape)}")
        out[name] = a
    if not out:
        raise UsageError("an optimizer needs at least one parameter")
    return out


def _number(name, v, lo=0.0, hi=math.inf, open_hi=False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < lo or v > hi or (open_hi and v == hi):
        raise UsageError(f"{name} must be a number in [{lo}, {hi}{')' if open_hi else ']'}, got {v!r}")
    return float(v)


def _shaped(a: np.ndarray, shape) -> np.ndarray:
    return a if a.shape == tuple(shape) else a.reshape(shape)


def _stored_scalar(value: float, dtype: str) -> np.ndarray:
    """A one-element input in the stored form of `dtype` (float32; on the fp16 grid for fp16)."""
    a = np.array([value], np.float32)
    if dtype != "fp16":
        return a
    with np.errstate(over="ignore"):               # past 65504: inf, as `run`'s cast gives
        return a.astype(np.float16).astype(np.float32)


class _ResidentArrays:
    """An Optimizer mapping kept in stored form (float32 on the fp16 grid) in `_stored_<attr>`;
    the declared-dtype arrays users and checkpoints see are made on first read and cached in
    `_<attr>` (None after an update). Assigning a mapping sets both."""

    def __init__(self, doc: str):
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.cache, self.stored = f"_{name}", f"_stored_{name}"

    def __get__(self, opt, owner=None):
        if opt is None:
            return self
        view = getattr(opt, self.cache, None)
        if view is None:
            view = {k: opt._declared(v) for k, v in getattr(opt, self.stored).items()}
            setattr(opt, self.cache, view)
        return view

    def __set__(self, opt, value) -> None:
        view = {k: np.asarray(v) for k, v in value.items()}
        setattr(opt, self.cache, view)
        setattr(opt, self.stored, {k: opt._stored(v) for k, v in view.items()})


class Optimizer:
    """Holds the parameters, the optimizer state and the compiled update program."""

    kind = ""
    slots: tuple[str, ...] = ()

    def __init__(self, params, lr=1e-3, *, weight_decay: float = 0.0, clip_norm: float | None = None,
                 master_weights: bool = False):
        self.schedule: Schedule = as_schedule(lr)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.clip_norm = None if clip_norm is None else _number("clip_norm", clip_norm, 1e-12)
        self.master_weights = bool(master_weights)
        self.dtype = "fp32" if self.master_weights else "fp16"
        self._np_dtype = np.float32 if self.master_weights else np.float16
        self.params = {k: np.array(v, dtype=self._np_dtype) for k, v in param_arrays(params).items()}
        self.state = {f"{s}_{k}": np.zeros_like(v) for k, v in self.params.items() for s in self.slots}
        self.t = 0                      # updates applied
        self.state_scale: float | None = None   # S0: the gradient scale the state is kept in
        self.last_grad_norm: float | None = None
        self._exe = None
        self.compile()

    # --- parameters and state, resident in stored form -----------------------------------
    # Between steps both live as float32 arrays on the fp16 grid (the engine's stored form,
    # Executable.run_stored): the update and training programs read and write them without
    # a cast per step; the fp16 arrays users and checkpoints see are made on first access.
    # Assign a new mapping to change them: with fp16 parameters, writing into the arrays
    # `params` hands out does not reach the float32 copy the programs read (`stored_params`).
    params = _ResidentArrays("{name: parameter} in the optimizer's dtype (float16, float32 with master weights)")
    state = _ResidentArrays("{<slot>_<name>: moment} in the optimizer's dtype")

    @property
    def stored_params(self) -> dict[str, np.ndarray]:
        """The parameters in stored form (float32), to feed `Executable.run_stored`; read-only use."""
        return self._stored_params

    def _stored(self, a: np.ndarray) -> np.ndarray:
        return from_fp16(a) if a.dtype == np.float16 else np.asarray(a, np.float32)

    def _declared(self, a: np.ndarray) -> np.ndarray:
        return to_fp16(a) if self._np_dtype is np.float16 else a

    # --- the update program ---------------------------------------------------------------

    def scalar_names(self) -> tuple[str, ...]:
        names = ["grad_mul"]
        if self.clip_norm is not None:
            names.append("inv_state_scale")
        return tuple(names) + self._scalar_names()

    def update_program(self):
        """The update as a Program: inputs p_<name>, g_<name>, <slot>_<name> and the per-step
        scalars; outputs new_p_<name>, new_<slot>_<name> (and grad_norm when clipping)."""
        S = {n: ir.input(n, (1,), self.dtype) for n in self.scalar_names()}
        P = {k: ir.input(f"p_{k}", v.shape, self.dtype) for k, v in self.params.items()}
        G = {k: ir.input(f"g_{k}", v.shape, self.dtype) * S["grad_mul"] for k, v in self.params.items()}
        st = {k: {s: ir.input(f"{s}_{k}", v.shape, self.dtype) for s in self.slots}
              for k, v in self.params.items()}
        outs = {}
        if self.clip_norm is not None:
            # Global norm in true (unscaled) units, as torch.nn.utils.clip_grad_norm_ computes it.
            total = None
            for g in G.values():
                sq = (g * S["inv_state_scale"]).square().sum()
                total = sq if total is None else total + sq
            norm = total.sqrt()
            coef = F.minimum(self.clip_norm / (norm + 1e-6), 1.0)
            G = {k: g * coef for k, g in G.items()}
            outs["grad_norm"] = norm
        for k in self.params:
            new_p, new_state = self._update(P[k], G[k], st[k], S)
            outs[f"new_p_{k}"] = new_p
            for s in self.slots:
                outs[f"new_{s}_{k}"] = new_state[s]
        return ir.program(outs, name="update")

    def _scalar_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _update(self, p, g, state, S):
        raise NotImplementedError

    def _scalars(self, lr: float, S0: float, t: int) -> dict[str, float]:
        raise NotImplementedError

    # --- running it -----------------------------------------------------------------------

    def compile(self, target="m1", backend: str = "sim", numerics: str = "profile") -> None:
        """Where the update runs: the trainer's backend and target. With master weights the
        update always runs on the host simulator in fp32 (the engine computes in fp16)."""
        self._where = ("sim", target, "exact") if self.master_weights else (backend, target, numerics)
        self._exe = None

    def _executable(self):
        if self._exe is None:
            backend, target, numerics = self._where
            opts = {"numerics": numerics} if backend == "sim" else {}
            self._exe = runtime.compile(self.update_program(), backend=backend, target=target, **opts)
        return self._exe

    def lr_at(self, step: int) -> float:
        return self.schedule(step)

    def step(self, grads: Mapping[str, np.ndarray], grad_scale: float = 1.0, *, stored: bool = False) -> None:
        """Apply one update from gradients of (loss * grad_scale). `stored`: the gradients are
        in stored form, as `Executable.run_stored` returned them (no rounding needed)."""
        missing = set(self._stored_params) - set(grads)
        if missing:
            raise UsageError(f"step: no gradient for {sorted(missing)}")
        grad_scale = _number("grad_scale", grad_scale, 1e-30)
        if self.state_scale is None:
            self.state_scale = grad_scale
        t = self.t + 1
        lr = self.lr_at(t)
        S0 = self.state_scale
        scalars = {"grad_mul": S0 / grad_scale, "inv_state_scale": 1.0 / S0, **self._scalars(lr, S0, t)}
        # The scalars go in stored form too (what `run` would make of the float32 value: its
        # fp16 cast, for fp16 programs), sparing two casts and a NaN check each per step.
        resident = {n: _stored_scalar(scalars[n], self.dtype) for n in self.scalar_names()}
        resident.update({f"p_{k}": v for k, v in self._stored_params.items()})
        resident.update(self._stored_state)
        for k, v in self._stored_params.items():
            g = grads[k]
            if not stored and not self.master_weights:
                g = to_fp16(g)          # a float32 gradient from outside: round it as `run` would
            resident[f"g_{k}"] = g
        out = self._executable().run_stored({}, resident)
        # The arrays themselves where the shapes agree: the next run takes them back without the
        # NaN rule's pass (run_stored knows its own outputs, not views of them).
        params = {k: _shaped(out[f"new_p_{k}"], v.shape) for k, v in self._stored_params.items()}
        state = {n: _shaped(out[f"new_{n}"], v.shape) for n, v in self._stored_state.items()}
        if "grad_norm" in out:
            self.last_grad_norm = float(np.asarray(out["grad_norm"]).reshape(-1)[0])
        # All at once: an interrupt sees the old step or the new one.
        self._stored_params, self._stored_state, self._params, self._state, self.t = params, state, None, None, t

    # --- checkpoints ----------------------------------------------------------------------

    def config(self) -> dict:
        return {"kind": self.kind, "schedule": self.schedule.to_dict(), "weight_decay": self.weight_decay,
                "clip_norm": self.clip_norm, "master_weights": self.master_weights, **self._config()}

    def _config(self) -> dict:
        return {}

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """(tensors, metadata) for a checkpoint."""
        tensors = {f"param/{k}": v for k, v in self.params.items()}
        tensors.update({f"opt/{k}": v for k, v in self.state.items()})
        return tensors, {"config": self.config(), "t": self.t, "state_scale": self.state_scale}

    def check_state(self, tensors: Mapping[str, np.ndarray], meta: dict) -> None:
        """Raise CheckpointError when a saved state does not fit this optimizer (loads nothing)."""
        cfg = meta.get("config", {}) if isinstance(meta, dict) else {}
        if cfg.get("kind") != self.kind or cfg.get("master_weights") != self.master_weights:
            raise CheckpointError(f"checkpoint holds a {cfg.get('kind')!r} optimizer state "
                                  f"(master_weights={cfg.get('master_weights')}); this run uses "
                                  f"{self.kind!r} (master_weights={self.master_weights})")
        want = {f"param/{k}": v for k, v in self.params.items()}
        want.update({f"opt/{k}": v for k, v in self.state.items()})
        extra = sorted(set(tensors) - set(want))
        missing = sorted(set(want) - set(tensors))
        if missing or extra:
            raise CheckpointError(f"checkpoint is for another model: missing {missing[:4]}, "
                                  f"unexpected {extra[:4]}")
        for k, v in want.items():
            a = tensors[k]
            if a.shape != v.shape or a.dtype != v.dtype:
                raise CheckpointError(f"checkpoint tensor '{k}' is {a.dtype} {list(a.shape)}; "
                                      f"this model has {v.dtype} {list(v.shape)}")
        t, s = meta.get("t"), meta.get("state_scale")
        if not isinstance(t, int) or t < 0 or not (s is None or (isinstance(s, (int, float)) and s > 0)):
            raise CheckpointError(f"checkpoint optimizer metadata is invalid: t={t!r}, state_scale={s!r}")

    def load_state(self, tensors: Mapping[str, np.ndarray], meta: dict) -> None:
        self.check_state(tensors, meta)
        self.params = {k: np.array(tensors[f"param/{k}"]) for k in self.params}
        self.state = {k: np.array(tensors[f"opt/{k}"]) for k in self.state}
        self.t, self.state_scale = meta["t"], meta["state_scale"]


class SGD(Optimizer):
    """p -= lr * b, b = momentum * b + g (Nesterov: p -= lr * (g + momentum * b)), as torch.optim.SGD
    with dampening 0; weight decay adds weight_decay * p to g."""

    kind = "sgd"

    def __init__(self, params, lr=1e-2, momentum: float = 0.0, nesterov: bool = False, **kw):
        self.momentum = _number("momentum", momentum, 0.0, 1.0, open_hi=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise UsageError("Nesterov momentum needs momentum > 0")
        self.slots = ("buf",) if self.momentum else ()
        super().__init__(params, lr, **kw)

    def _config(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def _scalar_names(self):
        return ("lr_eff",) + (("wd_s",) if self.weight_decay else ())

    def _scalars(self, lr, S0, t):
        return {"lr_eff": lr / S0, "wd_s": self.weight_decay * S0}

    def _update(self, p, g, state, S):
        if self.weight_decay:
            g = g + p * S["wd_s"]
        new = {}
        if self.momentum:
            b = state["buf"] * self.momentum + g      # torch starts from b = g; b0 = 0 gives the same
            new["buf"] = b
            g = g + b * self.momentum if self.nesterov else b
        return p - g * S["lr_eff"], new


class Adam(Optimizer):
    """Adam (torch.optim.Adam: weight decay as L2 added to the gradient)."""

    kind = "adam"
    slots = ("m", "v")
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, **kw):
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise UsageError(f"betas must be two numbers, got {betas!r}") from None
        self.betas = (_number("beta1", b1, 0.0, 1.0, open_hi=True), _number("beta2", b2, 0.0, 1.0, open_hi=True))
        self.eps = _number("eps", eps)
        super().__init__(params, lr, **kw)

    def _config(self):
        return {"betas": list(self.betas), "eps": self.eps}

    def _scalar_names(self):
        extra = ("decay",) if self.decoupled and self.weight_decay else ("wd_s",) if self.weight_decay else ()
        return ("step_size", "eps_t", "v_gain") + extra

    def _scalars(self, lr, S0, t):
        b1, b2 = self.betas
        bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        # lr / bc1 * m / (sqrt(v / bc2) + eps), rewritten so the program needs no per-step
        # constants: the host folds bias corrections and the gradient scale into two scalars.
        # v is kept in units of S0 (not S0**2) so that S0 * g stays clear of the fp16 ceiling
        # when squared: v_gain**2 = (1 - beta2) / S0, and sqrt(S0) moves into the two scalars.
        eps_t = self.eps * math.sqrt(S0 * bc2)
        if self.dtype == "fp16":
            # 1e-8 is zero in fp16, and a zero gradient would then give 0 / 0 (inf on the engine,
            # guide ch. 3): the floor is the smallest normal fp16, in the state's units.
            eps_t = max(eps_t, FP16_MIN_NORMAL)
        return {"step_size": lr * math.sqrt(bc2) / bc1 / math.sqrt(S0), "eps_t": eps_t, "v_gain": math.sqrt((1.0 - b2) / S0),
                "decay": 1.0 - lr * self.weight_decay, "wd_s": self.weight_decay * S0}

    def _update(self, p, g, state, S):
        b1, b2 = self.betas
        if self.weight_decay and self.decoupled:
            p = p * S["decay"]
        elif self.weight_decay:
            g = g + p * S["wd_s"]
        m = state["m"] * b1 + g * (1.0 - b1)
        v = state["v"] * b2 + (g * S["v_gain"]).square()
        return p - m / (v.sqrt() + S["eps_t"]) * S["step_size"], {"m": m, "v": v}


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW): p *= 1 - lr * weight_decay first."""

    kind = "adamw"
    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01, **kw):
        super().__init__(params, lr, betas, eps, weight_decay=weight_decay, **kw)
        if self.dtype == "fp16" and 0 < self.schedule.lr * self.weight_decay < 2.0 ** -12:
            # p * (1 - lr * wd) rounds back to p in fp16 when lr * wd is below half an ulp of 1.
            warnings.warn(f"AdamW: lr * weight_decay = {self.schedule.lr * self.weight_decay:.3g} is below "
                          "fp16 resolution, so the decoupled decay does nothing on fp16 weights; "
                          "use master_weights=True or a larger weight_decay", stacklevel=2)

"""Loss and gradients of a llama2.c model, one training step, through the six layer kernels.

    pipe = StoriesPipeline(config, "dynamic", target="m4")
    loss, grads = pipe.loss_and_grads(params, tokens, targets, scale=256.0)

In order (nanoGPT's shape; docs/training.md for what the seed projects put where):

    x    = embed[tokens]                         CPU  (a gather)
    for each layer:  x1, q, k, v = attn_fwd(x);  x = ffn_fwd(x1)          engine
    h    = rmsnorm(x) * rms_final;  logits = wcls h                        CPU
    loss = cross_entropy(logits, targets)                                  CPU
    d    = scale * d loss / d x   (classifier and final norm backward)     CPU
    for each layer, last first:                                            engine
        dx1, dW_ffn = ffn_bwd(x1, d);  dWo, dv, dp = sdpa_bwd1(q, k, v, dx1)
        dq, dk = sdpa_bwd2(q, k, dp);  d, dW_qkv = qkv_bwd(x, dq, dk, dv, dx1)
    d embed += scatter-add of d over tokens                                 CPU

Weight gradients and RMSNorm backward of the layers run inside the kernels (the seeds ran
them on the CPU with sgemm); residual adds are in the kernels too. The classifier stays on the
CPU: at vocab 32000 its packed input would be 32000+ wide, beyond the engine's 16384 per axis.

`static` bakes each layer's weights into its five weight-bearing kernels, so every update means
5 x n_layers compiles; a compile budget (the ANE's ~119 compiles per process, public direct-route reports; docs/training.md) is
charged and a worker recycle counted each time it runs out (the seeds re-exec with --resume;
on the simulator the count is what we report). `dynamic` compiles the six kernels once and
feeds every layer's weights packed beside the activations.
"""
from __future__ import annotations

import numpy as np

from ...errors import UsageError
from . import layer as L
from ...cost import estimate
from ...errors import ANECompileError
from ...preflight import check
from ... import runtime

PIPELINES = ("static", "dynamic")
HEADS = ("cpu", "engine")      # where the final norm, classifier and cross-entropy run
COMPILE_BUDGET = 119          # compiles per ANE process before the runtime refuses (public direct-route reports)


class StoriesPipeline:
    def __init__(self, config, pipeline: str = "dynamic", target="m4", numerics: str = "profile",
                 backend: str = "sim", compile_budget: int = COMPILE_BUDGET, head: str = "cpu"):
        if pipeline not in PIPELINES:
            raise UsageError(f"pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
        if head not in HEADS:
            raise UsageError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if config.n_kv_heads != config.n_heads:
            raise UsageError("training supports n_kv_heads == n_heads (as the Stories models)")
        self.config, self.mode, self.target, self.numerics, self.backend = config, pipeline, target, numerics, backend
        self.head = head
        self.shapes = L.Shapes(config.dim, config.hidden_dim, config.n_heads, config.seq_len,
                               "fp32" if numerics == "exact" else "fp16", config.vocab_size)
        self.compile_budget = compile_budget
        self.compiles = 0               # kernels compiled so far
        self.worker_recycles = 0        # times the compile budget ran out (a fresh worker)
        self._worker_compiles = 0
        self.dispatches = 0             # kernel runs so far
        self._exes: dict = {}
        self.checked: dict = {}         # kernel name -> ak.check report for the target (first build)

    # --- kernels ----------------------------------------------------------------------------

    def kernel(self, name: str, layer: int, packed_weights: dict):
        """The compiled kernel (and its Inputs) for `name`; static kernels of a layer are rebuilt
        with that layer's current weights once per step."""
        weight_names = L.HEAD_WEIGHTS if name == "head" else L.WEIGHTS[name]
        key = name if (self.mode == "dynamic" or not weight_names) else (name, layer)
        if key not in self._exes:
            values = {n: packed_weights[n] for n in weight_names} if self.mode == "static" else None
            if name == "head":
                prog, inputs = L.build_head(self.shapes, self.config.vocab_size, self.mode, values, self.target)
            else:
                prog, inputs = L.build(name, self.shapes, self.mode, values, self.target)
            if name not in self.checked:
                self._check(name, prog)
            self._exes[key] = (self._compile(prog), inputs)
        return self._exes[key]

    def programs(self, params=None):
        """{kernel name: Program} of one layer (layer 0's weights for static) and the head when
        it runs on the engine, for check/estimate."""
        out = {}
        for name in L.KERNELS:
            values = None
            if self.mode == "static" and L.WEIGHTS[name]:
                values = self._packed(params, 0) if params is not None else {
                    n: np.zeros((self.shapes.dim, self.shapes.width(n)), np.float32) for n in L.WEIGHTS[name]}
            out[name] = L.build(name, self.shapes, self.mode, values, self.target)[0]
        if self.head == "engine":
            values = {n: L.packed(n, params[n]) if params is not None else
                      np.zeros((self.shapes.dim, self.shapes.width(n)), np.float32) for n in L.HEAD_WEIGHTS}
            out["head"] = L.build_head(self.shapes, self.config.vocab_size, self.mode, values, self.target)[0]
        return out

    def _check(self, name: str, prog) -> None:
        """ak.check each kernel once for the target: a kernel the engine would reject stops
        training before it starts (the simulator would run it regardless)."""
        report = check(prog, self.target)
        if not report.ok:
            bad = next(f for f in report.findings if f.verdict in ("over_limit", "unsupported"))
            raise ANECompileError(f"kernel {name} would not run on the {report.target} engine: {bad.op_type} "
                                  f"'{bad.op}': {bad.reason}")
        self.checked[name] = report

    def _compile(self, prog):
        if self._worker_compiles >= self.compile_budget:
            self.worker_recycles += 1
            self._worker_compiles = 0
        self.compiles += 1
        self._worker_compiles += 1
        opts = {"numerics": self.numerics} if self.backend == "sim" else {}
        return runtime.compile(prog, backend=self.backend, target=self.target, **opts)

    def _packed(self, params, i: int) -> dict:
        return {n: L.packed(n, params[f"l{i}_{n}"]) for n in L.LAYER}

    def _run(self, name: str, layer: int, weights: dict, acts: dict, extra: dict | None = None) -> dict:
        exe, inputs = self.kernel(name, layer, weights)
        self.dispatches += 1
        if self.mode == "dynamic" and inputs.layout:
            cols = {n: np.asarray(a, np.float32).reshape(self.shapes.dim, -1) for n, a in acts.items()}
            cols.update(weights)
            out = exe.run_stored({"packed": L.pack(inputs.layout, cols), **(extra or {})})
        else:
            out = exe.run_stored({**acts, **(extra or {})})
        # run_stored: fp16 outputs come back as float32 without a float16 array in between
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    def new_weights(self) -> None:
        """Forget weight-baked kernels (static): the next step compiles them again."""
        if self.mode == "static":
            self._exes = {k: v for k, v in self._exes.items() if isinstance(k, str)}

    # --- one step ---------------------------------------------------------------------------

    def loss_and_grads(self, params: dict, tokens, targets, scale: float = 1.0):
        """Mean next-token cross-entropy over the sequence and the gradients of (loss * scale),
        {name: float32 array shaped like params[name]}. `params` holds float arrays in run.c's
        layout with q / k rows in rotate-half order (see StoriesTrainer)."""
        c, s = self.config, self.shapes
        tokens, targets = np.asarray(tokens), np.asarray(targets)
        if tokens.shape != (c.seq_len,) or targets.shape != (c.seq_len,):
            raise UsageError(f"tokens and targets must each hold seq_len={c.seq_len} ids")
        self.new_weights()
        P = {k: np.asarray(v, np.float32) for k, v in params.items()}
        W = [self._packed(P, i) for i in range(c.n_layers)]
        embed = P["embed"]
        x = embed[tokens].T.reshape(1, c.dim, 1, c.seq_len)                    # CPU: gather
        saved = []
        for i in range(c.n_layers):
            a = self._run("attn_fwd", i, W[i], {"x": x})
            f = self._run("ffn_fwd", i, W[i], {"x1": a["x1"]})
            saved.append((x, a))
            x = f["x2"]
        if self.head == "engine":
            loss, grads, d = self._head_on_engine(P, x, targets, scale)
        else:
            loss, grads, d = self._head_on_cpu(P, x, targets, scale)
        for i in reversed(range(c.n_layers)):
            x, a = saved[i]
            fb = self._run("ffn_bwd", i, W[i], {"x1": a["x1"], "dx2": d})
            s1 = self._run("sdpa_bwd1", i, W[i], {"q": a["q"], "k": a["k"], "v": a["v"], "dx1": fb["dx1"]})
            s2 = self._run("sdpa_bwd2", i, W[i], {"q": a["q"].reshape(1, s.heads, s.hd, s.seq),
                                                  "k": a["k"].reshape(1, s.heads, s.hd, s.seq), "dp": s1["dp"]})
            qb = self._run("qkv_bwd", i, W[i], {"x": x, "dq": s2["dq"], "dk": s2["dk"], "dv": s1["dv"],
                                                "dx1": fb["dx1"]})
            for n in L.LAYER:
                src = fb if n in L.FFN else s1 if n in L.ATTN_OUT else qb
                grads[f"l{i}_{n}"] = L.unpacked(n, src[f"d_{n}"], P[f"l{i}_{n}"].shape)
            d = qb["dx"]
        if not grads["embed"].flags.writeable:       # the engine head's output (run_stored's are read-only)
            grads["embed"] = grads["embed"].copy()
        np.add.at(grads["embed"], tokens, d.reshape(c.dim, c.seq_len).T)        # CPU: scatter-add
        return loss, {k: np.asarray(v, np.float32) for k, v in grads.items()}

    def _head_on_cpu(self, P, x, targets, scale):
        """Final RMSNorm, shared classifier, cross-entropy and their backward in float32 numpy
        (as PyTorch would): (loss, {embed, rms_final} gradients, d of the last layer)."""
        c, embed = self.config, P["embed"]
        h = x.reshape(c.dim, c.seq_len)
        g = P["rms_final"][:, None]
        inv = 1.0 / np.sqrt((h * h).mean(axis=0, keepdims=True) + L.EPS)
        hn = h * inv * g
        logits = embed @ hn                                                     # [vocab, S]
        logits -= logits.max(axis=0, keepdims=True)
        p = np.exp(logits)
        total = p.sum(axis=0, keepdims=True)
        cols = np.arange(c.seq_len)
        loss = float(np.mean(np.log(total[0].astype(np.float64)) - logits[targets, cols]))
        dlogits = p / total
        dlogits[targets, cols] -= 1.0
        dlogits *= np.float32(scale / c.seq_len)
        grads = {"embed": dlogits @ hn.T}                                       # classifier part
        dhn = embed.T @ dlogits
        grads["rms_final"] = (dhn * h * inv).sum(axis=1)
        dg = dhn * g
        dh = inv * dg - h * inv ** 3 * (dg * h).mean(axis=0, keepdims=True)
        return loss, grads, dh.reshape(1, c.dim, 1, c.seq_len).astype(np.float32)

    def _head_on_engine(self, P, x, targets, scale):
        """The same as one engine kernel (layer.build_head)."""
        c = self.config
        weights = {n: L.packed(n, P[n]) for n in L.HEAD_WEIGHTS}
        onehot = np.zeros((1, c.vocab_size, 1, c.seq_len), np.float32)
        onehot[0, targets, 0, np.arange(c.seq_len)] = 1.0
        out = self._run("head", -1, weights, {"x": x}, {"onehot": onehot, "loss_scale": np.full((), scale, np.float32)})
        grads = {n: L.unpacked(n, out[f"d_{n}"], P[n].shape) for n in L.HEAD_WEIGHTS}
        return float(np.asarray(out["loss"]).reshape(-1)[0]), grads, out["d_x"]

    @property
    def kernels_per_step(self) -> int:
        return len(L.KERNELS) * self.config.n_layers + (self.head == "engine")

    @property
    def compiles_per_step(self) -> int:
        """Steady state: static recompiles its weight-bearing kernels (and the head) every step."""
        if self.mode != "static":
            return 0
        return (len(L.KERNELS) - 1) * self.config.n_layers + (self.head == "engine")


def memory_per_step(config, pipeline: str = "dynamic") -> dict:
    """Bytes a step holds, by kind (host arrays float32, engine buffers fp16)."""
    c = config
    d, hid, n, s, v = c.dim, c.hidden_dim, c.n_layers, c.seq_len, c.vocab_size
    layer_w = 4 * d * d + 3 * d * hid + 2 * d
    params = v * d + n * layer_w + d
    out = {"params fp32 (master)": 4 * params, "AdamW m, v fp32": 8 * params, "gradients fp32": 4 * params,
           "saved activations x, x1, q, k, v (host fp32)": 4 * 5 * d * s * n,
           "attention probs / their gradient, one layer (fp16)": 2 * 2 * c.n_heads * s * s,
           "logits and their gradient (host fp32)": 4 * 2 * v * s}
    if pipeline == "dynamic":
        out["largest packed input, ffn_bwd (fp16)"] = 2 * d * (2 * s + 3 * hid + 1)
    else:
        # weights baked into the five weight-bearing kernels of every layer (fp16 constants)
        baked = (4 * d * d + d) + (3 * d * hid + d) * 2 + d * d + (3 * d * d + d)
        out["weights baked into compiled kernels (fp16)"] = 2 * n * baked
    return out


def estimate_step_ms(config, pipeline: str = "dynamic", target="m4", head: str = "cpu") -> dict:
    """The cost model's time of the engine's part of one step: {kernel: ms per layer (the
    head: per step)} and "total". Host work and compile time are not in it."""
    progs = StoriesPipeline(config, pipeline, target, head=head).programs(None)
    ms = {k: estimate(p, target).total_us / 1e3 for k, p in progs.items()}
    return {**ms, "total": sum(v for k, v in ms.items() if k != "head") * config.n_layers + ms.get("head", 0.0)}

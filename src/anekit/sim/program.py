"""A while_loop as one compiled call: its counter test and its body planned into rows of the
program kernel (sim/_compiled_program.py), which runs every trip without returning to Python.

A converted recurrent layer (coremltools' GRU) is a loop of ~30 ops on [1, 16] tensors per
sequence step: op by op, each trip costs ~30 kernel dispatches, far more than the arithmetic.
`plan` builds the program once per loop (kernels/control.py caches it) when every op of the
body has a program form, declared with its kernel (`kernel(..., program=...)` in
sim/registry.py; elementwise arithmetic reuses its `tape=` form), in a chip profile whose
NaN rule leaves no NaN (as for the elementwise tape) or in exact numerics. Each row computes
what the op's kernel and the executor's storage step compute; the trip plumbing does what
Simulator.run_trip does (the inputs' ingest rules, the outputs' stored form). In exact
numerics what only numpy computes with the op-by-op route's bits (BLAS products, numpy's
float32 exp and tanh) runs as numpy calls between compiled segments, trip by trip. Every
tensor of the body gets a buffer of its own, kept with the plan (squeeze and other
reshape-only ops share their input's); the loop's variables live in `carry` buffers between
trips.

When a trip meets what a row does not model, when the program is already running (another
thread), or when the compiled kernels are off (ANEKIT_NO_JIT=1), the loop runs the ordinary
way (kernels/control.py): the same bits, or the kernel's error. tests/test_sim_program.py
holds both routes to the same bits on hostile data.
"""
from __future__ import annotations

import importlib
import math
import threading

import numpy as np

from . import _compiled_mac, compiled, mac
from .fp16 import F32

_COMPARES = ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal")   # COMPARE's op codes
_FLOAT = ("fp16", "fp32")
_EXACT_CODES = (compiled.ADD, compiled.SUB, compiled.MUL, compiled.DIV)   # (exact sqrt keeps -0: not the tape's)
_SCATTER_MODES = {"update": 0, "add": 1, "sub": 2, "mul": 3}     # SCATTER's p4 (float data for all but update)


def _build():
    if _compiled_mac.kernel() is None or not _compiled_mac.HARDWARE_FP16:
        return None                  # the LINEAR rows call the four-lane kernel
    prog = importlib.import_module("anekit.sim._compiled_program")
    prog.warm_up()
    return prog


program_kernel = compiled.LazyKernel("block program kernel", _build)


class _Unsupported(Exception):
    """An op or a shape the program does not model: the loop stays op by op."""


class LoopProgram:
    """The rows of one loop, its buffers, and how loop values enter and leave them."""

    def __init__(self, rows, fpar, buffers, carry, caps, calls, exact=False):
        self.rows, self.fpar = np.array(rows, np.int64).reshape(-1, 13), np.array(fpar, np.float64).reshape(-1, 5)
        self.buffers = buffers                       # kept alive: the rows hold their addresses
        self.addrs = np.array([b.ctypes.data for b in buffers], np.int64)
        self.carry, self.caps = carry, caps          # (buffer, dtype, shape) per loop variable / capture
        # Exact numerics: BLAS and numpy's loops may take another path on other strides.
        self.contiguous = exact
        self.lock = threading.Lock()                 # the buffers serve one run at a time
        # NUMPY rows (exact numerics: BLAS and numpy's float32 functions) run here, between
        # runs of compiled rows: segments (first row, end row, None) or (.., .., numpy calls).
        self.segments = []
        for r in range(len(self.rows)):
            call = calls.get(r)
            if self.segments and (call is None) == (self.segments[-1][2] is None):
                r0, _, group = self.segments[-1]
                self.segments[-1] = (r0, r + 1, None if call is None else group + (call,))
            else:
                self.segments.append((r, r + 1, None if call is None else (call,)))
        if not calls:
            self.segments = []

    def run(self, kern, loop_vars, captures, max_trips):
        """The loop's final values, or None (a value not in the form planned, a row bailed, or
        the program busy in another thread)."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            return self._run(kern, loop_vars, captures, max_trips)
        finally:
            self.lock.release()

    def _run(self, kern, loop_vars, captures, max_trips):
        for (buf, dtype, shape), v in zip(self.carry + self.caps, list(loop_vars) + list(captures)):
            if type(v) is not np.ndarray or v.dtype != dtype or v.shape != shape or \
                    (self.contiguous and not v.flags.c_contiguous):
                return None
            buf[...] = v
        if self.segments:
            done = self._trips(kern, max_trips)
        else:
            done = kern.run(self.rows, self.fpar, self.addrs, max_trips) == kern.DONE
        return tuple(buf.copy() for buf, _, _ in self.carry) if done else None

    def _trips(self, kern, max_trips) -> bool:
        rows, fpar, addrs, run_rows, go = self.rows, self.fpar, self.addrs, kern.run_rows, kern.GO
        for _ in range(max_trips):
            for r0, r1, calls in self.segments:
                if calls is not None:
                    for call in calls:
                        call()
                    continue
                status = run_rows(rows, fpar, addrs, r0, r1)
                if status != go:
                    return status == kern.DONE
        return False


def plan(sim, cond, counter, n_vars: int) -> LoopProgram | None:
    """The program of a loop whose cond block `cond` is `counter` (kernels/control.py's counter
    test: (comparison ufunc, operands)) and whose body runs in Simulator `sim`; None when some
    op or value has no program form."""
    same = [(t.dtype, tuple(t.shape)) for t in cond.inputs] == [(t.dtype, tuple(t.shape)) for t in sim.function.inputs]
    if not same:
        return None
    try:
        return _Planner(sim).loop(counter, n_vars)
    except (_Unsupported, KeyError, IndexError, TypeError, ValueError):
        return None     # (an argument of a form the planner does not expect: op by op, as before)


class _Planner:
    def __init__(self, sim):
        nx = sim.nx
        if (nx.fp16 and not nx.profile.indeterminate_to_zero) or sim.state_names:
            raise _Unsupported
        self.sim, self.nx, self.p = sim, nx, nx.profile
        self.exact = not nx.fp16
        self.calls: dict = {}                        # row -> its numpy call (NUMPY rows)
        self.deps: list = []                         # per row: (buffers read, buffers written)
        self.buffers: list[np.ndarray] = []
        self.buf: dict[int, int] = {}                # slot -> buffer index
        self.rows: list[list[int]] = []
        self.fpar: list[list[float]] = []

    # --- buffers ----------------------------------------------------------------------

    def new(self, shape, dtype) -> int:
        if not math.prod(shape):
            raise _Unsupported
        self.buffers.append(np.zeros(math.prod(shape), dtype))
        return len(self.buffers) - 1

    def _kind(self, t):
        if t.dtype in _FLOAT:
            return F32
        if t.dtype == "int32":
            return np.int32
        raise _Unsupported

    def ref(self, slot, t) -> int:
        """The buffer of a tensor read by a row (a constant gets one holding its value)."""
        if slot in self.buf:
            return self.buf[slot]
        value = self.sim._const.get(slot)
        if value is None or t is None or isinstance(t, tuple):
            raise _Unsupported
        dtype = self._kind(t)
        if type(value) is not np.ndarray or value.dtype != dtype or value.size != math.prod(t.shape) \
                or not value.flags.c_contiguous:
            raise _Unsupported
        i = self.buf[slot] = self.new(t.shape, dtype)
        self.buffers[i][: value.size] = value.reshape(-1)
        return i

    def out(self, step) -> int:
        (slot, t, _), = step.fin
        i = self.buf[slot] = self.new(t.shape, self._kind(t))
        return i

    def row(self, code, dst, a=-1, b=-1, c=-1, n=0, *p, f=(0.0,) * 5, reads=None, writes=None):
        """A row; in exact numerics p6 (the seventh parameter) flags it exact."""
        p = list(p) + [0] * (7 - len(p))
        linear = code == _kern().LINEAR
        if self.exact and not linear:
            p[6] = 1
        self.rows.append([code, dst, a, b, c, n, *p])
        self.fpar.append(list(f))
        self.deps.append((frozenset(reads if reads is not None else (i for i in (a, b, c) if i >= 0)),
                          frozenset(writes if writes is not None else [dst] + ([p[6]] if linear else []))))

    def numpy_row(self, call, reads, writes):
        self.calls[len(self.rows)] = call
        self.row(_kern().NUMPY, -1, reads=reads, writes=writes)

    def schedule(self, start: int) -> None:
        """Reorder rows start.. so that NUMPY rows bunch together (fewer switches between
        compiled segments and numpy calls per trip): a list schedule that keeps every
        read-after-write, write-after-read and write-after-write order of the planned one."""
        idx = list(range(start, len(self.rows)))
        before = {j: {i for i in idx if i < j and (self.deps[i][1] & (self.deps[j][0] | self.deps[j][1])
                                                   or self.deps[i][0] & self.deps[j][1])} for j in idx}
        order, done, numpy_kind = [], set(), False
        while len(order) < len(idx):
            ready = [j for j in idx if j not in done and before[j] <= done]
            pick = [j for j in ready if (j in self.calls) == numpy_kind] or ready
            j = pick[0]
            numpy_kind = j in self.calls
            order.append(j)
            done.add(j)
        perm = list(range(start)) + order
        self.rows = [self.rows[i] for i in perm]
        self.fpar = [self.fpar[i] for i in perm]
        self.deps = [self.deps[i] for i in perm]
        self.calls = {perm.index(i): c for i, c in self.calls.items()}

    def view(self, i, t):
        return self.buffers[i].reshape(t.shape)

    # --- the loop -----------------------------------------------------------------------

    def loop(self, counter, n_vars: int) -> LoopProgram:
        kern = importlib.import_module("anekit.sim._compiled_program")
        sim, fn = self.sim, self.sim.function
        carry = [self.new(t.shape, self._kind(t)) for t in fn.inputs[:n_vars]]
        caps = [self.new(t.shape, self._kind(t)) for t in fn.inputs[n_vars:]]
        compare, operands = counter
        names = [k for k in _COMPARES if getattr(np, k) is compare]
        if len(names) != 1:
            raise _Unsupported
        args = []
        for a in operands:
            if isinstance(a, int):           # a loop variable or a capture (the cond's inputs are the body's)
                if a >= len(fn.inputs) or fn.inputs[a].dtype != "int32":
                    raise _Unsupported
                args.append((carry + caps)[a])
            else:
                args.append(len(self.buffers))
                self.buffers.append(np.ascontiguousarray(a, np.int32).reshape(-1))
        if any(self.buffers[a].size != 1 for a in args):
            raise _Unsupported
        flag = self.new((1,), np.int32)
        self.row(kern.COMPARE, flag, args[0], args[1], -1, 1, 1, 1, _COMPARES.index(names[0]))
        self.row(kern.STOP_UNLESS, -1, flag)
        # The trip's inputs, as run_trip ingests them (_ingest_stored; ints are copied).
        for t, src in zip(fn.inputs, carry + caps):
            dst = self.buf[sim._slot[id(t)]] = self.new(t.shape, self._kind(t))
            if t.dtype == "int32" or self.exact:    # (exact: Numerics.ingest is the identity)
                code = kern.COPY
            elif t.dtype == "fp16":          # on the grid already: only the NaN rule is left
                code = kern.INGEST16 if self.p.nan_inputs_to_inf else kern.COPY
            else:                            # fp32: Numerics.ingest, a rounding with the NaN rule
                code = kern.INGEST32 if self.p.nan_inputs_to_inf else kern.OUT16
            self.row(code, dst, src, -1, -1, math.prod(t.shape))
        body = len(self.rows)
        for step in sim._steps:
            self.step(kern, step)
        if self.calls:
            self.schedule(body)
        # The outputs in stored form (Simulator._stored_values), into the loop variables.
        if len(sim._outputs) != n_vars:
            raise _Unsupported
        for (name, slot, dtype), dst, t in zip(sim._outputs, carry, fn.outputs):
            self.ref(slot, t)
            if self.buffers[dst].dtype != self.buffers[self.buf[slot]].dtype or dtype not in ("fp16", "fp32", "int32") \
                    or self.buffers[dst].size != self.buffers[self.buf[slot]].size:
                raise _Unsupported
            code = kern.OUT16 if dtype == "fp16" else kern.COPY
            self.row(code, dst, self.buf[slot], -1, -1, self.buffers[dst].size)
        spec = lambda i, t: (self.buffers[i].reshape(t.shape), np.dtype(self._kind(t)), tuple(t.shape))  # noqa: E731
        return LoopProgram(self.rows, self.fpar, self.buffers,
                           [spec(i, t) for i, t in zip(carry, fn.inputs[:n_vars])],
                           [spec(i, t) for i, t in zip(caps, fn.inputs[n_vars:])], self.calls, self.exact)

    # --- one op -------------------------------------------------------------------------

    def step(self, kern, step) -> None:
        if step.view is not None:                    # a reshape-only op shares its input's buffer
            x, _, dtype, slot, _ = step.view
            if x not in self.buf:
                self.ref(x, step.call.op.inputs.get("x"))
            if self.buffers[self.buf[x]].dtype != dtype:
                raise _Unsupported
            self.buf[slot] = self.buf[x]
            return
        if len(step.fin) != 1:
            raise _Unsupported
        prog = step.kernel.program
        form = prog(step.call, step.consts) if prog is not None else None
        if form is None and step.kernel.tape is not None and step.fin[0][2] == "float_round":
            form = ("elementwise",)
        if form is None:
            raise _Unsupported
        getattr(self, "_" + form[0])(kern, step, *form[1:])

    def _t(self, step, name):
        t, ref = step.call.op.inputs.get(name), step.tensors.get(name)
        if t is None or isinstance(t, tuple) or not isinstance(ref, int):
            raise _Unsupported
        return t, self.ref(ref, t)

    @staticmethod
    def _size(t, n):
        s = math.prod(t.shape)
        if s != n and s != 1:
            raise _Unsupported
        return s

    def _elementwise(self, kern, step):
        code, params = step.kernel.tape
        if code > compiled.SQRT:                     # the elementwise tape's own codes (max, inverse, ...)
            raise _Unsupported
        out = step.fin[0][1]
        n = math.prod(out.shape)
        (xt, x), (yt, y) = self._t(step, params[0]), self._t(step, params[1])
        if xt.dtype not in _FLOAT or yt.dtype not in _FLOAT or (self.exact and code not in _EXACT_CODES):
            raise _Unsupported
        self.row(code, self.out(step), x, y, -1, n, self._size(xt, n), self._size(yt, n),
                 int(self.p.unsigned_zero_reciprocal))

    def _int_binary(self, kern, step, code):
        self._ints(kern.INT_BINARY, step, code)

    def _compare(self, kern, step, code):
        self._ints(kern.COMPARE, step, code)

    def _ints(self, row_code, step, code):
        out = step.fin[0][1]
        n = math.prod(out.shape)
        (xt, x), (yt, y) = self._t(step, "x"), self._t(step, "y")
        if xt.dtype != "int32" or yt.dtype != "int32":
            raise _Unsupported
        slot = step.fin[0][0]
        self.buf[slot] = dst = self.new(out.shape, np.int32)        # bool results held as 0 / 1
        self.row(row_code, dst, x, y, -1, n, self._size(xt, n), self._size(yt, n), code)

    def _select(self, kern, step):
        out = step.fin[0][1]
        n = math.prod(out.shape)
        (ct, cnd), (at, a), (bt, b) = self._t(step, "cond"), self._t(step, "a"), self._t(step, "b")
        if ct.dtype not in ("bool", "int32") or at.dtype != "int32" or bt.dtype != "int32" or out.dtype != "int32":
            raise _Unsupported                       # (float selects keep NaN payloads: not planned)
        self.row(kern.SELECT, self.out(step), cnd, a, b, n, self._size(ct, n), self._size(at, n), self._size(bt, n))

    def _round(self, kern, step):
        (xt, x) = self._t(step, "x")
        out = step.fin[0][1]
        if xt.dtype not in _FLOAT or out.dtype not in _FLOAT or xt.shape != out.shape:
            raise _Unsupported
        self.row(kern.ROUND, self.out(step), x, -1, -1, math.prod(out.shape))

    def _copy(self, kern, step):
        (xt, x) = self._t(step, "x")
        out = step.fin[0][1]
        if self._kind(xt) != self._kind(out) or xt.shape != out.shape:
            raise _Unsupported
        self.row(kern.COPY, self.out(step), x, -1, -1, math.prod(out.shape))

    def _numpy(self, kern, step, fn):
        """An elementwise float32 function numpy evaluates (exact numerics: numpy's own exp and
        tanh loops), called on the buffer as the kernel calls it on its input."""
        (xt, x) = self._t(step, "x")
        out = step.fin[0][1]
        if not self.exact or xt.dtype not in _FLOAT or xt.shape != out.shape:
            raise _Unsupported
        d = self.out(step)
        src, dst = self.view(x, xt), self.view(d, out)
        if isinstance(fn, np.ufunc):
            self.numpy_row(lambda: fn(src, out=dst), {x}, {d})
        else:
            self.numpy_row(lambda: np.copyto(dst, fn(src)), {x}, {d})

    def _logistic(self, kern, step):
        """activations._sigmoid32, 1 / (1 + exp(-x)), in exact numerics: numpy's exp as a numpy
        row, the negation (a product with -1: the same bits, signed zeros included), the add
        and the division as float32 rows (a NaN bails there)."""
        (xt, x) = self._t(step, "x")
        out = step.fin[0][1]
        if not self.exact or xt.dtype not in _FLOAT or xt.shape != out.shape:
            raise _Unsupported
        n = math.prod(out.shape)
        one, minus = self.new((1,), F32), self.new((1,), F32)
        self.buffers[one][0], self.buffers[minus][0] = 1.0, -1.0
        neg, e = self.new(out.shape, F32), self.new(out.shape, F32)
        self.row(kern.MUL, neg, x, minus, -1, n, n, 1, 0)
        src, dst, exp = self.buffers[neg], self.buffers[e], np.exp
        self.numpy_row(lambda: exp(src, out=dst), {neg}, {e})
        self.row(kern.ADD, e, one, e, -1, n, 1, n, 0)
        self.row(kern.DIV, self.out(step), one, e, -1, n, 1, n, 0)

    def _table(self, kern, step, table):
        (xt, x) = self._t(step, "x")
        out = step.fin[0][1]
        if xt.dtype not in _FLOAT or xt.shape != out.shape or step.fin[0][2] != "float_round":
            raise _Unsupported
        self.buffers.append(table)
        tab = len(self.buffers) - 1
        self.row(kern.TABLE, self.out(step), x, tab, -1, math.prod(out.shape))

    def _gather(self, kern, step):
        (xt, x), (it, ix) = self._t(step, "x"), self._t(step, "indices")
        consts, out = step.consts, step.fin[0][1]
        if consts.get("batch_dims") != 0 or it.dtype != "int32" or self._kind(xt) != self._kind(out) \
                or step.fin[0][2] not in ("float_keep", "int32") or not xt.shape:
            raise _Unsupported
        ax = consts["axis"] % len(xt.shape)
        if tuple(out.shape) != tuple(xt.shape[:ax]) + tuple(it.shape) + tuple(xt.shape[ax + 1:]):
            raise _Unsupported
        outer, inner = math.prod(xt.shape[:ax]), math.prod(xt.shape[ax + 1:])
        dst = self.out(step)
        self.row(kern.GATHER, dst, x, ix, -1, math.prod(out.shape), outer, xt.shape[ax], inner, math.prod(it.shape))

    def _scatter(self, kern, step):
        (dt, d), (it, ix), (ut, u) = self._t(step, "data"), self._t(step, "indices"), self._t(step, "updates")
        consts, out = step.consts, step.fin[0][1]
        mode = _SCATTER_MODES.get(consts.get("mode"), -1)
        if mode < 0 or (mode and dt.dtype not in _FLOAT) or it.dtype != "int32" or math.prod(it.shape) != 1 or not dt.shape \
                or self._kind(dt) != self._kind(ut) or self._kind(dt) != self._kind(out) or dt.shape != out.shape:
            raise _Unsupported
        ax = consts["axis"] % len(dt.shape)
        if tuple(ut.shape) != tuple(dt.shape[:ax]) + tuple(it.shape) + tuple(dt.shape[ax + 1:]):
            raise _Unsupported
        is_float = dt.dtype in _FLOAT
        if is_float != (step.fin[0][2] == "float_round"):
            raise _Unsupported
        self.row(kern.SCATTER, self.out(step), d, ix, u, math.prod(out.shape), math.prod(dt.shape[:ax]),
                 dt.shape[ax], math.prod(dt.shape[ax + 1:]), int(is_float and not self.exact), mode)

    def _linear(self, kern, step):
        (xt, x), (wt_, _) = self._t(step, "x"), self._t(step, "weight")
        p, out = self.p, step.fin[0][1]
        bias = step.call.op.inputs.get("bias")
        if not xt.shape or "weight" not in step.call.const_params or step.fin[0][2] != "float_round":
            raise _Unsupported
        k, n = xt.shape[-1], wt_.shape[0]
        m = math.prod(xt.shape[:-1])
        if tuple(wt_.shape) != (n, k) or tuple(out.shape) != tuple(xt.shape[:-1]) + (n,) or not (m and n and k):
            raise _Unsupported
        if self.exact:
            return self._exact_linear(step, x, m, k, bias, out)
        # mac.matmul's route for this call: the lane model, through products4, not swapped
        scale = _compiled_mac.tile_scale(p)
        if not (mac.lane_route(k, n, p) and scale is not None and (n >= mac._VECTOR_MIN or n >= m)):
            raise _Unsupported
        weight = self.sim._const[step.tensors["weight"]]
        wo = mac.Operand(np.ascontiguousarray(weight.T), p, -2, const=True)
        if not wo.finite:
            raise _Unsupported
        vec = np.ascontiguousarray(wo.blocks(lambda a: mac._blocks(mac._stacked(a))), F32)
        self.buffers.append(vec.reshape(-1))
        vi = len(self.buffers) - 1
        bi = -1
        if bias is not None:
            bt, bi = self._t(step, "bias")
            if tuple(bt.shape) != (n,) or bt.dtype not in _FLOAT:
                raise _Unsupported
        scratch = self.new((m, vec.shape[1] * vec.shape[3]), F32)
        limit = p.mac_output_ceiling
        flags = int(p.mac_round_products) | (int(p.mac_flush_subnormals) << 1)
        self.row(kern.LINEAR, self.out(step), x, vi, bi, m * n, m, k, n, vec.shape[1], vec.shape[3], flags,
                 scratch, f=(wo.peak, math.inf if limit is None else limit, mac._ceil(limit),
                             _compiled_mac._as_float(mac._port_top(limit)), scale))

    def _exact_linear(self, step, x, m, k, bias, out):
        """The exact kernel's float32 BLAS product (mac.matmul: np.matmul of x as [M, K] and the
        weight's transpose as a C-contiguous array), then + bias: the same call on the same
        layouts, so the same bits (LoopProgram.run takes only C-contiguous loop values in exact
        numerics: every array of the op-by-op route is then C-contiguous too)."""
        weight = self.sim._const[step.tensors["weight"]]
        wt = mac.Operand(np.ascontiguousarray(weight.T), self.p, -2, const=True).array
        n = wt.shape[1]
        src, matmul = self.buffers[x].reshape(m, k), np.matmul
        if bias is None:
            y = self.out(step)
        else:
            y = self.new((m, n), F32)
        yb = self.buffers[y].reshape(m, n)
        self.numpy_row(lambda: matmul(src, wt, out=yb), {x}, {y})      # (into yb: the same BLAS call)
        if bias is None:
            return
        bt, bi = self._t(step, "bias")
        d = self.out(step)
        if m == 1:      # y + bias: a float32 add, a compiled row (a NaN bails there)
            self.row(_kern().ADD, d, y, bi, -1, n, n, n, 0)
            return
        yv, b, dst = self.buffers[y].reshape(out.shape), self.view(bi, bt), self.view(d, out)
        self.numpy_row(lambda: np.add(yv, b, out=dst), {y, bi}, {d})


def _kern():
    return importlib.import_module("anekit.sim._compiled_program")

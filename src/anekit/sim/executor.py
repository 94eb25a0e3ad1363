"""The Simulator: validates inputs, runs a function's ops in order with one kernel per op.

Construction resolves every op to its kernel (UnsupportedOpError names any op without one),
checks tensor sizes, folds const-only subgraphs once (weights, constexpr decompression),
gathers runs of elementwise ops into regions that run as one compiled call each (sim/
regions.py: the same bits as op by op), and plans when each intermediate can be freed.
`run` then only executes the ops that depend on the inputs.
"""
from __future__ import annotations

import math
import weakref
from typing import Mapping

import numpy as np

from ..errors import AnekitError, ShapeError, UnsupportedOpError
from ..ir.feeds import bind_inputs
from ..ir.fp16cast import to_fp16
from ..ir.graph import Function, Program, python_value
from ..ir.spec import Args
from . import compiled, regions, shared
from .fp16 import F32, has_nan, round_fp16
from .numerics import Numerics
from .profiles import NumericsProfile, profile_for
from .registry import Call
from .scratch import scratch_bytes

FLOAT_DTYPES = ("fp16", "fp32", "fp64", "bf16")
_OUT_NUMPY = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "bool": np.bool_}
_WRAPPED = (ValueError, IndexError, TypeError, ArithmeticError, MemoryError)
_F16_MAX_BITS = 0x477FE000
# Outputs run_stored handed out, by id: fresh arrays a rounding with the NaN rule computed
# (the engine never produces a NaN, guide ch. 3), made read-only, so they hold no NaN now
# either. Fed back as resident inputs (a trainer's parameters, moments and gradients), they
# skip the NaN rule's pass over every element (_ingest_stored): ~60 passes a training step.
_NAN_FREE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class _Step:
    """One op, bound at planning: `consts` holds every argument that is not a tensor (and the
    tensors left out), `single`/`multi` the env slots of the rest, `fin` how each output is
    finished. Execution then builds the keyword arguments with no per-op branching."""
    __slots__ = ("kernel", "call", "tensors", "consts", "outputs", "free", "single", "multi", "fin", "as_is",
                 "rounds", "fused", "view")

    def __init__(self, kernel, call, tensors, consts, outputs):
        self.kernel, self.call, self.tensors, self.consts, self.outputs = kernel, call, tensors, consts, outputs
        self.free: tuple[int, ...] = ()
        self.single = tuple((n, r) for n, r in tensors.items() if isinstance(r, int))
        self.multi = tuple((n, r) for n, r in tensors.items() if isinstance(r, tuple))
        self.consts = {**consts, **{n: None for n, r in tensors.items() if r is None}}
        kind = "round" if kernel.finish == "round" else "keep"
        self.fin = tuple((slot, t, ("float_" + kind) if t.dtype in FLOAT_DTYPES else
                          t.dtype if t.dtype in ("int32", "bool", "string") else "raw") for slot, t in outputs)
        # One float output whose finishing leaves a float32 array as it is: "keep" kernels,
        # and every kernel in exact numerics (storage is float32 there).
        self.as_is = len(outputs) == 1 and (self.fin[0][2] == "float_keep" or
                                            (self.fin[0][2] == "float_round" and not call.nx.fp16))
        # One float output rounded to fp16 storage: the other common case, stored directly.
        self.rounds = len(outputs) == 1 and self.fin[0][2] == "float_round" and call.nx.fp16
        # (op code, x slot, y slot, unsigned zero): a lone chip-profile elementwise op that runs
        # with its rounding as one compiled pass (set by regions.plan, which fuses longer runs).
        self.fused = None
        # (x slot, shape, dtype, output slot, size): a kernel declared reshape_only (reshape,
        # squeeze, expand_dims), run as that reshape, without the call.
        self.view = None
        if kernel.reshape_only and len(outputs) == 1 and isinstance(tensors.get("x"), int):
            dtype = {"float_keep": F32, "int32": np.int32, "bool": np.bool_}.get(self.fin[0][2])
            if dtype is not None:
                shape = tuple(outputs[0][1].shape)
                self.view = (tensors["x"], shape, dtype, outputs[0][0], math.prod(shape))


class Simulator:
    """Execute a Program's function on numpy inputs under a numerics profile.

        sim = Simulator(prog, profile=profile_for("m1"))     # or "exact", "m4", ...
        out = sim.run({"x": x})                               # {output name: array}
    """

    max_tensor_bytes = 4 << 30

    def __init__(self, program: Program, profile: NumericsProfile | str | None = None,
                 function: str | None = None):
        if not isinstance(program, Program):
            raise AnekitError(f"Simulator needs an anekit Program, got {type(program).__name__}")
        self.profile = profile_for(profile)
        self.nx = Numerics(self.profile)
        if function is None:
            fn = program.main
        elif function in program.functions:
            fn = program.functions[function]
        else:
            raise AnekitError(f"no function '{function}' in the program (functions: {', '.join(program.functions)})")
        self.function: Function = fn
        # State inputs: declared `state<...>`, or read and written by the state ops.
        stateful = set(fn.states)
        for op in fn.ops:
            if op.spec.state_param is not None:
                t = op.inputs.get(op.spec.state_param)
                if t is not None and t.op is None:
                    stateful.add(t.name)
        self._state_names = tuple(t.name for t in fn.inputs if t.name in stateful)
        self.states: dict[str, np.ndarray] = {}
        self._slot: dict[int, int] = {}
        self._const: dict[int, object] = {}
        self._steps: list[_Step] = []
        for t in fn.inputs:
            self._check_size(f"input '{t.name}'", [t], 0)
            self._new_slot(t)
        for pos, op in enumerate(fn.ops):
            self._plan_op(pos, op)
        self.reset_states()     # state buffers are allocated only once everything is validated
        for t in fn.outputs:
            if id(t) not in self._slot:
                raise ShapeError(f"function '{fn.name}': output '{t.name}' is not produced by any op")
        self._outputs = [(t.name, self._slot[id(t)], t.dtype) for t in fn.outputs]
        self._fp16_inputs = tuple(t for t in fn.inputs if t.dtype == "fp16")
        # Runs of elementwise ops become one compiled call each (sim/regions.py).
        # In exact numerics an fp16 output only the caller reads is rounded to its stored form by
        # the tape that computes it (run_stored's rounding, without a pass of its own).
        dtypes: dict[int, set] = {}
        for _, slot, dtype in self._outputs:
            dtypes.setdefault(slot, set()).add(dtype)
        store16 = frozenset() if self.nx.fp16 else frozenset(s for s, d in dtypes.items() if d == {"fp16"})
        self._units = regions.plan(self._steps, self._const, set(dtypes), store16)
        self._tape_stored = {slot: unit for unit in self._units if type(unit) is regions.Region
                             for slot in unit.stores}
        # Outputs computed by a rounding op in a profile whose NaN rule leaves no NaN: already in
        # stored form (on the fp16 grid, no NaN), where run_stored's rounding is the identity.
        # Graph inputs are stored form too where ingest turns NaN into inf (no NaN is left), and
        # an op whose kernel declares identity_when passes such a value on without a call.
        # A kernel declared finish="stored" leaves its float results rounded that way itself.
        rounded, from_inputs = set(), set()
        if self.nx.fp16 and self.profile.indeterminate_to_zero:
            if self.profile.nan_inputs_to_inf:
                from_inputs.update(self._slot[id(t)] for t in fn.inputs if t.name not in self._state_names
                                   and t.dtype in ("fp16", "fp32"))
                rounded.update(from_inputs)
            for step in self._steps:      # (in order: a reshape of a rounded value is one too)
                identity = step.kernel.identity_when
                x = step.tensors.get("x")
                if identity is not None and step.view is None and step.fused is None and x in rounded \
                        and len(step.fin) == 1 and step.fin[0][2] == "float_round" and identity(step.call, step.consts):
                    shape = tuple(step.fin[0][1].shape)
                    step.view = (x, shape, F32, step.fin[0][0], math.prod(shape))
                if step.view is not None and step.view[0] in rounded and step.view[2] is F32:
                    rounded.add(step.view[3])
                    if step.view[0] in from_inputs:
                        from_inputs.add(step.view[3])
                stored = step.kernel.finish == "stored"
                rounded.update(slot for slot, _, how in step.fin
                               if how == "float_round" or (stored and how == "float_keep"))
        self._stored_outputs = [(name, slot, "stored" if slot in rounded else dtype)
                                for name, slot, dtype in self._outputs]
        # Outputs computed here in stored form (not a caller's input passed through): the ones
        # run_stored registers in _NAN_FREE.
        self._fresh_outputs = tuple(i for i, (_, slot, _) in enumerate(self._outputs)
                                    if slot in rounded and slot not in from_inputs)
        self._plan_frees()

    # --- public -------------------------------------------------------------------------

    @property
    def state_names(self) -> tuple[str, ...]:
        """Inputs that are state buffers: declared `state<...>` or read and written by state ops."""
        return self._state_names

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.function.inputs]

    @property
    def output_names(self) -> list[str]:
        return [n for n, _, _ in self._outputs]

    def reset_states(self) -> None:
        """Set every state input (iOS 18 `state<...>`) back to zeros."""
        for t in self.function.inputs:
            if t.name in self._state_names:
                self.states[t.name] = np.zeros(t.shape, {"int32": np.int32, "bool": np.bool_}.get(t.dtype, F32))

    def run(self, inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Outputs by name, each in its declared dtype (fp16 outputs as float16 arrays).
        A state input may be given to set its value; otherwise it keeps the value the last
        run left (zeros at first)."""
        env = self._execute_all(self._check_inputs(inputs))
        return {name: _to_declared(env[slot], dtype) for name, slot, dtype in self._outputs}

    def run_stored(self, inputs: Mapping[str, object], resident: Mapping[str, np.ndarray] | None = None
                   ) -> dict[str, np.ndarray]:
        """`run` with float values in their stored form: float32 arrays, on the fp16 grid where
        declared fp16. `resident` holds inputs in that form, from an earlier `run_stored` (the
        state a trainer keeps on the engine between steps, guide ch. 15): they are taken as
        they are, skipping the fp16 casts and copies (a float32 array is trusted to be on the
        fp16 grid; any other array is converted as in `run`). Outputs come back in that form
        too: float32 for fp16 and fp32 outputs, equal to `run`'s after a cast to float32. In a
        chip profile the outputs an op computed come back read-only (copy one to write to it):
        fed back as resident inputs, they are known to hold no NaN."""
        fast = {}
        if resident:
            for t in self.function.inputs:
                a = resident.get(t.name)
                if a is not None and t.dtype in ("fp16", "fp32") and isinstance(a, np.ndarray) \
                        and a.dtype == F32 and a.shape == t.shape:
                    fast[t.name] = self._ingest_stored(t, a)
            rest = {k: v for k, v in resident.items() if k not in fast}
            overlap = sorted(set(rest) & set(inputs))
            if overlap:
                raise AnekitError(f"run_stored: inputs {overlap} given both as inputs and resident")
            inputs = {**inputs, **rest}
        env = self._execute_all(self._check_inputs(inputs, fast))
        values = self._stored_values(env)
        for i in self._fresh_outputs:
            a = values[i]
            if type(a) is np.ndarray:
                a.flags.writeable = False
                _NAN_FREE[id(a)] = a
        return dict(zip(self.output_names, values))

    def _stored_values(self, env) -> list:
        """The outputs in stored form, in output order: those a rounding op or the tape left in
        that form as they are, the rest through _to_stored."""
        tape = self._tape_stored
        return [env[slot] if dtype == "stored" or (slot in tape and tape[slot].stored)
                else _to_stored(env[slot], dtype) for _, slot, dtype in self._stored_outputs]

    def _execute_all(self, arrays: list) -> list:
        env: list = [None] * len(self._slot)
        for slot, value in self._const.items():
            env[slot] = value
        for t, arr in zip(self.function.inputs, arrays):
            if t.name in self._state_names:
                if arr is not None:
                    self.states[t.name] = arr
                arr = self.states[t.name]
            env[self._slot[id(t)]] = arr
        region, execute = regions.Region, self._execute
        with np.errstate(all="ignore"):
            for unit in self._units:
                if type(unit) is region:
                    unit.run(env, execute)
                else:
                    execute(unit, env)
                for slot in unit.free:
                    env[slot] = None
        return env

    __call__ = run

    # --- planning -----------------------------------------------------------------------

    def _new_slot(self, t) -> int:
        if id(t) in self._slot:
            raise ShapeError(f"tensor '{t.name}' is defined twice")
        self._slot[id(t)] = n = len(self._slot)
        return n

    def _ref(self, op, pos, t) -> int:
        try:
            return self._slot[id(t)]
        except KeyError:
            raise ShapeError(f"{op.type} '{op.name}' (op #{pos}) reads '{t.name}' before any op defines it") from None

    def _plan_op(self, pos: int, op) -> None:
        kernel = op.spec.kernel
        if kernel is None:
            raise UnsupportedOpError(f"the simulator has no kernel for op type '{op.type}' "
                                     f"(op '{op.name}', #{pos} in function '{self.function.name}')")
        self._check_size(f"{op.type} '{op.name}' (op #{pos})", op.outputs, scratch_bytes(op))
        tensors, consts, const_params = {}, {}, set()
        folded = True
        for p in op.spec.params:
            v = op.inputs.get(p.name)
            if p.kind in ("tensor", "tensors"):
                if v is None:
                    tensors[p.name] = None
                    continue
                ref = tuple(self._ref(op, pos, t) for t in v) if isinstance(v, tuple) else self._ref(op, pos, v)
                tensors[p.name] = ref
                if all(r in self._const for r in (ref if isinstance(ref, tuple) else (ref,))):
                    const_params.add(p.name)
                else:
                    folded = False
            elif p.kind == "const":
                consts[p.name] = self._const_value(op, pos, p, v)
            else:
                consts[p.name] = op.attrs[p.name] if p.name in op.attrs else (
                    None if callable(p.default) or p.default is None else p.default)
        for p in op.spec.params:   # callable defaults (spatial strides, pads) a parser may omit
            if p.kind == "const" and consts[p.name] is None and callable(p.default):
                consts[p.name] = python_value(p.default(Args(op.spec, self._shape_view(op, consts), None)))
        call = Call(op, self.nx, pos, const_params, self.states)
        outputs = tuple((self._new_slot(t), t) for t in op.outputs)
        step = _Step(kernel, call, tensors, consts, outputs)
        if folded:
            # The kernel reads its inputs from, and writes its outputs into, the folded values
            # themselves (no copy per op: building stays linear in the number of ops).
            val = consts.get("val") if op.spec.kind == "const" else None
            if type(val) is np.ndarray and len(outputs) == 1:
                # a weight several programs hold as the same array is ingested once (sim/shared.py)
                slot, t = outputs[0]
                self._const[slot] = shared.memo(val, ("ingest", t.dtype, self.nx.profile),
                                                lambda: self._fold(step, slot))
            else:
                with np.errstate(all="ignore"):
                    self._execute(step, self._const, compile_time=True)
            for slot, _ in outputs:
                value = self._const[slot]
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False   # shared by every run
        else:
            self._steps.append(step)

    def _fold(self, step: _Step, slot: int):
        """Run a const-only step at planning; its value in `slot` (made read-only by the caller)."""
        with np.errstate(all="ignore"):
            self._execute(step, self._const, compile_time=True)
        return self._const[slot]

    def _check_size(self, where: str, tensors, scratch: int) -> None:
        """Refuse, before allocating, what would take more than max_tensor_bytes: one tensor, or
        an op's outputs together with its kernel's scratch memory (sim/scratch.py)."""
        sizes = [math.prod(t.shape) * (1 if t.dtype == "bool" else 4) for t in tensors]
        limit = self.max_tensor_bytes
        total = sum(sizes) + scratch
        if max(sizes, default=0) > limit or total > limit:
            shapes = ", ".join(str(list(t.shape)) for t in tensors)
            parts = (f" ({sum(sizes) / 2**30:.3g} GiB of outputs + {scratch / 2**30:.3g} GiB of kernel scratch)"
                     if scratch else "")
            raise ShapeError(f"{where}: {shapes} needs {total / 2**30:.3g} GiB{parts}, more than the "
                             f"simulator's {limit / 2**30:g} GiB limit")

    def _const_value(self, op, pos, p, v):
        if v is None:
            return None if callable(p.default) or p.default is None else p.default
        if isinstance(v, tuple):
            raise ShapeError(f"{op.type} '{op.name}' (op #{pos}): argument '{p.name}' must be one constant")
        if v.const is not None:
            return python_value(v.const)
        slot = self._ref(op, pos, v)
        if slot not in self._const:
            raise ShapeError(f"{op.type} '{op.name}' (op #{pos}): argument '{p.name}' must be a "
                             f"compile-time constant, got the computed tensor '{v.name}'")
        return python_value(self._const[slot])

    @staticmethod
    def _shape_view(op, consts):
        values = dict(consts)
        for name, v in op.inputs.items():
            if name not in values or values[name] is None:
                values[name] = v
        return values

    def _plan_frees(self) -> None:
        # Constants only the folding needed (e.g. int8 data behind a dequantized weight) go.
        read = {slot for _, slot, _ in self._outputs}
        for step in self._steps:
            for ref in step.tensors.values():
                read.update(ref if isinstance(ref, tuple) else (() if ref is None else (ref,)))
        self._const = {slot: v for slot, v in self._const.items() if slot in read}
        keep = {slot for _, slot, _ in self._outputs} | set(self._const)
        last: dict[int, int] = {}
        for i, unit in enumerate(self._units):
            if type(unit) is regions.Region:
                reads, outputs = unit.reads, unit.outputs
            else:
                reads = [s for ref in unit.tensors.values() if ref is not None
                         for s in (ref if isinstance(ref, tuple) else (ref,))]
                outputs = [slot for slot, _ in unit.outputs]
            for slot in reads:
                last[slot] = i
            for slot in outputs:      # an unused output dies right away
                last.setdefault(slot, i)
        frees: dict[int, list[int]] = {}
        for slot, i in last.items():
            if slot not in keep:
                frees.setdefault(i, []).append(slot)
        for i, unit in enumerate(self._units):
            unit.free = tuple(frees.get(i, ()))

    # --- execution ----------------------------------------------------------------------

    def _execute(self, step: _Step, env, compile_time: bool = False) -> None:
        view = step.view
        if view is not None and not compile_time:
            x = env[view[0]]
            if type(x) is np.ndarray and x.dtype == view[2] and x.size == view[4]:
                env[view[3]] = x.reshape(view[1])
                return
        if step.fused is not None and not compile_time and self._fused(step, env):
            return
        call = step.call
        kw = step.consts.copy()
        for name, ref in step.single:
            kw[name] = env[ref]
        for name, refs in step.multi:
            kw[name] = tuple(env[r] for r in refs)
        try:                # callers hold np.errstate(all="ignore"): one context per run, not per op
            result = step.kernel.fn(call, **kw)
        except AnekitError:
            raise
        except _WRAPPED as e:
            raise ShapeError(f"{call.op.type} '{call.op.name}' (op #{call.position}) failed: "
                             f"{type(e).__name__}: {e}") from e
        fin = step.fin
        if step.as_is and type(result) is np.ndarray and result.dtype == F32 \
                and result.shape == fin[0][1].shape and not compile_time:
            env[fin[0][0]] = result      # the common case, without the general checks below
            return
        if step.rounds and type(result) is np.ndarray and result.dtype == F32 \
                and result.shape == fin[0][1].shape and not compile_time:
            env[fin[0][0]] = self.nx.store(result)     # what _finish does, without its dispatch
            return
        if len(fin) == 1 and not isinstance(result, (tuple, list)):
            results = (result,)
        else:
            results = tuple(result) if isinstance(result, (tuple, list)) else (result,)
            if len(results) != len(fin):
                raise call.fail(f"kernel returned {len(results)} values for {len(fin)} outputs")
        ingest = compile_time and call.op.spec.kind in ("const", "constexpr")
        for (slot, t, how), value in zip(fin, results):
            env[slot] = self._finish(call, t, value, how, ingest)

    @staticmethod
    def _fused(step: _Step, env) -> bool:
        """Run a lone fused step when the compiled kernels are on and its operands are float32
        C-contiguous arrays of the sizes planned; False leaves it to the kernel."""
        code, xs, ys, unsigned_zero = step.fused
        x, y = env[xs], env[ys]
        jit = compiled.kernels()
        if jit is None or type(x) is not np.ndarray or type(y) is not np.ndarray or x.dtype != F32 \
                or y.dtype != F32 or not (x.flags.c_contiguous and y.flags.c_contiguous):
            return False
        slot, t, _ = step.fin[0]
        out = np.empty(t.shape, F32)
        n = out.size
        if not ((x.size == n or x.size == 1) and (y.size == n or y.size == 1)
                and (n == 1 or x.size == n or y.size == n)):
            return False            # never read past an operand (the kernel path reports the error)
        jit.elementwise_round(code, x.reshape(-1), y.reshape(-1), out.reshape(-1), unsigned_zero,
                              _F16_MAX_BITS, False, 0.0)
        env[slot] = out
        return True

    def _finish(self, call, t, value, how: str, ingest: bool):
        if how == "string" or isinstance(value, str):
            return value
        arr = np.asarray(value)
        if arr.shape != t.shape:
            raise call.fail(f"computed shape {list(arr.shape)} but '{t.name}' is declared {list(t.shape)}")
        if how == "float_round":
            return self.nx.ingest(arr) if ingest else self.nx.store(arr)
        if how == "float_keep":
            return self.nx.ingest(arr) if ingest else arr.astype(F32, copy=False)
        if how == "int32":
            return arr.astype(np.int32, copy=False)
        if how == "bool":
            return arr.astype(np.bool_, copy=False)
        return arr          # sub-byte and other storage-only dtypes feed constexpr ops as they are

    def _check_inputs(self, inputs, ready: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Arrays in function-input order (None for a state left out), ready for the kernels;
        `ready` holds inputs already in that form."""
        mapping = isinstance(inputs, Mapping)        # (anything else: bind_inputs says what it needs)
        quick = self._quick_fp16(inputs) if mapping and inputs else None
        if quick:
            inputs = {k: v for k, v in inputs.items() if k not in quick}
            ready = {**ready, **quick} if ready else quick
        if ready and mapping and not inputs and len(ready) == len(self.function.inputs):
            return [ready[t.name] for t in self.function.inputs]     # every input ready (keys are input names)
        if ready:
            bound = bind_inputs(self.function, inputs, optional=self._state_names + tuple(ready))
            bound.update(ready)
            return [bound[t.name] if t.name in ready else self._ingest(t, bound[t.name]) if t.name in bound
                    else None for t in self.function.inputs]
        bound = bind_inputs(self.function, inputs, optional=self._state_names)
        return [self._ingest(t, bound[t.name]) if t.name in bound else None for t in self.function.inputs]

    def _quick_fp16(self, inputs) -> dict:
        """fp16 inputs given as float32 arrays of the declared shape without NaN, rounded to
        the fp16 grid in one pass: bind_inputs' fp16 cast and `_ingest`'s way back (four
        passes each) give the same values, and the NaN rule has nothing to do."""
        quick = {}
        if isinstance(inputs, Mapping):
            for t in self._fp16_inputs:
                a = inputs.get(t.name)
                if type(a) is np.ndarray and a.dtype == F32 and a.shape == t.shape and not has_nan(a):
                    quick[t.name] = round_fp16(a)
        return quick

    def _ingest(self, t, arr: np.ndarray) -> np.ndarray:
        if t.dtype in ("fp16", "fp32"):
            with np.errstate(all="ignore"):   # bind_inputs made `arr` a fresh array: no copy here
                return self.nx.ingest_fp16(arr) if arr.dtype == np.float16 else self.nx.ingest(arr.astype(F32, copy=False))
        return arr

    def _ingest_stored(self, t, a: np.ndarray) -> np.ndarray:
        """`_ingest` of a stored-form float32 array: an fp16 input is on the grid already, so
        only the NaN rule is left (as in Numerics.ingest_fp16)."""
        if not self.nx.fp16:
            return a                      # exact numerics: a float32 array is the stored form
        if t.dtype == "fp32":
            with np.errstate(all="ignore"):
                return self.nx.ingest(a)
        if self.nx.profile.nan_inputs_to_inf and _NAN_FREE.get(id(a)) is not a and has_nan(a):
            return np.where(np.isnan(a), F32(np.inf), a)
        return a

    # --- loop trips (kernels/control.py): run_stored without its binding --------------------

    def run_trip(self, values) -> list | None:
        """`run_stored({}, resident=...)` for a block run once per loop trip: `values` in input
        order, outputs in output order (stored form, as run_stored gives them), without the
        name binding, dict building and input checks per trip. Every value must already be in
        the form `run_stored` would make of it: a float32 array of the declared shape for an
        fp16/fp32 input, an int32 / bool array of the declared shape for an int32 / bool one.
        None when one is not (or the block has state inputs): the caller takes run_stored, which
        converts or reports, so both routes give the same values."""
        plan = self.__dict__.get("_trip_plan")
        if plan is None:
            kinds = {"fp16": F32, "fp32": F32, "int32": np.dtype(np.int32), "bool": np.dtype(np.bool_)}
            plan = self._trip_plan = () if self._state_names else tuple(
                (t, kinds.get(t.dtype), t.shape, t.dtype in ("fp16", "fp32")) for t in self.function.inputs)
        if not plan or len(values) != len(plan):
            return None
        arrays = []
        for (t, dtype, shape, is_float), a in zip(plan, values):
            if type(a) is not np.ndarray or a.dtype != dtype or a.shape != shape:
                return None
            # as run_stored: floats through _ingest_stored, others copied as bind_inputs does
            arrays.append(self._ingest_stored(t, a) if is_float else np.array(a, order="C"))
        return self._stored_values(self._execute_all(arrays))


def _to_stored(value, dtype: str):
    """An output in stored form: float32 (rounded to the fp16 grid where declared fp16: exact
    numerics computes off it), other dtypes as `_to_declared`."""
    if dtype == "fp16":
        a = np.asarray(value, dtype=F32)
        with np.errstate(all="ignore"):
            return round_fp16(a)        # from_fp16(to_fp16(a)), NaN payloads aside
    if dtype == "fp32" and isinstance(value, np.ndarray) and value.dtype == F32:
        return value
    return _to_declared(value, dtype)


def _to_declared(value, dtype: str):
    if isinstance(value, str):
        return value
    np_type = _OUT_NUMPY.get(dtype)
    if np_type is None:
        return np.array(value)
    if np_type is np.float16:
        return to_fp16(value)
    with np.errstate(all="ignore"):
        return np.array(value, dtype=np_type)

"""while_loop and cond: each block runs as a function of its own in a Simulator under the
same numerics profile (blocks are closed: loop variables and captures are its inputs; see
ir/ops/control.py). Core ML runs these ops on the host (guide Appendix A); the simulator
gives the engine numerics to the ops inside the blocks, as it does to the ops around them."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ...ir.graph import Program
from ..executor import Simulator      # the executor does not import the kernels: no cycle
from ..program import plan as plan_program, program_kernel
from ..registry import kernel
from . import elementwise

# A loop still running after this many trips is reported, not waited for: converted loops
# run once per sequence step.
MAX_TRIPS = 1_000_000


def _block(c, fn):
    """A cached Simulator for block `fn` (built on the op's first run)."""
    def make():
        return Simulator(Program({fn.name: fn}), profile=c.nx.profile, function=fn.name)
    return c.cached(("block", fn.name), make)


def _feed(fn, values) -> dict:
    return {t.name: np.asarray(v) for t, v in zip(fn.inputs, values)}


def _outputs(sim, fn, values) -> list:
    # Values stay in stored form (float32 on the fp16 grid) from trip to trip, as they are in
    # the enclosing program: no fp16 casts per trip, the same values. run_trip skips the
    # binding run_stored does by name (a converted GRU's trips are call-bound); it declines
    # values not yet in stored form, which run_stored converts or reports.
    out = sim.run_trip(values)
    if out is not None:
        return out
    out = sim.run_stored({}, resident=_feed(fn, values))
    return [out[name] for name in sim.output_names]


def _counter_test(c, fn):
    """(comparison, operands) when block `fn` is one int32 comparison of its inputs and
    constants (a converted loop's `i < n`), evaluated here without a Simulator run per trip;
    an operand is an input's position or a constant array. None for any other block."""
    def make():
        ops = [op for op in fn.ops if op.type != "const"]
        if len(ops) != 1 or len(fn.outputs) != 1 or fn.outputs[0] is not ops[0].outputs[0]:
            return None
        op = ops[0]
        kern = op.spec.kernel
        if kern is None or kern.fn is not elementwise.compare or fn.outputs[0].size != 1:
            return None
        operands = []
        for name in ("x", "y"):
            t = op.inputs.get(name)
            if t is None or isinstance(t, tuple) or t.dtype != "int32":
                return None
            if t.op is None:
                pos = [i for i, u in enumerate(fn.inputs) if u is t]
                if not pos:
                    return None
                operands.append(pos[0])
            elif t.is_const and isinstance(t.const, np.ndarray) and t.const.dtype == np.int32 \
                    and t.const.shape == t.shape:
                operands.append(t.const)
            else:
                return None
        return elementwise._COMPARE[op.type], tuple(operands)
    return c.cached(("counter", fn.name), make)


def _test(c, cond, state) -> bool:
    """The cond block's verdict on `state`: a counter test directly on int32 values (the
    compare kernel's own ufunc on the same values: the same verdict), any other block
    through its Simulator."""
    quick = _counter_test(c, cond)
    if quick is not None:
        compare, operands = quick
        args = []
        for a in operands:
            if isinstance(a, int):
                t, a = cond.inputs[a], state[a]
                if type(a) is not np.ndarray or a.dtype != np.int32 or a.shape != t.shape:
                    break       # not a stored int32 value: the Simulator converts or reports
            args.append(a)
        else:
            return bool(compare(*args).reshape(-1)[0])
    return _truth(c, _outputs(_block(c, cond), cond, state)[0], cond.name)


def _truth(c, value, block: str) -> bool:
    v = np.asarray(value)
    if v.size != 1:
        raise c.fail(f"block '{block}' returned {v.size} values for its condition, expected one")
    return bool(v.reshape(-1)[0])


def _program(c, cond, body):
    """The loop as one compiled program (sim/program.py), for a counter-test loop whose body
    the program models; None otherwise (planned once)."""
    def make():
        quick = _counter_test(c, cond)
        return None if quick is None else plan_program(_block(c, body), cond, quick, len(body.outputs))
    return c.cached(("program", body.name), make)


@kernel("while_loop", finish="keep")
def while_loop(c, loop_vars, captures, cond, body):
    caps = list(captures or ())
    state = list(loop_vars)
    kern = program_kernel()
    if kern is not None:
        prog = _program(c, cond, body)
        if prog is not None:
            out = prog.run(kern, state, caps, MAX_TRIPS)
            if out is not None:
                return out
    step = _block(c, body)
    for _ in range(MAX_TRIPS):
        if not _test(c, cond, state + caps):
            return tuple(state)
        state = _outputs(step, body, state + caps)
    raise ShapeError(f"while_loop '{c.op.name}' (op #{c.position}): still running after {MAX_TRIPS} trips")


@kernel("cond", finish="keep")
def cond(c, pred, captures, true_block, false_block):
    fn = true_block if _truth(c, pred, "pred") else false_block
    return tuple(_outputs(_block(c, fn), fn, list(captures or ())))

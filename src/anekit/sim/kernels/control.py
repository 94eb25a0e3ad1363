"""while_loop and cond: each block runs as a function of its own in a Simulator under the
same numerics profile (blocks are closed: loop variables and captures are its inputs; see
ir/ops/control.py). Core ML runs these ops on the host (guide Appendix A); the simulator
gives the engine numerics to the ops inside the blocks, as it does to the ops around them."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ...ir.graph import Program
from ..executor import Simulator      # the executor does not import the kernels: no cycle
from ..registry import kernel

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


def _truth(c, value, block: str) -> bool:
    v = np.asarray(value)
    if v.size != 1:
        raise c.fail(f"block '{block}' returned {v.size} values for its condition, expected one")
    return bool(v.reshape(-1)[0])


@kernel("while_loop", finish="keep")
def while_loop(c, loop_vars, captures, cond, body):
    caps = list(captures or ())
    state = list(loop_vars)
    test, step = _block(c, cond), _block(c, body)
    for _ in range(MAX_TRIPS):
        if not _truth(c, _outputs(test, cond, state + caps)[0], cond.name):
            return tuple(state)
        state = _outputs(step, body, state + caps)
    raise ShapeError(f"while_loop '{c.op.name}' (op #{c.position}): still running after {MAX_TRIPS} trips")


@kernel("cond", finish="keep")
def cond(c, pred, captures, true_block, false_block):
    fn = true_block if _truth(c, pred, "pred") else false_block
    return tuple(_outputs(_block(c, fn), fn, list(captures or ())))

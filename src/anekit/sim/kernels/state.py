"""iOS 18 state ops. A state input holds a tensor that persists across runs; the Simulator
keeps the values (Simulator.states) and hands them to these kernels through the call."""
from __future__ import annotations

from ..registry import kernel


def _name(c, param: str) -> str:
    return c.op.inputs[param].name


@kernel("read_state", finish="keep")
def read_state(c, input):
    return c.states[_name(c, "input")]


@kernel("write_state", finish="keep")
def write_state(c, input, data):
    c.states[_name(c, "input")] = data
    return ()


@kernel("coreml_update_state", finish="keep")
def coreml_update_state(c, state, value):
    c.states[_name(c, "state")] = value
    return value

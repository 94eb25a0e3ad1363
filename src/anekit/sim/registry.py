"""Simulator kernels, filed on the op declarations: `@kernel("relu")` sets
`REGISTRY["relu"].kernel`, so the declaration is where an op's kernel is found (there is no
second table of op names).

A kernel is `fn(call, **params)`: the keyword names are the op's declared parameters
(anekit.ir.REGISTRY), tensors arrive as numpy arrays (None when an optional tensor is
absent), const and attr parameters as their compile-time values. It returns one array or a
tuple, one per op output.

finish="round" (default): the executor rounds float results to storage (fp16 in a chip
profile) and applies the NaN rule. finish="keep": the kernel's results are already in
storage form (data movement, or kernels that round internally). finish="stored": "keep", and
in a chip profile whose NaN rule leaves no NaN every float result is rounded with that rule
(no NaN in it), as "round" would leave it: the executor then treats it as stored form
(run_stored hands it out as it is, and takes it back without the NaN rule's pass).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import shared

from ..errors import ShapeError
from ..ir.spec import REGISTRY
from .numerics import Numerics

FINISH = ("round", "keep", "stored")


@dataclass
class Kernel:
    op: str
    fn: Callable
    finish: str
    scratch: Callable | None = None   # scratch(op) -> bytes the kernel allocates besides its outputs
    tape: tuple | None = None         # (tape op code, operand parameters): the op's form on the
                                      # compiled elementwise tape (sim/regions.py), if it has one
    reshape_only: bool = False        # the result is input x's data in the declared output shape:
                                      # the executor reshapes without calling the kernel
    identity_when: Callable | None = None   # identity_when(call, consts) -> True where a stored-form input x
                                      # comes out unchanged: the executor passes x on when it is stored
    program: Callable | None = None   # program(call, consts) -> the op's form in a compiled loop program
                                      # (sim/program.py), or None where it has none


def kernel(*names: str, finish: str = "round", tape: dict | None = None, reshape_only: bool = False,
           program: Callable | None = None, identity_when: Callable | None = None):
    """File `fn` as the kernel of each named op (on its OpSpec). `tape` gives, per op name, the
    op's form on the compiled elementwise tape: (an op code of sim/compiled.py, the two
    parameters it reads; a const parameter, not a tensor, is read as one value, nx.const(value),
    the scalar as the engine holds it), computing what `fn` computes with the same rounding (sim/regions.py
    fuses runs of such ops; tests/test_sim_regions.py holds the two routes to the same bits).
    `reshape_only`: the kernel returns x reshaped to the declared output shape, nothing else.
    `identity_when(call, consts)`: True where the kernel and the storage step after it return an input x
    already in stored form (on the fp16 grid, no NaN) unchanged; the executor then passes x on
    where it knows x is stored (tests/test_sim_dispatch.py holds both routes to the same bits).
    `program(call, consts)`: the op's form as a row of a compiled loop program (sim/program.py: a
    tuple whose first item names the row kind there, computing what `fn` and the executor's
    storage step compute), or None where this call has none (consts: its non-tensor arguments); tests/test_sim_program.py holds
    that route and the op-by-op one to the same bits."""
    if finish not in FINISH:
        raise ValueError(f"finish must be one of {FINISH}")

    def register(fn):
        for name in names:
            spec = REGISTRY.get(name)
            if spec is None:
                raise RuntimeError(f"kernel '{fn.__name__}' names '{name}', which no op declaration defines")
            if spec.kernel is not None:
                raise RuntimeError(f"op '{name}' has two kernels")
            spec.kernel = Kernel(name, fn, finish, tape=(tape or {}).get(name), reshape_only=reshape_only,
                                 program=program, identity_when=identity_when)
        return fn
    return register


class Call:
    """What a kernel sees besides its arguments: the op, the numerics, a per-op cache."""

    __slots__ = ("op", "nx", "cache", "position", "const_params", "states")

    def __init__(self, op, nx: Numerics, position: int, const_params=frozenset(), states=None):
        self.op, self.nx, self.position = op, nx, position
        self.const_params = frozenset(const_params)   # tensor params fed by constants
        self.states = states                           # the Simulator's state values, by name
        self.cache: dict = {}

    @property
    def type(self) -> str:
        return self.op.type

    def out_shape(self, i: int = 0) -> tuple:
        return self.op.outputs[i].shape

    def out_dtype(self, i: int = 0) -> str:
        return self.op.outputs[i].dtype

    def fail(self, message: str) -> ShapeError:
        return ShapeError(f"{self.op.type} '{self.op.name}' (op #{self.position}): {message}")

    def cached_shared(self, key, make: Callable, param: str, value, *extra):
        """cached(key, make, param), and for a constant `param` also shared with every other op and
        executable that reads the same read-only array `value` (sim/shared.py). `extra` names
        everything else make() depends on besides `value` and the numerics profile."""
        if param not in self.const_params:
            return make()
        return self.cached(key, lambda: shared.memo(value, (self.op.type, key, self.nx.profile) + extra, make), param)

    def cached(self, key, make: Callable, *params: str):
        """Per-op derived data (weights reshaped for a matmul, ...): computed once when every
        named tensor parameter is a compile-time constant, else on every call."""
        if not self.const_params.issuperset(params):
            return make()
        try:
            return self.cache[key]
        except KeyError:
            value = self.cache[key] = make()
            return value

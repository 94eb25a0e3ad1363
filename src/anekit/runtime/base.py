"""The backend interface: a backend compiles a program for a target into an Executable."""
from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..ir.feeds import bind_inputs
from ..ir.fp16cast import from_fp16
from ..ir.graph import Function, Program


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str            # why not, or what was found (e.g. "Apple M4 Pro, macOS 15.2")


class Backend(abc.ABC):
    name: str = ""

    def __init__(self, **options):
        if options:
            raise UsageError(f"backend '{self.name}' takes no options {sorted(options)}")

    def usable(self) -> Availability:
        """Availability for this instance (a backend given a test transport may run anywhere)."""
        return self.availability()

    @classmethod
    def runs_target(cls, target) -> bool:
        """Whether this machine's copy of the backend runs programs for `target` (hardware
        backends run only the chip they are on); "auto" skips backends that do not."""
        return True

    @classmethod
    @abc.abstractmethod
    def availability(cls) -> Availability:
        """Whether this backend can run here, and why not."""

    @abc.abstractmethod
    def compile(self, prog: Program, target, function: str = "main", **options) -> "Executable":
        """Prepare `prog` to run; raises an AnekitError subclass on failure."""


def refuse_states(fn: Function, backend: str) -> None:
    """Backends that do not keep state buffers between calls refuse such programs up front."""
    if fn.states:
        raise UsageError(f"the {backend} backend cannot run programs with state inputs yet "
                         f"({', '.join(fn.states)}); run them with backend='sim'")


def function_of(prog: Program, function: str = "main") -> Function:
    """The named function; "main" also names a program's only function whatever it is called."""
    if function in prog.functions:
        return prog.functions[function]
    if function == "main" and len(prog.functions) == 1:
        return prog.main
    raise UsageError(f"the program has no function '{function}' (it has {', '.join(prog.functions)})")


class Executable(abc.ABC):
    """A compiled program: call it with {input name: array}, get {output name: array}."""

    backend: str = ""

    def __init__(self, prog: Program, target, function: str = "main"):
        self.program, self.target = prog, target
        self.function: Function = function_of(prog, function)
        self.input_names = [t.name for t in self.function.inputs]
        self.output_names = list(self.function.output_names)

    @property
    def optional_inputs(self) -> tuple[str, ...]:
        """Inputs a call may leave out: state buffers, which keep their value between calls."""
        return self.function.states

    def __call__(self, inputs: Mapping | None = None, **named) -> dict[str, np.ndarray]:
        if inputs is not None and not isinstance(inputs, Mapping):
            raise UsageError(f"call with a mapping {{input name: array}} (inputs: {self.input_names}), "
                             f"got {type(inputs).__name__}")
        return self._run(self._bind({**(inputs or {}), **named}))

    def run_stored(self, inputs: Mapping, resident: Mapping | None = None) -> dict[str, np.ndarray]:
        """A call with float values in their stored form (float32, on the fp16 grid where
        declared fp16): `resident` holds such inputs from an earlier `run_stored`, and the
        float outputs come back as float32. Trainers keep parameters and optimizer state in
        this form between steps; the simulator then skips the fp16 casts (this default casts)."""
        out = self({**inputs, **(resident or {})})
        return {k: from_fp16(v) if isinstance(v, np.ndarray) and v.dtype == np.float16 else v
                for k, v in out.items()}

    def _bind(self, feeds: dict) -> dict:
        """Checked arrays in their declared dtypes (a backend that checks inputs itself passes them on)."""
        return bind_inputs(self.function, feeds, optional=self.optional_inputs)

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on checked inputs (declared dtype and shape)."""

    def close(self) -> None:
        """Release backend resources (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        tname = getattr(self.target, "name", self.target)
        return f"<{type(self).__name__} backend={self.backend} target={tname} inputs={self.input_names} outputs={self.output_names}>"

"""The simulator backend: runs anywhere, with the target's fp16 numerics (anekit.sim)."""
from __future__ import annotations

from dataclasses import replace

from ..errors import UsageError
from ..sim import EXACT, Simulator, profile_for
from .base import Availability, Backend, Executable


class SimExecutable(Executable):
    backend = "sim"

    def __init__(self, prog, target, function, numerics):
        super().__init__(prog, target, function)
        self.numerics = numerics
        profile = EXACT if numerics == "exact" else profile_for(target.name)
        if numerics == "strict":   # the lane/tile MAC model on every reduction, however large (slow)
            profile = replace(profile, tile_emulation_max_products=1 << 62)
        self._sim = Simulator(prog, profile=profile, function=self.function.name)

    @property
    def profile(self):
        """The numerics profile the simulator runs (anekit.sim.profiles), with its stated gaps (`notes`)."""
        return self._sim.profile

    @property
    def optional_inputs(self):
        return self._sim.state_names

    def _bind(self, feeds):
        return feeds    # Simulator.run binds and converts its inputs itself (ir.feeds)

    def _run(self, feeds):
        return self._sim.run(feeds)

    def run_stored(self, inputs, resident=None):
        return self._sim.run_stored(inputs, resident)


class SimBackend(Backend):
    name = "sim"

    def __init__(self, numerics: str = "profile"):
        if numerics not in ("profile", "strict", "exact"):
            raise UsageError(f"numerics must be 'profile' (the chip's), 'strict' (the chip's, with the "
                             f"MAC tile model on every reduction) or 'exact' (fp32), got '{numerics}'")
        self.numerics = numerics

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "numpy simulator with per-chip fp16 numerics")

    def compile(self, prog, target, function="main", **options):
        return SimExecutable(prog, target, function, self.numerics)

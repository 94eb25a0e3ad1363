"""Workload-level estimates built on `estimate`: decode tokens per second and training steps.

    est = ak.cost.estimate_decode(token_program, "m4 pro")          # one program per token
    est.tokens_per_s, est.ms_per_token, est.low_tokens_per_s, est.high_tokens_per_s
    step = ak.cost.estimate_step({"fwd": fwd, "bwd": bwd}, "m1", calls={"bwd": 2}, host_ms=5.0)
    step.ms, step.low_ms, step.high_ms, step.parts

Each program is estimated as one dispatch (its floor paid once per call, guide ch. 9, 18);
a token or a step that runs a program several times pays its floor each time. `host_ms`
is time spent off the engine (optimizer, sampling, host elementwise work) that the caller
knows and the model does not. Ops `ak.check` puts off the engine (a classifier wider than the
engine's axis limit, say) are priced on the CPU roofline (anekit.cost.host) and added to a
decode token (`off_engine_ms`); the program estimate itself leaves them out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import AnekitError
from .host import host_ms as _host_ms
from .program import Estimate, estimate


@dataclass
class DecodeEstimate:
    target: str
    ms_per_token: float
    low_ms: float
    high_ms: float
    calls_per_token: int
    program: Estimate = field(repr=False)
    off_engine_ms: float = 0.0     # ops off the engine, on the CPU roofline (in ms_per_token)

    @property
    def tokens_per_s(self) -> float:
        return 1e3 / self.ms_per_token

    @property
    def low_tokens_per_s(self) -> float:
        return 1e3 / self.high_ms

    @property
    def high_tokens_per_s(self) -> float:
        return 1e3 / self.low_ms

    def to_dict(self) -> dict:
        return {"target": self.target, "ms_per_token": self.ms_per_token, "tokens_per_s": self.tokens_per_s,
                "low_tokens_per_s": self.low_tokens_per_s, "high_tokens_per_s": self.high_tokens_per_s,
                "calls_per_token": self.calls_per_token, "off_engine_ms": self.off_engine_ms}


def estimate_decode(token_program, target, calls_per_token: int = 1, host_ms: float = 0.0,
                    route: str = "standard") -> DecodeEstimate:
    """Batch-1 decode speed: `token_program` computes one token (all layers); a decoder split
    into several programs passes one of them and calls_per_token, or uses estimate_step."""
    if not isinstance(calls_per_token, int) or calls_per_token < 1:
        raise AnekitError(f"calls_per_token must be a positive integer, got {calls_per_token!r}")
    if host_ms < 0:
        raise AnekitError(f"host_ms must not be negative, got {host_ms}")
    est = estimate(token_program, target, route=route)
    n = calls_per_token
    off = n * off_engine_ms(est)
    extra = host_ms + off
    return DecodeEstimate(est.target, n * est.total_ms + extra, n * est.low_us / 1e3 + extra,
                          n * est.high_us / 1e3 + extra, n, est, off)


def off_engine_ms(est: Estimate) -> float:
    """CPU time of the ops an estimate leaves off the engine: their flops and bytes (weights at
    their stored size, and activations) on the chip's CPU roofline."""
    return sum(_host_ms(r.flops, r.bytes, est.target) for r in est.off_engine)


@dataclass
class StepEstimate:
    target: str
    ms: float
    low_ms: float
    high_ms: float
    parts: dict            # name -> (calls, Estimate)

    def to_dict(self) -> dict:
        return {"target": self.target, "ms": self.ms, "low_ms": self.low_ms, "high_ms": self.high_ms,
                "parts": {k: {"calls": n, "ms_each": e.total_ms} for k, (n, e) in self.parts.items()}}


def estimate_step(programs, target, calls: dict | None = None, host_ms: float = 0.0,
                  route: str = "standard") -> StepEstimate:
    """One training step (or any fixed sequence of dispatches): the sum over `programs`
    (a dict name -> Program, or a list) of calls x estimate, plus host_ms."""
    if not isinstance(programs, dict):
        programs = {f"program{i}": p for i, p in enumerate(programs)}
    if not programs:
        raise AnekitError("estimate_step needs at least one program")
    calls = dict(calls or {})
    unknown = set(calls) - set(programs)
    if unknown:
        raise AnekitError(f"calls names programs that are not given: {', '.join(sorted(unknown))}")
    if host_ms < 0:
        raise AnekitError(f"host_ms must not be negative, got {host_ms}")
    parts, ms, lo, hi, name = {}, host_ms, host_ms, host_ms, None
    for k, prog in programs.items():
        n = calls.get(k, 1)
        if not isinstance(n, int) or n < 0:
            raise AnekitError(f"calls[{k!r}] must be a non-negative integer, got {n!r}")
        e = estimate(prog, target, route=route)
        name = e.target
        parts[k] = (n, e)
        ms += n * e.total_ms
        lo += n * e.low_us / 1e3
        hi += n * e.high_us / 1e3
    return StepEstimate(name, ms, lo, hi, parts)

"""Next-token sampling as llama2.c's run.c does it: greedy argmax at temperature 0, else
softmax(logits / temperature) sampled with one xorshift coin per token, plain or top-p."""
from __future__ import annotations

import os

import numpy as np

from ..errors import UsageError

_MASK64 = (1 << 64) - 1


class XorShift:
    """run.c's `random_u32` / `random_f32` (xorshift* on a 64-bit state)."""

    def __init__(self, seed: int):
        self.state = int(seed) & _MASK64

    def u32(self) -> int:
        s = self.state
        s ^= s >> 12
        s = (s ^ (s << 25)) & _MASK64
        s ^= s >> 27
        self.state = s
        return ((s * 0x2545F4914F6CDD1D) & _MASK64) >> 32

    def f32(self) -> float:
        return float(np.float32((self.u32() >> 8) / 16777216.0))


class Sampler:
    """`sampler(logits) -> token id`."""

    def __init__(self, vocab_size: int, temperature: float = 0.0, top_p: float | None = None,
                 seed: int | None = None):
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise UsageError(f"temperature must be a number, got {temperature!r}") from None
        if not temperature >= 0 or temperature == float("inf"):
            raise UsageError(f"temperature must be a finite number >= 0, got {temperature}")
        if top_p is not None and not 0.0 <= float(top_p) <= 1.0:
            raise UsageError(f"top_p must be in [0, 1], got {top_p}")
        self.vocab_size, self.temperature = vocab_size, temperature
        self.top_p = None if top_p is None else float(top_p)
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        self.rng = XorShift(seed if seed > 0 else 1)   # a zero xorshift state stays zero

    def __call__(self, logits) -> int:
        x = np.asarray(logits, np.float32).reshape(-1)[: self.vocab_size]
        if self.temperature == 0.0:
            return int(np.argmax(x))        # first maximum, as run.c's strict `>`
        x = x / np.float32(self.temperature)
        p = np.exp(x - x.max())
        p /= p.sum()
        coin = self.rng.f32()
        if self.top_p is None or self.top_p <= 0 or self.top_p >= 1:
            return _first_over(np.cumsum(p), coin, len(p) - 1)
        # Top-p: the most likely tokens until their mass exceeds top_p, then sample among them.
        cutoff = (1.0 - self.top_p) / (len(p) - 1)
        idx = np.flatnonzero(p >= cutoff)
        idx = idx[np.argsort(-p[idx], kind="stable")]
        cum = np.cumsum(p[idx])
        over = np.flatnonzero(cum > self.top_p)
        last = int(over[0]) if over.size else len(idx) - 1
        return int(idx[_first_over(cum[: last + 1], coin * cum[last], last)])


def _first_over(cdf: np.ndarray, r: float, fallback: int) -> int:
    hit = np.flatnonzero(r < cdf)
    return int(hit[0]) if hit.size else fallback

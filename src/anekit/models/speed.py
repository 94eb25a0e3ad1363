"""What a decoder's generation would cost on a chip's engine: the cost model's price of the same
prefill and decode programs `Decoder.generate` runs (anekit.cost), not the simulator's speed.

    est = m.estimate("m4", prompt_tokens=8)        # m: anekit.models.decoder.Decoder
    est.decode.tokens_per_s, est.decode.low_tokens_per_s, est.prefill_tokens_per_s

The programs are built from shape-only weights (anekit.quantization.placeholder_weight: zero-stride
views in the format `generate` would store them in), so pricing a 7B model allocates nothing and
runs no k-means: the estimator reads shapes, dtypes and weight formats only. A weight that
`ak.quantize` would leave in fp16 (fewer than its `min_size` elements) stays fp16 here too. The
token embedding and sampling run on the host and are not priced; ops the engine cannot take
(a classifier past the axis limit) are priced on the CPU roofline (estimate_decode).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cost import estimate, estimate_decode
from ..cost.program import Estimate
from ..cost.workloads import DecodeEstimate
from ..errors import UsageError
from .. import dialects
from ..runtime import resolve_target


@dataclass
class GenerationEstimate:
    """Predicted engine time of one `generate` call's programs on `target` (cost model)."""
    target: str
    quantize: str | None
    prompt_tokens: int
    prefill_positions: int        # the power-of-two bucket the prefill program is built for
    prefill: Estimate
    decode: DecodeEstimate

    @property
    def prefill_ms(self) -> float:
        return self.prefill.total_ms

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill.total_ms * 1e3

    def to_dict(self) -> dict:
        return {"target": self.target, "quantize": self.quantize, "prompt_tokens": self.prompt_tokens,
                "prefill_positions": self.prefill_positions, "prefill_ms": self.prefill_ms,
                "prefill_low_ms": self.prefill.low_us / 1e3, "prefill_high_ms": self.prefill.high_us / 1e3,
                "prefill_tokens_per_s": self.prefill_tokens_per_s, "decode": self.decode.to_dict(),
                "note": "cost-model estimate (anekit.cost), not a measurement"}


def estimate_generation(arch, weights: dict, quantize: str | None, build_prefill, build_decode, target,
                        prompt_tokens: int = 1, route: str = "standard") -> GenerationEstimate:
    """Price a decoder's prefill over `prompt_tokens` and one decode token on `target`, as
    `generate` builds them for that chip (cache as state where its dialect has it). `weights`
    are shape-only (decoder.shape_only, stored as `quantize`); `build_prefill(arch, weights, seq,
    dtype, target)` and `build_decode(arch, weights, dtype, state, target)` are the decoder's
    graph builders (anekit.models.decoder, which imports this module)."""
    if isinstance(prompt_tokens, bool) or not isinstance(prompt_tokens, (int, np.integer)) \
            or not 1 <= prompt_tokens <= arch.seq_len:
        raise UsageError(f"prompt_tokens must be an integer from 1 to the context "
                         f"({arch.seq_len}), got {prompt_tokens!r}")
    chip = resolve_target(target)
    n = min(arch.seq_len, 1 << (int(prompt_tokens) - 1).bit_length())
    state = dialects.has_states(chip.dialect)
    prefill = estimate(build_prefill(arch, weights, n, "fp16", chip), chip, route=route)
    decode = estimate_decode(build_decode(arch, weights, "fp16", state, chip), chip, route=route)
    return GenerationEstimate(decode.target, quantize, int(prompt_tokens), n, prefill, decode)

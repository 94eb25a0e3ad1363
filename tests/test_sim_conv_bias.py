"""Where a conv or linear bias adds: after the accumulator rounds to fp16, in an fp16 add
(guide ch. 3 "fp16 datapath": the products accumulate in the wide register, then "an optional
per-channel scale and bias apply in fp16"; ch. 22: the bias is the gain-offset unit "applied
at engine output"). No published measurement separates this from a bias that joins the wide
sum; docs/coreml.md ("MobileNetV3") gives the evidence and this probe, which settles it on
hardware: the sum 2048 + 1 rounds to 2048 (half to even) before the bias -2048 gives 0;
added inside the wide sum the bias gives 1.
"""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.sim import Simulator

PROFILES = ["m1", "m2", "m3", "m4", "m5"]


def _probe(profile):
    x = ak.input("x", (1, 2, 1, 1))
    xl = ak.input("xl", (1, 2))
    bias = np.array([-2048.0], np.float16)
    prog = ak.program({"conv": ak.conv(x, np.ones((1, 2, 1, 1), np.float16), bias=bias),
                       "linear": ak.linear(xl, np.ones((1, 2), np.float16), bias)})
    out = Simulator(prog, profile=profile).run({"x": np.array([2048.0, 1.0], np.float32).reshape(1, 2, 1, 1),
                                                "xl": np.array([[2048.0, 1.0]], np.float32)})
    return float(out["conv"].ravel()[0]), float(out["linear"].ravel()[0])


@pytest.mark.parametrize("profile", PROFILES)
def test_bias_adds_after_the_accumulator_rounds(profile):
    assert _probe(profile) == (0.0, 0.0)


def test_exact_mode_adds_the_bias_to_the_unrounded_sum():
    """The control: float32 throughout keeps the 1 the chip profiles round away."""
    assert _probe("exact") == (1.0, 1.0)


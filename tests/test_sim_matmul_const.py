"""A matmul whose right operand is a constant keeps its prepared MAC operand between runs
(kernels/linalg.py): the outputs are those of the same matmul with that operand fed as an
input, bit for bit, on the lane route and the fast route, in every orientation."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak


@pytest.mark.parametrize("numerics", ["profile", "exact"])
@pytest.mark.parametrize("target", ["m1", "m4"])
@pytest.mark.parametrize("shape_w,transpose_y", [((32, 40), False), ((40, 32), True),     # lane route
                                                 ((32, 96), False), ((96, 32), True)])    # fast route
def test_constant_right_operand_matches_an_input(target, numerics, shape_w, transpose_y):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(shape_w) * 0.3).astype(np.float16).astype(np.float32)
    x = ak.input("x", (3, 17, 32))
    fed = ak.input("w", shape_w)
    const_prog = ak.program({"y": ak.matmul(x, w, transpose_y=transpose_y)})
    input_prog = ak.program({"y": ak.matmul(x, fed, transpose_y=transpose_y)})
    with ak.compile(const_prog, backend="sim", target=target, numerics=numerics) as const_run, \
            ak.compile(input_prog, backend="sim", target=target, numerics=numerics) as input_run:
        for seed in (1, 2):                        # the second run reuses the prepared operand
            xv = np.random.default_rng(seed).standard_normal((3, 17, 32)).astype(np.float32)
            got = np.asarray(const_run({"x": xv})["y"], np.float32)
            want = np.asarray(input_run({"x": xv, "w": w})["y"], np.float32)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_constant_right_operand_is_prepared_once(monkeypatch):
    from anekit.sim import mac
    made = []
    real = mac.Operand.__init__

    def counting(self, a, p, k_axis, const=False):
        made.append(const)
        real(self, a, p, k_axis, const)
    monkeypatch.setattr(mac.Operand, "__init__", counting)
    x = ak.input("x", (17, 32))
    w = np.full((32, 96), 0.25, np.float32)
    with ak.compile(ak.program({"y": ak.matmul(x, w)}), backend="sim", target="m1") as run:
        for _ in range(3):
            run({"x": np.ones((17, 32), np.float32)})
    assert made.count(True) == 1 and made.count(False) == 3      # the weight once, x per run

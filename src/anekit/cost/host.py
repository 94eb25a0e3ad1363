"""Host (CPU) time of the work a pipeline leaves off the engine, and the compile cost of
programs: what a training step or a decode token pays besides its engine programs.

    host_ms(flops=37.7e9, bytes=3.1e9, chip="m4")   # a matmul-bound and a stream-bound part
    compile_ms(kernels=60)                           # programs compiled (re-baked weights)

The CPU is priced as a roofline of its own, from the guide's measured CPU roof (ch. 9,
tbl:c9-perdevice, M5: 1898 GFLOP/s fp32 matmul, 130.4 GB/s stream; ch. 11: about 1.9 fp32
TFLOP/s on a saturated matmul on the M1 too). The matmul rate is that of one performance-core
cluster's matrix unit; parts with two clusters (Pro/Max, except the M3 Pro's single cluster) or
four (Ultra) run the host's sgemm on each (assumption: Apple's published core layouts). The
stream rate is the measured 130.4 GB/s per cluster, at most the measured share of the chip's
DRAM (130.4 of the M5's 153 GB/s). Nothing here is fitted to the training or decode figures it
is compared with (benchmarks/train_stories.py, decode_estimate.py).
"""
from __future__ import annotations

from .. import targets
from ..errors import AnekitError

G = "ANE guide (arXiv 2606.22283)"
CPU_GFLOPS = 1898.0      # fp32 matmul roof of one P-cluster's matrix unit (guide ch. 9, 11)
CPU_GBS = 130.4          # CPU stream roof (guide ch. 9, M5 measured)
CPU_DRAM_SHARE = 130.4 / 153.0   # the same, as a share of the M5's DRAM bandwidth
# Compiling one program on the direct route: maderix/ANE training README (M4): 72 kernels
# compiled in 7.6 s per restart, ~106 ms each; the ANE brief's 10-50 ms per kernel is for
# small kernels. Load ~2 ms (ANE brief §2).
COMPILE_MS = 7600.0 / 72
SOURCES = {"CPU_GFLOPS": f"{G} ch. 9 tbl:c9-perdevice (M5 CPU 1898 GFLOP/s), ch. 11 (~1.9 TFLOP/s)",
           "CPU_GBS": f"{G} ch. 9 tbl:c9-perdevice (M5 CPU 130.4 GB/s)",
           "COMPILE_MS": "maderix/ANE training/README.md: static pipeline, 72 kernels, 7.6 s compile per restart"}


def p_clusters(chip) -> int:
    """Performance-core clusters of a chip (assumption from Apple's core layouts: base parts
    one, Pro and Max two, the M3 Pro one, Ultra four)."""
    name = targets.get(chip).name
    if name.endswith("Ultra"):
        return 4
    if name.endswith(" Max") or (name.endswith(" Pro") and not name.startswith("M3")):
        return 2
    return 1


def host_ms(flops: float, bytes_: float, chip, clusters: int | None = None) -> float:
    """CPU time of `flops` of fp32 matmul work plus `bytes_` of streamed memory traffic, on the
    chip's performance clusters, or on `clusters` of them (1: work issued from one thread, whose
    Accelerate BLAS calls run on its own cluster's matrix unit)."""
    if flops < 0 or bytes_ < 0:
        raise AnekitError(f"host work must not be negative (flops {flops}, bytes {bytes_})")
    c = targets.get(chip)
    n = p_clusters(c)
    if clusters is not None:
        if not isinstance(clusters, int) or not 1 <= clusters <= n:
            raise AnekitError(f"clusters must be an integer from 1 to {n} on {c.name}, got {clusters!r}")
        n = clusters
    return flops / (n * CPU_GFLOPS * 1e6) + bytes_ / (stream_gbs(c, n) * 1e6)


def stream_gbs(chip, clusters: int) -> float:
    """GB/s the CPU streams from `clusters` performance clusters of a chip: the measured rate per
    cluster, at most the measured share of the chip's DRAM bandwidth (where the table has it)."""
    c = targets.get(chip)
    gbs = clusters * CPU_GBS
    if c.dram_gbs:
        gbs = min(gbs, CPU_DRAM_SHARE * c.dram_gbs)
    return gbs


def compile_ms(kernels: int) -> float:
    """Time to compile `kernels` programs on the direct route (per-compile cost above)."""
    if kernels < 0:
        raise AnekitError(f"kernels must not be negative, got {kernels}")
    return kernels * COMPILE_MS

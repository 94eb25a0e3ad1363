"""`anekit devices` (which backends can run here, and the chip) and `anekit selftest`
(the fixed ANE suite, compared with the simulator, as one JSON report)."""
from __future__ import annotations

import sys

from .._files import open_new, refuse_non_regular
from ..errors import UsageError
from ._table import format_table, to_json


def register(sub) -> None:
    p = sub.add_parser("devices", help="list the backends that can run here, and the chip",
                       description="Each backend (sim, ane, coreml) with whether it is available and why; "
                                   "on a Mac also the chip and its anekit target.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_devices)

    s = sub.add_parser("selftest", help="run the fixed ANE suite and compare it with the simulator",
                       description="Single ops, a transformer block and a 128-deep 1x1 conv chain, run on the "
                                   "Neural Engine (through FakeTransport where there is none) and on the "
                                   "simulator; reports the largest difference and latency percentiles.")
    s.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    s.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE")
    s.add_argument("--target", "-t", default=None, help="chip to simulate against (default: this Mac's chip, "
                                                         "or m4 with the fake transport)")
    s.add_argument("--iterations", type=int, default=None, help="timed runs per case (default 100 on the ANE, 3 fake)")
    s.add_argument("--quick", action="store_true", help="smaller transformer block and conv chain")
    s.add_argument("--fake", action="store_true", help="use FakeTransport even where the ANE is available")
    s.set_defaults(func=cmd_selftest)


def device_report() -> dict:
    from ..runtime import devices
    from ..runtime.ane import machine
    brand = machine.chip_brand()
    return {"backends": devices(), "chip": brand, "target": machine.chip_target(brand) if brand else None,
            "os": machine.os_version()}


def cmd_devices(args) -> int:
    rep = device_report()
    if args.json:
        print(to_json(rep))
        return 0
    print(format_table(["backend", "available", "reason"],
                       [[b["backend"], "yes" if b["available"] else "no", b["reason"]] for b in rep["backends"]]))
    if rep["chip"]:
        print(f"\nchip: {rep['chip']} (anekit target {rep['target'] or 'unknown'}), {rep['os']}")
    else:
        print(f"\nchip: no Apple chip detected ({rep['os']})")
    return 0


def cmd_selftest(args) -> int:
    from ..runtime.ane import selftest
    if args.iterations is not None and args.iterations < 1:
        raise UsageError(f"--iterations must be at least 1, got {args.iterations}")
    if args.out:
        refuse_non_regular(args.out, UsageError)     # before the suite runs, not after
    report = selftest.run(target=args.target, iterations=args.iterations, quick=args.quick,
                          force_fake=args.fake, progress=lambda line: print(line, file=sys.stderr, flush=True))
    text = to_json(report)
    if args.out:     # a regular file only: a FIFO would block, a device swallow the report
        with open_new(args.out, UsageError) as f:
            f.write((text + "\n").encode("utf-8"))
    if args.json:
        print(text)
    else:
        rows = [[r["name"], "ok" if r["ok"] else "FAILED", r.get("max_abs_diff", ""),
                 r.get("latency_ms", {}).get("p50", ""), r.get("latency_ms", {}).get("p99", "")]
                for r in report["cases"]]
        print(format_table(["case", "status", "max |ane - sim|", "p50 ms", "p99 ms"], rows,
                           title=f"selftest on {report['target']} through the {report['transport']} transport "
                                 f"({report['os']})"))
        print(report["note"])
        if args.out:
            print(f"report written to {args.out}")
    return 0 if not report["summary"]["failed"] else 1

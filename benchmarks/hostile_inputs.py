"""Cost of hostile-shaped inputs, as ratios against the benign version of the same input.

    python benchmarks/hostile_inputs.py [--ops N]

- N ops that all carry one name (each generating a const `a_y`) against N uniquely named
  ops: the name bookkeeping is linear, so the ratio stays near 1 as N grows (issue 16);
- a MIL string literal of N characters against an identifier of N characters: the lexer's
  memory per character of the literal (tracemalloc peak / N).
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import anekit as ak
from anekit.mil.lexer import Source, tokenize


def program_text(n: int, same_name: bool) -> str:
    lines = ["program(1.3)", "{", "    func main<ios18>(tensor<fp16, [1, 4]> x) {"]
    prev = "x"
    for i in range(n):
        name = "a" if same_name else f"a{i}"
        lines.append(f'        tensor<fp16, [1, 4]> v{i} = add(x = {prev}, y = fp16(1.0))[name = string("{name}")];')
        prev = f"v{i}"
    return "\n".join(lines + [f"    }} -> ({prev});", "}"])


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=100_000)
    n = ap.parse_args().ops
    for size in (n // 10, n):
        dup, uniq = program_text(size, True), program_text(size, False)
        t_dup, t_uniq = seconds(lambda: ak.mil.parse(dup)), seconds(lambda: ak.mil.parse(uniq))
        print(f"{size:>7} ops: one shared name {t_dup:6.2f} s, unique names {t_uniq:6.2f} s, ratio {t_dup / t_uniq:.2f}")
    text = '"' + "ab\\n" * (n * 10 // 4) + '"'
    tracemalloc.start()
    tokenize(Source(text))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"string literal of {len(text)} chars: lexer peak {peak / len(text):.2f} bytes per character")


if __name__ == "__main__":
    main()

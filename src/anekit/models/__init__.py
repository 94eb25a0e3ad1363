"""Reference model builders used by the demo, the benchmarks and the tests."""
from . import llama2c, stories, tokenizer

__all__ = ["llama2c", "stories", "tokenizer"]

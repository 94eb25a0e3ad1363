"""Reference model builders used by the demo, the benchmarks and the tests."""
from . import hf, llama2c, stories, tokenizer

__all__ = ["hf", "llama2c", "stories", "tokenizer"]

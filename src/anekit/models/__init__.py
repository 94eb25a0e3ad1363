"""Reference model builders used by the demo, the benchmarks and the tests."""
from . import stories

__all__ = ["stories"]

"""Entry point of the worker subprocess: `python -m anekit.runtime.ane.worker_main`.

Kept apart from anekit.runtime.ane.worker (which the package imports) so that runpy executes
a module nobody has imported yet."""
import sys

from anekit.runtime.ane.worker import main

if __name__ == "__main__":
    sys.exit(main())

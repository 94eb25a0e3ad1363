"""`python -m anekit.importers` prints the supported-op tables of docs/importers.md."""
from ._doc import ops_markdown

print(ops_markdown(), end="")

"""Every error anekit raises derives from AnekitError, so a caller can catch one class.

Subclasses also derive from the closest builtin (ValueError, OSError, ...) so code
written against plain Python conventions keeps working.
"""
from __future__ import annotations


class AnekitError(Exception):
    """Base class of every error anekit raises."""


class ShapeError(AnekitError, ValueError):
    """An op got arguments whose shapes or values it cannot accept (names the op)."""


class DTypeError(AnekitError, TypeError):
    """An op got an argument of a dtype it does not accept (names the op)."""


class UnknownOpError(AnekitError, KeyError):
    """An op name that no declaration in anekit.ir.ops defines."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MILParseError(AnekitError, ValueError):
    """Malformed MIL text; carries the 1-based line and column and a caret excerpt."""

    def __init__(self, message: str, line: int = 0, column: int = 0, source: str | None = None, path: str | None = None):
        self.message, self.line, self.column, self.path = message, line, column, path
        self.excerpt = ""
        if source is not None and line > 0:
            # Lines end at "\n" only, as the lexer counts them: splitlines() would also break
            # at \v, \f, \x1c-\x1e, \x85, \u2028 and \u2029 and point at the wrong line.
            lines = source.split("\n")
            if line <= len(lines):
                text = lines[line - 1].rstrip("\r")
                self.excerpt = text + "\n" + " " * max(column - 1, 0) + "^"
        where = f"{path}:" if path else ""
        full = f"{where}{line}:{column}: {message}" if line else f"{where}{message}"
        if self.excerpt:
            full += "\n" + self.excerpt
        super().__init__(full)


class WeightFileError(AnekitError, ValueError):
    """A corrupt or inconsistent weight.bin: bad sentinel, dtype, offset or size."""


class PathEscapeError(AnekitError, PermissionError):
    """A weight or package path that would leave its model folder."""


class ModelFormatError(AnekitError, ValueError):
    """A model folder, .mlpackage or .mlmodelc that is missing pieces or is malformed."""


class HwxFormatError(AnekitError, ValueError):
    """A .hwx file that is truncated, malformed or claims more bytes than it has."""


class TargetError(AnekitError, KeyError):
    """An unknown chip or compiler target name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class BackendUnavailableError(AnekitError, RuntimeError):
    """The requested backend cannot run on this machine; the message says why."""


class ANECompileError(AnekitError, RuntimeError):
    """The ANE framework refused to compile or load a program (carries its error text)."""


class ANEExecutionError(AnekitError, RuntimeError):
    """The ANE framework failed to evaluate a loaded program."""


class UnsupportedOpError(AnekitError, NotImplementedError):
    """A backend (e.g. the simulator) cannot execute an op; names the op and its position."""


class CheckpointError(AnekitError, ValueError):
    """A corrupt or incompatible training checkpoint."""


class HwxFieldError(AnekitError, ValueError):
    """A task-descriptor edit naming a field the register table lacks, a register the
    descriptor never writes, or a value that does not fit the field's width."""


class MILEmitError(AnekitError, ValueError):
    """A program that cannot be written as MIL text: an unknown dialect, a name that is not a
    MIL identifier, a tensor used before it is defined, a value MIL has no literal for."""


class DependencyError(AnekitError, ImportError):
    """An optional dependency is missing (e.g. coremltools for .mlpackage); names what to install."""


class TransportError(AnekitError, RuntimeError):
    """The Objective-C bridge to the ANE framework failed: a library or class that does not
    load, an unknown argument type, or a protocol violation caught by FakeTransport
    (a message to a released object, a write to an unlocked surface)."""


class UsageError(AnekitError, ValueError):
    """An API or command called with arguments it cannot take (a wrong type, an unknown
    option, an inconsistent combination); names the argument."""


class GradientError(AnekitError, ValueError):
    """Reverse-mode differentiation met an op with no gradient rule, or a bad loss or seed
    (the message names the op and its path from the loss)."""


class TrainingError(AnekitError, RuntimeError):
    """Training cannot go on: a non-finite loss (the message names the step) or a step that
    failed; the last checkpoint is left as it was."""


class ModelImportError(AnekitError, ValueError):
    """A PyTorch or ONNX model that an importer cannot turn into an anekit program; names the
    source op and, where the source records it, the line of model code that made it."""


class UnmappedOpError(ModelImportError, NotImplementedError):
    """A source op (ATen or ONNX) that no importer rule maps to anekit ops. `.op` is the source
    op's name, `.source` the model line that produced it (or "")."""

    def __init__(self, message: str, op: str = "", source: str = ""):
        super().__init__(message)
        self.op, self.source = op, source

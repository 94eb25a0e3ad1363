"""Tokenizer for MIL text: identifiers, numbers (decimal and hex floats), strings, punctuation.

Whitespace of any kind and comments (`// ...` to end of line, `/* ... */`) are skipped.
Tokens keep their character offset; line and column are computed only when an error needs
them, so tokenizing a large program stays a single regex pass.
"""
from __future__ import annotations

import bisect
import re
from typing import NamedTuple

from ..errors import MILEmitError, MILParseError

IDENT, INT, FLOAT, STRING, PUNCT, EOF = "identifier", "integer", "number", "string", "punctuation", "end of input"

# Longest integer literal accepted: Python refuses int() of very long digit strings, and no
# MIL value needs more than uint64's 20 digits.
MAX_INT_DIGITS = 40

# A string literal is scanned by _string_end, not by this regex: a repeated alternation
# costs the regex engine ~330 bytes of backtracking state per character of the literal.
_TOKEN = re.compile(r"""
    (?P<skip>[ \t\r\n\f\v]+ | //[^\n]*)
  | (?P<block>/\*)
  | (?P<hex>0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+)
  | (?P<float>(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
  | (?P<int>[0-9]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>")
  | (?P<punct>->|[()\[\]{}<>,=;:?+\-])
""", re.VERBOSE)


class Token(NamedTuple):
    kind: str
    text: str
    pos: int      # character offset in the source


class Source:
    """MIL text plus the line index used to turn offsets into (line, column)."""

    def __init__(self, text: str, path: str | None = None):
        self.text, self.path = text, path
        self._line_starts: list[int] | None = None

    def location(self, pos: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        if self._line_starts is None:
            self._line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_right(self._line_starts, pos)
        return line, pos - self._line_starts[line - 1] + 1

    def error(self, message: str, pos: int) -> MILParseError:
        line, column = self.location(pos)
        return MILParseError(message, line, column, self.text, self.path)


def tokenize(source: Source) -> list[Token]:
    """All tokens of the source, ending with an EOF token; MILParseError on a bad character,
    an unterminated string or comment, or an over-long integer."""
    text = source.text
    tokens: list[Token] = []
    pos, end = 0, len(text)
    match = _TOKEN.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == '"':
                raise source.error("unterminated string literal", pos)
            raise source.error(f"unexpected character {ch!r}", pos)
        kind = m.lastgroup
        if kind == "string":
            close = _string_end(text, pos)
            if close < 0:
                raise source.error("unterminated string literal", pos)
            tokens.append(Token(STRING, text[pos:close], pos))
            pos = close
            continue
        if kind == "block":
            close = text.find("*/", m.end())
            if close < 0:
                raise source.error("unterminated /* comment", pos)
            pos = close + 2
            continue
        if kind != "skip":
            value = m.group()
            if kind == "int":
                if len(value) > MAX_INT_DIGITS:
                    raise source.error(f"integer literal with {len(value)} digits is too long", pos)
                kind = INT
            elif kind in ("hex", "float"):
                kind = FLOAT
            elif kind == "ident":
                kind = IDENT
            else:
                kind = PUNCT
            tokens.append(Token(kind, value, pos))
        pos = m.end()
    tokens.append(Token(EOF, "", end))
    return tokens


_STRING_STOP = re.compile(r'["\\\n]')


def _string_end(text: str, pos: int) -> int:
    """Offset just past the string literal opening at `pos` ("..." with backslash escapes,
    on one line), or -1 when it is not closed; constant memory, one pass."""
    i, end = pos + 1, len(text)
    search = _STRING_STOP.search
    while True:
        m = search(text, i)
        if m is None:
            return -1
        ch = m.group()
        if ch == '"':
            return m.end()
        if ch == "\n" or m.end() >= end or text[m.end()] == "\n":
            return -1
        i = m.end() + 1          # skip the escaped character


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0"}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)")


def unquote(source: Source, token: Token) -> str:
    """The value of a string token: C-style escapes \\n \\t \\r \\" \\\\ \\0 and \\xHH."""
    body = token.text[1:-1]
    if "\\" not in body:
        return body

    def replace(m: re.Match) -> str:
        code = m.group(1)
        if code in _ESCAPES:
            return _ESCAPES[code]
        if code[0] == "x" and len(code) == 3:
            return chr(int(code[1:], 16))
        raise source.error(f"unknown escape sequence '\\{code}' in string", token.pos + 1 + m.start())

    return _ESCAPE_RE.sub(replace, body)


def quote(value: str) -> str:
    """A MIL string literal for value (the inverse of unquote); MILEmitError for a string
    UTF-8 cannot encode (a lone surrogate), which no MIL file could hold."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise MILEmitError(f"string {value!r} holds {value[e.start]!r} at index {e.start}, a lone "
                               f"surrogate that UTF-8 (MIL text) cannot encode") from None
    out = ['"']
    for ch in value:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)

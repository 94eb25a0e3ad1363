"""llama2.c's `tokenizer.bin` and its BPE, with run.c's exact encode / decode semantics.

File layout (run.c `build_tokenizer`): int32 max_token_length, then per piece a float32 score,
an int32 byte length and the piece's bytes. The file does not store its vocabulary size; run.c
takes it from the model, we read to the end and check it against the model instead.

Encoding as run.c's `encode`: optional BOS (1), a dummy-prefix " " piece when the text is not
empty, one piece per UTF-8 code point (byte fallback to ids byte + 3 when the code point has no
piece), then repeatedly merge the adjacent pair whose concatenation is a piece with the highest
score (first such pair on ties), optional EOS (2).
"""
from __future__ import annotations

import os
import re
import struct

import numpy as np

from .._files import read_regular
from ..errors import ModelFormatError, UsageError

BOS, EOS = 1, 2
_BYTE_PIECE = re.compile(rb"^<0x([0-9A-Fa-f]{1,2})")
_MAX_PIECE = 1 << 16          # longer pieces are a corrupt file, not a tokenizer
_MAX_FILE = 256 << 20         # llama2.c's tokenizer.bin is 424 kB; a 128k vocabulary a few MB


class Tokenizer:
    """Pieces (bytes) with merge scores; `encode(text)` -> ids, `decode(prev, id)` -> bytes."""

    def __init__(self, pieces: list[bytes], scores, max_token_length: int | None = None):
        if len(pieces) != len(scores):
            raise ModelFormatError(f"tokenizer: {len(pieces)} pieces but {len(scores)} scores")
        self.pieces = [bytes(p) for p in pieces]
        self.scores = np.asarray(scores, dtype=np.float32)
        self.max_token_length = max_token_length or max((len(p) for p in self.pieces), default=1)
        self._index: dict[bytes, int] = {}
        for i, p in enumerate(self.pieces):
            self._index.setdefault(p, i)

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def __len__(self) -> int:
        return len(self.pieces)

    # --- file ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path) -> "Tokenizer":
        data = read_regular(path, ModelFormatError, "tokenizer", _MAX_FILE)    # no FIFO, device or folder
        if len(data) < 4:
            raise ModelFormatError(f"tokenizer '{path}': {len(data)} bytes, too short for the header")
        (max_len,) = struct.unpack_from("<i", data, 0)
        if not 0 < max_len <= _MAX_PIECE:
            raise ModelFormatError(f"tokenizer '{path}': max_token_length {max_len} is not a tokenizer's")
        pieces, scores, off = [], [], 4
        while off < len(data):
            if off + 8 > len(data):
                raise ModelFormatError(f"tokenizer '{path}': truncated in piece {len(pieces)} header")
            score, n = struct.unpack_from("<fi", data, off)
            off += 8
            if not 0 <= n <= _MAX_PIECE or off + n > len(data):
                raise ModelFormatError(f"tokenizer '{path}': piece {len(pieces)} claims {n} bytes "
                                       f"with {len(data) - off} left (truncated or not a tokenizer.bin)")
            pieces.append(data[off:off + n])
            scores.append(score)
            off += n
        if not pieces:
            raise ModelFormatError(f"tokenizer '{path}': no pieces")
        return cls(pieces, scores, max_len)

    def save(self, path) -> None:
        with open(path, "wb") as f:
            f.write(struct.pack("<i", self.max_token_length))
            for p, s in zip(self.pieces, self.scores):
                f.write(struct.pack("<fi", float(s), len(p)) + p)

    def check_vocab(self, vocab_size: int) -> None:
        """A tokenizer drives a model only when both have the same number of pieces."""
        if vocab_size != self.vocab_size:
            raise ModelFormatError(f"the tokenizer has {self.vocab_size} pieces but the model's vocabulary "
                                   f"is {vocab_size}: they do not belong together")

    # --- encode / decode -----------------------------------------------------------------

    def lookup(self, piece: bytes) -> int:
        return self._index.get(piece, -1)

    def encode(self, text: str | bytes, bos: bool = True, eos: bool = False) -> list[int]:
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        tokens = [BOS] if bos else []
        if raw:
            space = self.lookup(b" ")
            tokens.append(space if space != -1 else self._byte_id(0x20))
        # One piece per code point; run.c restarts on every non-continuation byte and takes at
        # most 4 bytes into a code point.
        buf = bytearray()
        for i, c in enumerate(raw):
            if c & 0xC0 != 0x80:
                buf.clear()
            buf.append(c)
            nxt = raw[i + 1] if i + 1 < len(raw) else 0
            if nxt & 0xC0 == 0x80 and len(buf) < 4:
                continue
            pid = self.lookup(bytes(buf))
            tokens.extend([pid] if pid != -1 else [self._byte_id(b) for b in buf])
            buf.clear()
        # Greedy merges by score, the leftmost best pair first (run.c's strict `>`).
        while True:
            best_score, best_id, best_idx = np.float32(-1e10), -1, -1
            for i in range(len(tokens) - 1):
                pid = self.lookup(self.pieces[tokens[i]] + self.pieces[tokens[i + 1]])
                if pid != -1 and self.scores[pid] > best_score:
                    best_score, best_id, best_idx = self.scores[pid], pid, i
            if best_idx == -1:
                break
            tokens[best_idx:best_idx + 2] = [best_id]
        if eos:
            tokens.append(EOS)
        return tokens

    def _byte_id(self, b: int) -> int:
        # Byte fallback: pieces 3..258 are <0x00>..<0xFF> after <unk>, <s>, </s>.
        if b + 3 >= self.vocab_size:
            raise ModelFormatError(f"tokenizer: byte {b:#04x} has no piece (vocabulary of {self.vocab_size})")
        return b + 3

    def decode(self, prev: int, token: int) -> bytes:
        """The bytes `token` stands for after `prev` (run.c `decode`): the leading space of a
        piece after BOS is dropped and byte pieces `<0xXX>` become the byte."""
        if not 0 <= token < self.vocab_size:
            raise UsageError(f"token id {token} is outside the vocabulary (0..{self.vocab_size - 1})")
        piece = self.pieces[token]
        if prev == BOS and piece[:1] == b" ":
            piece = piece[1:]
        m = _BYTE_PIECE.match(piece)
        return bytes([int(m.group(1), 16)]) if m else piece

    def decode_all(self, tokens, prev: int = BOS) -> bytes:
        out = []
        for t in tokens:
            out.append(self.decode(prev, t))
            prev = t
        return b"".join(out)


def printable(piece: bytes) -> bytes:
    """run.c's `safe_printf`: a lone byte that is neither printable nor whitespace is dropped."""
    if len(piece) == 1 and not (32 <= piece[0] < 127 or piece[0] in b" \t\n\v\f\r"):
        return b""
    return piece


def load(path) -> Tokenizer:
    if not os.path.exists(path):
        raise ModelFormatError(f"tokenizer '{path}' does not exist")
    return Tokenizer.load(path)

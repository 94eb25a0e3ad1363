"""Text for training a Stories model offline: a seeded procedural story corpus, a byte-level
tokenizer, and next-token windows chosen by step (so a resumed run sees the same batches)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import UsageError
from ...models.tokenizer import Tokenizer

NAMES = ["Lily", "Tom", "Mia", "Ben", "Sue", "Max", "Anna", "Sam"]
ANIMALS = ["cat", "dog", "bird", "frog", "bunny", "duck"]
PLACES = ["park", "garden", "forest", "house", "pond", "yard"]
THINGS = ["ball", "box", "flower", "hat", "toy", "kite", "stone"]
COLORS = ["red", "blue", "big", "small", "shiny", "green"]
FEELINGS = ["happy", "sad", "excited", "sleepy", "scared"]
VERBS = ["play", "run", "jump", "sing", "dance", "read"]


def story(rng: np.random.Generator) -> str:
    """One short story from a handful of templates over a small vocabulary."""
    def pick(xs):
        return xs[int(rng.integers(len(xs)))]
    name, friend = pick(NAMES), pick(NAMES)
    animal, place, thing, color = pick(ANIMALS), pick(PLACES), pick(THINGS), pick(COLORS)
    lines = [f"Once upon a time, there was a little {animal} named {name}.",
             f"{name} liked to {pick(VERBS)} in the {place}.",
             f"One day, {name} found a {color} {thing}.",
             f"{name} was very {pick(FEELINGS)}.",
             f"{name} showed the {thing} to {friend}.",
             f"They played with the {thing} all day.",
             "The end."]
    if rng.random() < 0.5:
        lines.insert(4, f"{name} said, \"I love my {color} {thing}!\"")
    return " ".join(lines)


def procedural_corpus(n_stories: int = 2000, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(story(rng) for _ in range(n_stories)) + "\n"


def byte_tokenizer() -> Tokenizer:
    """llama2.c's special pieces (<unk>, <s>, </s>) and the 256 byte pieces: vocabulary 259,
    encode falls back to bytes everywhere, and run.c reads it like any tokenizer.bin."""
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    return Tokenizer(pieces, np.zeros(len(pieces), np.float32))


def encode(tok: Tokenizer, text: str, max_bytes: int = 1 << 20) -> np.ndarray:
    """Token ids of `text` (at most `max_bytes` of it, line by line: run.c's BPE is quadratic
    in the length of what it encodes), each line starting with BOS."""
    ids: list[int] = []
    used = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        ids.extend(tok.encode(line, bos=True))
        used += len(line)
        if used >= max_bytes:
            break
    return np.asarray(ids, np.int32)


def read_text(path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UsageError(f"--data '{path}': cannot read ({e.strerror or e})") from None


class Windows:
    """Next-token windows: step t reads tokens[i:i+seq] and its shift, i drawn from (seed, t)."""

    def __init__(self, ids: np.ndarray, seq_len: int, seed: int = 0):
        if len(ids) < seq_len + 2:
            raise UsageError(f"the training text has {len(ids)} tokens; a window of seq_len {seq_len} "
                             f"needs at least {seq_len + 2}")
        self.ids, self.seq_len, self.seed = ids, seq_len, seed

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        i = int(np.random.default_rng((self.seed, step)).integers(0, len(self.ids) - self.seq_len - 1))
        return self.ids[i:i + self.seq_len], self.ids[i + 1:i + self.seq_len + 1]

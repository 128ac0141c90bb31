"""F5-TTS's character/pinyin vocabulary (``vocab.txt``, shipped beside its weights; 2545 entries for
``F5TTS_v1_Base``) and the text -> ids mapping F5 uses for English.

``vocab.txt`` holds one symbol per line; the id is the line number from 0, and only the line break is removed,
so the first line of F5's file, a single space, is a real symbol (id 0). Characters missing from the vocabulary
map to id 0, as in F5. English text is mapped one character per id after F5's punctuation folding (``;`` to
``,``, curly quotes to straight ones). Not reproduced: F5 segments mixed Chinese/Latin text with jieba,
converts Chinese to pinyin, and inserts a space before a Latin word glued to preceding punctuation
(``"a,b"`` -> ``"a, b"``); write a space after punctuation and English text maps identically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from tts.errors import CheckpointError, TextError

UNKNOWN_ID = 0
PAD_ID = -1
"""Batch padding id; the DiT's text embedding shifts ids by +1, turning it into the filler 0."""

_PUNCTUATION_FOLDING = str.maketrans({";": ",", "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


class F5Vocab:
    """An immutable symbol -> id table read from F5's ``vocab.txt``.

    Args:
        symbols: the symbols in id order.
    """

    def __init__(self, symbols: Sequence[str]) -> None:
        if not symbols:
            raise CheckpointError("an F5 vocabulary needs at least one symbol")
        self.symbols: tuple[str, ...] = tuple(symbols)
        # A symbol listed twice keeps its last id, as F5's dict-building loader does.
        self._ids = {symbol: index for index, symbol in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "F5Vocab":
        """Read ``vocab.txt`` (UTF-8, one symbol per line; only the line break is stripped)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path}: cannot read the F5 vocabulary ({error})") from error
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the file's final line break
        return cls([line.removesuffix("\r") for line in lines])

    @classmethod
    def from_published(
        cls,
        path_or_hub_id: str | os.PathLike = "SWivid/F5-TTS",
        filename: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
    ) -> "F5Vocab":
        """The vocabulary shipped with the published weights (default ``F5TTS_v1_Base/vocab.txt``); `path_or_hub_id`
        is the file, a folder holding it, or a hub id (see `tts.dit.published.resolve_published_file`)."""
        from tts.dit.published import DEFAULT_VOCAB, resolve_published_file

        return cls.from_file(resolve_published_file(path_or_hub_id, filename or DEFAULT_VOCAB, revision, local_files_only))

    def check_fits(self, text_num_embeds: int) -> None:
        """Raise unless this vocabulary is the size the model was trained with (``DiTConfig.text_num_embeds``)."""
        if len(self) != text_num_embeds:
            raise CheckpointError(
                f"the vocabulary has {len(self)} symbols but the model expects {text_num_embeds}; "
                "use the vocab.txt shipped with these weights"
            )

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, one per character after F5's punctuation folding (unknown characters -> 0)."""
        if not text:
            raise TextError("no text to encode")
        return [self._ids.get(char, UNKNOWN_ID) for char in text.translate(_PUNCTUATION_FOLDING)]

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """``(B, Nt)`` long ids of `texts`, padded with -1 (the DiT's filler after its +1 shift)."""
        if not texts:
            raise TextError("no texts to encode")
        encoded = [self.encode(text) for text in texts]
        width = max(len(ids) for ids in encoded)
        batch = torch.full((len(encoded), width), PAD_ID, dtype=torch.long)
        for row, ids in enumerate(encoded):
            batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return batch

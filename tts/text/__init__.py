"""The text front end: normalization, chunking, grapheme-to-phoneme and the phoneme table.

    text --normalize_text--> spoken words --phonemize--> [Word] --PHONEME_TABLE.encode--> ids

Engines call `prepare_text` for one chunk and `split_for_synthesis` for a long input. Importing this
package starts nothing: espeak-ng starts at the first `phonemize`, the phoneme table is read at its
first use.
"""

from tts.text.chunking import chunk_text
from tts.text.frontend import MAX_TEXT_CHARS, TextInput, prepare_text, split_for_synthesis, validate_text
from tts.text.g2p import Lexicon, phonemize
from tts.text.normalize import normalize_text
from tts.text.phonemes import PHONEME_TABLE, PhonemeTable, Word

__all__ = [
    "MAX_TEXT_CHARS",
    "PHONEME_TABLE",
    "Lexicon",
    "PhonemeTable",
    "TextInput",
    "Word",
    "chunk_text",
    "normalize_text",
    "phonemize",
    "prepare_text",
    "split_for_synthesis",
    "validate_text",
]

"""The speech tokenizer: mel -> discrete content tokens at 31.25 Hz, and forced alignment from its CTC heads.

- `tts.tokenizer.model`: `SpeechTokenizerConfig`, `SpeechTokenizer` (``encode``, ``tokenize``,
  ``tokens_to_embeddings``, ``ctc_logits``), `FiniteScalarQuantizer`.
- `tts.tokenizer.align`: ``align(audio, text, model) -> list[WordTiming]`` (import it from there), `ctc_viterbi`.
- `tts.tokenizer.metrics`: codebook usage, phoneme error rate from tokens, speaker leakage.
- `tts.tokenizer.train`: the `accelerate` training recipe (``python -m tts.tokenizer.train``).
- `tts.tokenizer.cli`: ``timbre align``.
"""

from __future__ import annotations

# The function `align` is not re-exported here: it would hide the module `tts.tokenizer.align` of the same name.
from tts.tokenizer.align import PhonemeTiming, WordTiming
from tts.tokenizer.model import FiniteScalarQuantizer, SpeechTokenizer, SpeechTokenizerConfig

__all__ = [
    "FiniteScalarQuantizer",
    "PhonemeTiming",
    "SpeechTokenizer",
    "SpeechTokenizerConfig",
    "WordTiming",
]

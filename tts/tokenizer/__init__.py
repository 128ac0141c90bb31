"""The speech tokenizer: mel -> discrete content tokens at 31.25 Hz, and forced alignment from its CTC head.

- `tts.tokenizer.model`: `SpeechTokenizerConfig`, `SpeechTokenizer` (``encode``, ``tokenize``,
  ``tokens_to_embeddings``, ``ctc_logits``), `FiniteScalarQuantizer`.
- `tts.tokenizer.align`: `align(audio, text, model) -> list[WordTiming]`, `ctc_viterbi`.
- `tts.tokenizer.metrics`: codebook usage, phoneme error rate from tokens, speaker leakage.
- `tts.tokenizer.train`: the `accelerate` training recipe (``python -m tts.tokenizer.train``).
- `tts.tokenizer.cli`: ``timbre align``.
"""

from __future__ import annotations

from tts.tokenizer.align import PhonemeTiming, WordTiming, align, ctc_viterbi
from tts.tokenizer.model import FiniteScalarQuantizer, SpeechTokenizer, SpeechTokenizerConfig

__all__ = [
    "FiniteScalarQuantizer",
    "PhonemeTiming",
    "SpeechTokenizer",
    "SpeechTokenizerConfig",
    "WordTiming",
    "align",
    "ctc_viterbi",
]

"""The studio's vocoder: studio log-mel -> 24 kHz waveform.

- `Vocos` / `VocosConfig` (`vocoder.vocos`): the Vocos architecture; loads studio checkpoints and the published
  ``charactr/vocos-mel-24khz`` weights (`Vocos.from_published`).
- `VocosStreamer` / `stream` (`vocoder.streaming`): chunked decoding equal to full decoding.
- `griffin_lim` (`vocoder.griffin_lim`): the no-weights baseline.
- ``python -m vocoder.train``: the training recipe (accelerate); ``timbre vocode``: copy synthesis.
"""

from vocoder.griffin_lim import griffin_lim, griffin_lim_decode
from vocoder.streaming import VocosStreamer, stream, streaming_lookahead
from vocoder.vocos import Vocos, VocosConfig

__all__ = [
    "Vocos",
    "VocosConfig",
    "VocosStreamer",
    "stream",
    "streaming_lookahead",
    "griffin_lim",
    "griffin_lim_decode",
]

"""The causal flow refiner: speech tokens + a voice prompt + a style -> mel, streaming chunk by chunk.

- `tts.refiner.model`: `FlowRefinerConfig`, `FlowRefiner` (DiT estimator, chunk-causal attention), the mask.
- `tts.refiner.sampling`: `generate` (whole utterance) and `generate_stream` (mel chunks as they are final).
- `tts.refiner.data`: the feature cache (tokens + mels per corpus item) and training batches.
- `tts.refiner.train`: the `accelerate` training recipe (``python -m tts.refiner.train``).
"""

from __future__ import annotations

from tts.refiner.model import FlowRefiner, FlowRefinerConfig
from tts.refiner.sampling import generate, generate_stream

__all__ = ["FlowRefiner", "FlowRefinerConfig", "generate", "generate_stream"]

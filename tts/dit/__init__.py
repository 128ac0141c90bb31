"""The DiT editor: an F5-TTS-style flow-matching transformer over mels (`DiT`), its sampler, and loading of the
published F5-TTS weights and vocabulary.

- `tts.dit.model`: `DiTConfig` (defaults = F5-TTS ``F5TTS_v1_Base``), `DiT`, `F5_MEL`.
- `tts.dit.sampling`: `sample` (zero-shot continuation and infilling), `sway_timesteps`, `guided_velocity`.
- `tts.dit.published`: `convert_published_state_dict`, `resolve_published_file`.
- `tts.dit.vocab`: `F5Vocab`.
"""

from __future__ import annotations

from tts.dit.model import F5_MEL, DiT, DiTConfig
from tts.dit.published import convert_published_state_dict
from tts.dit.sampling import sample, sway_timesteps
from tts.dit.vocab import F5Vocab

__all__ = ["DiT", "DiTConfig", "F5_MEL", "F5Vocab", "convert_published_state_dict", "sample", "sway_timesteps"]

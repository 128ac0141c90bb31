"""The speech-token language model (stage 1 of the `ar` engine): text + voice prompt -> speech tokens."""

from tts.lm.model import SpeechTokenLM, SpeechTokenLMConfig

__all__ = ["SpeechTokenLM", "SpeechTokenLMConfig"]

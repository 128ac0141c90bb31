"""The studio's data: the offline base speakers (Kokoro, Piper, flite, festival, espeak-ng) re-exported
here from `tts.data.speakers`, and the corpus modules beside them.

    from tts.data import synthesize_voice_id, list_speakers
    out = synthesize_voice_id("kokoro:jf_alpha", "Hello there.", speed=1.1)
    out.audio.save("hello.wav")

Importing this package loads no model; engines load on first use.
"""

from tts.data.speakers import (
    MAX_SPEED,
    MIN_SPEED,
    SPEAKER_NAMES,
    BaseSpeaker,
    SpeakerOutput,
    all_voice_ids,
    check_speed,
    format_voice_id,
    get_speaker,
    list_speakers,
    parse_voice_id,
    speaker_status,
    synthesize_voice_id,
)

__all__ = [
    "MAX_SPEED",
    "MIN_SPEED",
    "SPEAKER_NAMES",
    "BaseSpeaker",
    "SpeakerOutput",
    "all_voice_ids",
    "check_speed",
    "format_voice_id",
    "get_speaker",
    "list_speakers",
    "parse_voice_id",
    "speaker_status",
    "synthesize_voice_id",
]

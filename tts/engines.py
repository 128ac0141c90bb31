"""Which synthesis engines exist in this install, and why an engine is unavailable.

An engine is available when every checkpoint it needs is shipped (and verifies) or was given explicitly.
The studio and `timbre doctor` show this table, so a user never meets a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

from tts.checkpoints import checkpoints_dir, list_shipped, verify_shipped
from tts.errors import CheckpointError


@dataclass(frozen=True)
class EngineSpec:
    """A synthesis engine and the shipped checkpoints it needs."""

    name: str
    description: str
    checkpoints: tuple[str, ...]


ENGINES: tuple[EngineSpec, ...] = (
    EngineSpec(
        "ar",
        "Seed-TTS path: text -> speech-token LM -> causal flow refiner -> vocoder (zero-shot cloning, streaming)",
        ("speech_tokenizer", "token_lm", "flow_refiner", "vocoder"),
    ),
    EngineSpec(
        "dit",
        "Seed-TTS DiT path: text + total duration -> DiT flow model over mels -> vocoder (editing, speed)",
        ("dit", "speech_tokenizer", "vocoder"),
    ),
    EngineSpec(
        "base+convert",
        "a base speaker (Kokoro, Piper, flite, ...) -> tone-color converter (style from the base, timbre from you)",
        ("converter", "vocoder"),
    ),
)


@dataclass(frozen=True)
class EngineStatus:
    """Whether an engine can run here, and if not, why."""

    name: str
    available: bool
    reason: str


def engine_status() -> list[EngineStatus]:
    """The status of every engine, in `ENGINES` order."""
    shipped = set(list_shipped())
    statuses = []
    for spec in ENGINES:
        missing = [name for name in spec.checkpoints if name not in shipped]
        refused = []
        for name in spec.checkpoints:
            if name in shipped:
                try:
                    verify_shipped(checkpoints_dir() / name)
                except CheckpointError:
                    refused.append(name)
        if missing:
            reason = f"not trained yet: needs the checkpoint(s) {', '.join(missing)} in checkpoints/"
        elif refused:
            reason = f"refused: {', '.join(refused)} do not match checkpoints/MANIFEST.json"
        else:
            reason = "ready"
        statuses.append(EngineStatus(spec.name, not missing and not refused, reason))
    return statuses

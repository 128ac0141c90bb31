"""Which engines exist in this install, and why an engine is unavailable.

An engine is available when every checkpoint it needs is shipped (and verifies) or was given explicitly.
The studio and `timbre doctor` show this table, so a user never meets a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

from tts.checkpoints import checkpoints_dir, list_shipped, verify_shipped
from tts.errors import CheckpointError


DISTILLED_REFINER = "flow_refiner_distilled"
"""The shipped self-distilled flow refiner (`tts.refiner.distill`), the `distilled` timbre-swap engine's."""


@dataclass(frozen=True)
class EngineSpec:
    """An engine and the shipped checkpoints it needs; `kind` ``"synthesis"`` (text -> speech, `synthesize`) or
    ``"conversion"`` (speech -> the same speech in another voice, `tts.synthesis.convert`)."""

    name: str
    description: str
    checkpoints: tuple[str, ...]
    kind: str = "synthesis"


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
        "distilled",
        "timbre swap (Seed-TTS self-distillation): a recording's speech tokens -> self-distilled flow refiner "
        "prompted by your voice -> vocoder",
        ("speech_tokenizer", "token_lm", DISTILLED_REFINER, "vocoder"),
        kind="conversion",
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


def engine_status(kind: str | None = None) -> list[EngineStatus]:
    """The status of every engine (of `kind`, when given), in `ENGINES` order."""
    shipped = set(list_shipped())
    statuses = []
    for spec in ENGINES:
        if kind is not None and spec.kind != kind:
            continue
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

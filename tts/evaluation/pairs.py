"""The SIM scale of a speaker encoder: same voice on two sentences (ceiling) vs two voices (floor).

A cloning result means something only against this scale: Resemblyzer gives unrelated voices about 0.5
and the same voice about 0.9. Both clips of a pair always say different sentences, so the text never
helps the score.
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tts.audio import Audio
from tts.evaluation import similarity as sim_module

DEFAULT_PAIR_VOICES: tuple[str, ...] = (
    "kokoro:jf_alpha",
    "kokoro:jm_kumo",
    "piper:joe",
    "flite:slt",
    "flite:rms",
    "flite:awb",
    "festival:cmu_us_slt_arctic_hts",
    "espeak:en-us",
)

PAIR_TEXTS: tuple[str, str] = (
    "The garden behind the library was quiet except for a few birds arguing in the hedge.",
    "Could you check whether the last bus still stops at the corner after midnight?",
)
"""Two sentences that are neither training nor held-out target texts."""

VoiceSynthesizer = Callable[[str, str], Audio]
"""``(voice_id, text) -> Audio``."""


@dataclass(frozen=True)
class PairsReport:
    """Per-pair similarities and their summary."""

    model: str
    voices: list[str]
    same_voice: dict[str, float]
    """voice -> SIM of its two sentences."""
    different_voice: dict[str, float]
    """``"a vs b"`` -> SIM of a's first sentence and b's second (and the reverse, averaged)."""
    skipped: dict[str, str]

    def summary(self) -> dict:
        def stats(values: Sequence[float]) -> dict:
            if not values:
                return {"count": 0}
            return {"count": len(values), "mean": statistics.fmean(values), "min": min(values), "max": max(values)}

        return {
            "ceiling_same_voice": stats(list(self.same_voice.values())),
            "floor_different_voices": stats(list(self.different_voice.values())),
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary(), "label": sim_module.label(self.model)}

    def to_markdown(self) -> str:
        summary = self.summary()
        lines = [
            f"# SIM floor and ceiling ({sim_module.metric_key(self.model)})",
            "",
            f"{sim_module.label(self.model)}. Clips of a pair always say different sentences.",
            "",
            "| | pairs | mean | min | max |",
            "|---|---|---|---|---|",
        ]
        for name, key in (("same voice (ceiling)", "ceiling_same_voice"), ("different voices (floor)", "floor_different_voices")):
            s = summary[key]
            if s["count"]:
                lines.append(f"| {name} | {s['count']} | {s['mean']:.3f} | {s['min']:.3f} | {s['max']:.3f} |")
        lines += ["", "| voice | same-voice SIM |", "|---|---|"]
        lines += [f"| {voice} | {value:.3f} |" for voice, value in self.same_voice.items()]
        lines += ["", "| pair | SIM |", "|---|---|"]
        lines += [f"| {pair} | {value:.3f} |" for pair, value in self.different_voice.items()]
        if self.skipped:
            lines += ["", "Skipped: " + "; ".join(f"{v} ({why})" for v, why in self.skipped.items())]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> Path:
        """``pairs.json`` and ``pairs.md`` into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pairs.json").write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        (out / "pairs.md").write_text(self.to_markdown(), encoding="utf-8")
        return out


def _base_speaker(voice_id: str, text: str) -> Audio:
    from tts.data.speakers import synthesize_voice_id

    return synthesize_voice_id(voice_id, text).audio


def sim_pairs(
    voices: Sequence[str] = DEFAULT_PAIR_VOICES,
    texts: tuple[str, str] = PAIR_TEXTS,
    model: str = sim_module.DEFAULT_SIM_MODEL,
    synthesize: VoiceSynthesizer | None = None,
) -> PairsReport:
    """SIM of each voice with itself across `texts` and of every two voices (text-disjoint pairs).

    A voice that cannot be synthesized is skipped with the reason.
    """
    if len(texts) != 2 or texts[0] == texts[1]:
        raise ValueError("sim_pairs needs two different sentences")
    synthesize = synthesize or _base_speaker
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for voice in voices:
        try:
            embeddings[voice] = tuple(sim_module.speaker_embedding(synthesize(voice, text), model) for text in texts)
        except ValueError as error:  # TimbreError and AudioError are ValueErrors
            skipped[voice] = str(error)
    same = {voice: sim_module.cosine(a, b) for voice, (a, b) in embeddings.items()}
    different = {}
    for v, w in itertools.combinations(embeddings, 2):
        forward = sim_module.cosine(embeddings[v][0], embeddings[w][1])
        backward = sim_module.cosine(embeddings[v][1], embeddings[w][0])
        different[f"{v} vs {w}"] = (forward + backward) / 2
    return PairsReport(model, list(embeddings), same, different, skipped)

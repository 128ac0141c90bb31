"""The `dit` engine: zero-shot speech, word editing, speed editing and voice conversion with the studio's DiT.

    from tts import convert, synthesize, edit
    audio = synthesize("Hello there.", voice, engine="dit", speed=1.1)
    result = edit("take.wav", "the cat sat on the mat", "the dog sat on the mat")   # result.audio, result.spans
    audio = convert("me_reading.wav", voice, source_text="what I read")             # engine "dit"

Data flow::

    text --phonemize--> units --duration predictor--> proportions --x total frames--> unit ids per frame
    [reference / kept audio mel | unit ids on the frames to generate] --DiT flow (infilling)--> mel --> vocoder

The only timing a user gives is a total: for speech, the reference's own speaking rate (measured by aligning
the reference with its transcript) divided by ``speed``; for edits, the recording's speaking rate around the
change. The duration predictor only spreads that total over the units (`tts.dit.units.fit_durations`).

Editing (`DitEngine.edit`): the recording is aligned with its transcript (the speech tokenizer's CTC aligner,
`tts.tokenizer.align`); the words that differ from the new transcript (a word-level diff) become spans to
regenerate, from the silence before the first changed word to the silence after the last, laid out anew for the
new words; `margin` frames on each side of a span are regenerated too (with their original units) and
cross-faded with the original, so every sample outside the spans and their margins is the input's, exactly
(shifted by whole frames where a span changed length). The new words do not start from noise: a base speaker
(`GUIDE_VOICE`) first says the new transcript, the aligner finds its new words, and their frames, as long as
the guide says them (`_guide_timed`), are the flow's first estimate from time `EDIT_GUIDE` on (SDEdit, as speed
edits start from the recording itself): the DiT re-says clearly spoken words in the recording's voice instead of
inventing them from nothing. Since the DiT keeps much of the voice it starts from, the guide is first moved toward
the recording's voice: said at its F0 median with formants scaled to match (PSOLA), with its long-term spectrum
(`_guide_estimate`); and `EDIT_CONTEXT_WORDS` unchanged words on each side are said again with the new ones, so
that the guide's coarticulation carries the new words into their neighbours. Zero-shot speech
(`DitEngine.speak`) starts the same way, from the guide voice saying the chunk moved toward the reference's voice,
stretched to the durations the reference's speaking rate gives (`SPEAK_GUIDE`). Voice conversion
(`DitEngine.convert`) starts from the guide voice saying the recording's words to the recording's melody (moved to
the voice's pitch), laid out at the recording's own aligned timing (`CONVERT_GUIDE`), and the DiT says it again in
the voice: words, timing and melody from the recording, and nothing of its vocal tract.

Shapes: ``M`` mel bands, ``F`` frames of a recording, ``P`` prompt frames, ``T`` frames after an edit.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, ClassVar, NamedTuple, Sequence

import numpy as np
import torch

from tts.audio import SAMPLE_RATE, SPEECH_FLOOR, Audio, interpolate_frames, log_mel, speech_band_means
from tts.dit.model import DiT
from tts.dit.sampling import sample
from tts.dit.units import BOUNDARY, UnitSequence, aligned_unit_frames, expand, fit_durations, text_units
from tts.errors import AudioError, CheckpointError, TextError
from tts.text import PHONEME_TABLE, Word
from tts.text.frontend import prepare_text
from tts.text.phonemes import PUNCTUATION
from tts.voice import Voice

if TYPE_CHECKING:
    from tts.evaluation.prosody import F0Track
    from tts.takes import Take, Takes

logger = logging.getLogger(__name__)

DIT_CHECKPOINTS = {"dit": "dit", "aligner": "speech_tokenizer", "vocoder": "vocoder"}
"""Shipped checkpoint names of the `dit` engine."""

DEFAULT_STEPS = 8
DEFAULT_CFG = 2.0
"""ODE steps and classifier-free guidance of a flow that starts from noise (no guide voice, or a span no guide
covers)."""
GUIDED_STEPS = 1
GUIDED_CFG = 0.0
"""... and of a flow that starts from a first estimate (every default path: zero-shot speech, word edits, speed
edits, conversion). From flow time t one Euler step lands on the DiT's own estimate of the finished mel, and with
most of the way already given by the guide that estimate is as good as eight guided steps: `heldout-en` (30 items,
seeds 0 / 1) WER 0.051 / 0.054, SIM 0.775 / 0.777 against 0.062 / 0.051 and 0.767 / 0.769 with 8 steps and
guidance 2, for one DiT pass instead of sixteen (docs/benchmarks.md, session 17)."""
MAX_PROMPT_SECONDS = 8.0
"""Longer references are cut to this (the DiT attends over prompt + output)."""
MAX_EDIT_SECONDS = 60.0
"""Longest recording `edit` takes (the whole recording goes through the DiT at once)."""
EDIT_CONTEXT_WORDS = 1
"""Unchanged words on each side of a changed stretch that an edit says again with it (`DitEngine.edit`). On 40
held-out recordings (one- and three-word edits, moved guide at 0.8, session 12) one word each side took the WER
against the new text from 0.199 / 0.231 (none, unmoved guide at 0.5) to 0.105 / 0.203, SIM to the original 0.957 /
0.863 to 0.922 / 0.864 (docs/benchmarks.md)."""
MARGIN_FRAMES = 3
"""Frames regenerated and cross-faded on each side of an edited span (32 ms)."""
GUIDE_VOICE = "piper:joe"
"""Base speaker that first says what the DiT is to say (a word edit's new transcript, `DitEngine.edit`; a chunk of
zero-shot speech, `DitEngine.speak`); None: the new speech starts from noise."""
EDIT_GUIDE = 0.9
"""Where on the flow (0 noise, 1 data) a word edit's new words start from the guide voice's rendering of them,
moved toward the recording's voice and laid out as long as the guide says them (`_guide_timed`). On 40 held-out
recordings, three-word edits: WER 0.203 at 0.8 with the duration predictor's lengths, 0.188 at 0.8 and 0.143 at
0.9 with the guide's; SIM 0.864-0.868 throughout (docs/benchmarks.md)."""
SPEAK_GUIDE = 0.8
"""Where on the flow zero-shot speech starts from the guide voice's rendering of the text, moved toward the
reference's voice (on 20 held-out items SIM 0.73 at 0.6, 0.75 at 0.8, the same at 0.95: the timbre comes from the
moving, the DiT keeps it and adds the reference's context; WER 0.06-0.08 throughout)."""
GUIDE_MATCH = 1.0
"""How far a guide (zero-shot speech's, a word edit's) has its long-term spectrum (each mel band's mean over its
speech) moved to the voice's before the flow starts from it (`_Estimate.matched`): 1 all the way (vocal tract and
channel), 0 not at all."""
PHONE_MATCH_PRIOR: float | None = 10.0
"""With the units of the voice's reference known (zero-shot speech and conversion), a guide's frames of each unit
move to the voice's own spectrum of that unit (`_Estimate.matched`); a unit the reference says over n speech frames
gets weight n / (n + this), the rest of the way the long-term spectrum's. None: the long-term spectrum only. (Word
edits keep the long-term spectrum: unit by unit their SIM rose, 0.917 -> 0.925, but their WER did not fall.)"""
PHONE_MATCH_BANDS = 5
"""The per-unit spectrum differences are smoothed over this many mel bands (the envelope, not the harmonics)."""
PHONE_MATCH_SMOOTH = 5
"""... and over this many frames in time, so that the moves do not jump at unit boundaries."""
GUIDE_PITCH_LIMITS = (0.5, 2.0)
"""A guide is first said at its voice's F0 median (PSOLA, formants scaled with it as the voice bank's
pseudo-speakers are, `_to_voice_pitch`); the F0 ratio is kept within these."""
MELODY_LIMIT = 12.0
"""A conversion's guide sings the recording's melody at most this many semitones from its median (`_sung_guide`)."""
PITCH_SPREAD_LIMITS = (0.5, 2.0)
"""Where a guide also takes its voice's pitch range (a conversion), the ratio of the two F0 spreads is kept within
these."""
CONVERT_GUIDE = 0.8
"""Where on the flow (0 noise, 1 data) a conversion starts from the guide voice singing the source's melody at its
timing (`DitEngine.convert`). On 24 held-out pairs: WER +0.025 over the source, SIM to the target 0.743 and to
the source 0.549, F0-contour correlation 0.83 at 0.8; +0.020, 0.745, 0.554, 0.82 at 0.7. Started from the source
itself instead (no guide voice): +0.005, 0.711, 0.634, 0.85 (docs/benchmarks.md)."""
CONVERT_PIECE_SECONDS = 10.0
"""A conversion goes through the DiT in pieces of at most about this long, cut in the middle of pauses."""
MAX_CONVERT_SECONDS = 300.0
"""Longest recording `convert` takes."""
SPEED_GUIDE = 0.92
"""Where on the flow (0 noise, 1 data) a speed edit starts from the stretched recording (`DitEngine.change_speed`)."""
RATE_LIMITS = (0.4, 2.5)
"""A measured speaking rate (frames per predicted frame) is clamped to this range."""

_WORD_CHARS = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class EditResult:
    """What `DitEngine.edit` returns.

    Attributes:
        audio: the edited recording.
        spans: ``(start, end)`` seconds in `audio` of each regenerated span (cross-fade margins included).
        changes: ``(old words, new words)`` of each span, as text.
    """

    audio: Audio
    spans: list[tuple[float, float]]
    changes: list[tuple[str, str]]
    takes: "Takes | None" = None
    """With ``takes`` above 1 (`edit`): every take, what the ASR heard in it, and which one this is."""


class _Plan(NamedTuple):
    """One stretch of a recording to say again: units ``start:end`` of the recording become `ids` laid out over
    `counts` frames; `new_units` is the range of the new text's units said inside it (a word edit's new words;
    None for a speed edit, which keeps its units)."""

    start: int
    end: int
    ids: list[int]
    counts: list[float]
    old_text: str
    new_text: str
    new_units: tuple[int, int] | None = None


@dataclass(frozen=True)
class _Estimate:
    """The guide voice's rendering of what the DiT is to say (a word edit's new transcript, a chunk of speech): its
    mel ``(M, G)``, the frames of each of its units, and (where known) the units' ids."""

    mel: torch.Tensor
    counts: list[int]
    ids: Sequence[int] | None = None

    def matched(self, mel: torch.Tensor, frame_ids: torch.Tensor | None = None) -> "_Estimate":
        """This rendering with the spectrum of the voice of `mel` ``(M, F)``: its speech's mean level in each band
        moved `GUIDE_MATCH` of the way to the voice's (the long-term spectrum). The DiT keeps much of where it starts
        from, so a guide that already has the voice's spectrum ends closer to the voice. Given the unit id of each
        of `mel`'s frames (`frame_ids` ``(F,)``, from the aligner) and with `PHONE_MATCH_PRIOR` set, each unit's
        frames move by that unit's own difference instead, as far as the voice says it (`_phone_shift`)."""
        if not GUIDE_MATCH:
            return self
        shift = speech_band_means(mel) - speech_band_means(self.mel)
        if frame_ids is not None and self.ids is not None and PHONE_MATCH_PRIOR is not None:
            shift = _phone_shift(mel, frame_ids, self.mel, expand(self.ids, self.counts), shift)
        return replace(self, mel=self.mel + GUIDE_MATCH * shift)


def _phone_shift(voice: torch.Tensor, voice_ids: torch.Tensor, guide: torch.Tensor, guide_ids: torch.Tensor,
                 shift: torch.Tensor) -> torch.Tensor:
    """``(M, G)``: for each frame of `guide` ``(M, G)`` (units `guide_ids` ``(G,)``), the difference between the
    voice's (`voice` ``(M, F)``, units `voice_ids` ``(F,)``) mean spectrum of that unit and the guide's, over their
    speech frames, smoothed across neighbouring bands (the unit's envelope, not one pitch's harmonics); shrunk
    toward the long-term `shift` ``(M, 1)`` by how often the voice says the unit (`PHONE_MATCH_PRIOR` frames count
    as much as the long-term shift), then smoothed over `PHONE_MATCH_SMOOTH` frames in time."""
    frames = min(voice.shape[1], len(voice_ids))
    voice, voice_ids = voice[:, :frames], voice_ids[:frames]
    if len(guide_ids) != guide.shape[1]:  # PSOLA may leave a guide a frame longer or shorter than its alignment
        guide_ids = torch.nn.functional.pad(guide_ids[: guide.shape[1]], (0, max(0, guide.shape[1] - len(guide_ids))),
                                            value=int(guide_ids[-1]))
    voice_speech = voice.mean(dim=0) >= voice.mean(dim=0).max() - SPEECH_FLOOR
    guide_speech = guide.mean(dim=0) >= guide.mean(dim=0).max() - SPEECH_FLOOR
    out = shift.expand(-1, guide.shape[1]).clone()
    for unit in torch.unique(guide_ids).tolist():
        in_voice, in_guide = (voice_ids == unit) & voice_speech, (guide_ids == unit) & guide_speech
        count = int(in_voice.sum())
        if not count or not bool(in_guide.any()):
            continue
        difference = voice[:, in_voice].mean(dim=1, keepdim=True) - guide[:, in_guide].mean(dim=1, keepdim=True)
        difference = _smooth(difference.T, PHONE_MATCH_BANDS).T
        weight = count / (count + PHONE_MATCH_PRIOR)
        out[:, guide_ids == unit] = shift + weight * (difference - shift)
    return _smooth(out, PHONE_MATCH_SMOOTH)


def _smooth(rows: torch.Tensor, width: int) -> torch.Tensor:
    """Each row of `rows` ``(R, N)`` averaged over a window of `width` along N (edges repeated)."""
    if width <= 1:
        return rows
    padded = torch.nn.functional.pad(rows[None], (width // 2, width - 1 - width // 2), mode="replicate")[0]
    return padded.unfold(1, width, 1).mean(dim=-1)


@dataclass
class _Layout:
    """A frame plan of an output: per frame, the unit id to generate (-1: kept), the source frame in the input
    (-1: none), whether the frame is kept as it is, and the (fractional) input frame that is its first estimate
    (NaN: none; a speed edit's frames have one: `_warped_positions`)."""

    ids: list[int] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    keep: list[bool] = field(default_factory=list)
    guide: list[float] = field(default_factory=list)

    def add_kept(self, start: int, end: int) -> None:
        self.ids += [-1] * (end - start)
        self.source += list(range(start, end))
        self.keep += [True] * (end - start)
        self.guide += [float(i) for i in range(start, end)]

    def add_generated(self, ids: Sequence[int], source: Sequence[int] | None = None,
                      guide: Sequence[float] | None = None) -> None:
        self.ids += list(ids)
        self.source += list(source) if source is not None else [-1] * len(ids)
        self.keep += [False] * len(ids)
        if guide is None:  # a margin frame's first estimate is its source frame
            guide = [f if f >= 0 else float("nan") for f in self.source[len(self.source) - len(ids):]]
        self.guide += [float(g) for g in guide]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class DitEngine:
    """The DiT, the aligner (speech tokenizer with a CTC head) and the vocoder (read-only once built)."""

    dit: DiT
    aligner: torch.nn.Module
    vocoder: torch.nn.Module
    _voice_measures: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _voice_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    heard_voices: ClassVar[tuple[str, ...]] = (GUIDE_VOICE,)
    """The voice it speaks with itself (the default guide voice): not held out from it, so evaluations leave out
    items in it (`tts.evaluation.testsets.heard_by`)."""

    def __post_init__(self) -> None:
        config = self.dit.config
        if config.text_condition != "frames" or self.dit.duration_predictor is None:
            raise CheckpointError("the dit engine needs a studio DiT (frame-level unit condition and a duration "
                                  "predictor); the published F5-TTS weights are loaded with tts.dit.DiT.from_published")
        if config.mel.sample_rate != self.vocoder.sample_rate:
            raise CheckpointError(f"the DiT makes {config.mel.sample_rate} Hz mels but the vocoder renders "
                                  f"{self.vocoder.sample_rate} Hz")

    @classmethod
    def from_pretrained(cls, dit: str = DIT_CHECKPOINTS["dit"], aligner: str = DIT_CHECKPOINTS["aligner"],
                        vocoder: str = DIT_CHECKPOINTS["vocoder"], local_files_only: bool = False) -> "DitEngine":
        """Load the three parts (shipped names, local folders or hub ids) in float32 on the CPU."""
        from tts.tokenizer.model import SpeechTokenizer
        from vocoder.vocos import Vocos

        return cls(
            DiT.from_pretrained(dit, local_files_only=local_files_only).float().eval(),
            SpeechTokenizer.from_pretrained(aligner, local_files_only=local_files_only).float().eval(),
            Vocos.from_pretrained(vocoder, local_files_only=local_files_only).float().eval(),
        )

    # -- durations ----------------------------------------------------------------------------------------

    @property
    def hop_seconds(self) -> float:
        mel = self.dit.config.mel
        return mel.hop_length / mel.sample_rate

    def predicted_frames(self, units: UnitSequence) -> np.ndarray:
        """The duration predictor's frames per unit (at the corpus's average rate)."""
        with torch.inference_mode():
            log_frames = self.dit.duration_predictor(torch.tensor([units.ids]))[0]
        return np.maximum(torch.expm1(log_frames).numpy(), 0.0)

    def align(self, audio: Audio, words: Sequence[Word]) -> tuple[UnitSequence, list[int]]:
        """Units of `words` and the frames each covers in `audio` (at the DiT's mel rate)."""
        from tts.tokenizer.align import align

        mel = self.dit.config.mel
        frames = len(audio.resample(mel.sample_rate).samples) // mel.hop_length + 1  # log_mel's frame count
        return aligned_unit_frames(align(audio, list(words), self.aligner), frames, self.hop_seconds)

    def speaking_rate(self, units: UnitSequence, counts: Sequence[int]) -> float:
        """Aligned over predicted frames of the spoken units (> 1: slower than the corpus average)."""
        spoken = [i for i, word in enumerate(units.words) if word != BOUNDARY]
        predicted = self.predicted_frames(units)[spoken].sum()
        actual = float(np.sum(np.asarray(counts)[spoken]))
        rate = actual / predicted if predicted > 0 else 1.0
        return float(np.clip(rate, *RATE_LIMITS))

    def voice_units(self, voice: Voice) -> tuple[UnitSequence, list[int]] | None:
        """A voice's reference aligned with its transcript (units and their frames), once per voice; None where the
        transcript has nothing to say."""

        def measure() -> tuple[UnitSequence, list[int]] | None:
            try:
                return self.align(voice.audio, prepare_text(voice.transcript).words)
            except TextError:
                return None

        return self._per_voice("units", voice, measure)

    def voice_rate(self, voice: Voice) -> float:
        """The speaking rate of a voice's reference, measured once per voice."""
        aligned = self.voice_units(voice)
        return 1.0 if aligned is None else self._per_voice("rate", voice, lambda: self.speaking_rate(*aligned))

    def _voice_frame_ids(self, voice: Voice) -> torch.Tensor | None:
        """The unit id of each frame of a voice's reference (`voice_units`), or None."""
        aligned = self.voice_units(voice)
        return None if aligned is None else expand(aligned[0].ids, aligned[1])

    def voice_level(self, voice: Voice) -> float:
        """The active speech level (dBFS) of a voice's reference, measured once per voice as `set_level` measures
        (`tts.data.styles.set_level`); `clone_voice` has put references at -20 dBFS."""
        from tts.data.styles import LEVEL_GATE_DB
        from tts.preprocess import active_rms_dbfs

        return self._per_voice("level", voice, lambda: active_rms_dbfs(voice.audio, gate_db=-LEVEL_GATE_DB))

    def voice_pitch(self, voice: Voice) -> _Pitch | None:
        """The F0 median and spread of a voice's reference, measured once per voice."""
        return self._per_voice("pitch", voice, lambda: _pitch(voice.audio))

    def _per_voice(self, what: str, voice: Voice, measure: Callable[[], object]):
        """`measure()` of `voice`, kept by its content digest so that each chunk of a text does not measure again."""
        key = (what, voice.digest)
        with self._voice_lock:
            if key in self._voice_measures:
                return self._voice_measures[key]
        value = measure()
        with self._voice_lock:
            self._voice_measures[key] = value
        return value

    # -- generation ---------------------------------------------------------------------------------------

    def _mel(self, audio: Audio) -> torch.Tensor:
        """``(M, F)`` log-mel of `audio` at the DiT's features."""
        samples = audio.resample(self.dit.config.mel.sample_rate).samples
        return log_mel(torch.from_numpy(samples), self.dit.config.mel)

    def prompt_mel(self, voice: Voice) -> torch.Tensor:
        """``(M, P)`` the kept prompt of speech and conversion in `voice`: its reference's mel, at most
        `MAX_PROMPT_SECONDS`; also what a guide is moved toward."""
        return self._mel(voice.audio)[:, : int(MAX_PROMPT_SECONDS / self.hop_seconds)]

    def _infill(self, cond: torch.Tensor, layout: _Layout, steps: int | None, cfg_strength: float | None, seed: int,
                source_mel: torch.Tensor | None = None, guide: float = 0.0) -> torch.Tensor:
        """``(M, T)`` mel of the layout: kept frames from `cond` ``(M, T)``, the others generated.

        With `guide` > 0 and every generated frame given a first estimate in `layout.guide` (positions in
        `source_mel` ``(M, F)``), the flow starts from those estimates at time `guide` (`sample`'s SDEdit).
        `steps` and `cfg_strength` left None are `GUIDED_STEPS` and `GUIDED_CFG` for such a start,
        `DEFAULT_STEPS` and `DEFAULT_CFG` for a start from noise."""
        ids = torch.tensor(layout.ids, dtype=torch.long)
        keep = torch.tensor(layout.keep, dtype=torch.bool)
        positions = torch.tensor(layout.guide, dtype=torch.float64)
        guided = guide > 0.0 and source_mel is not None and not bool(positions[~keep].isnan().any())
        if steps is None:
            steps = GUIDED_STEPS if guided else DEFAULT_STEPS
        if cfg_strength is None:
            cfg_strength = GUIDED_CFG if guided else DEFAULT_CFG
        mel = sample(self.dit, cond.T[None], ids[None], total_frames=len(layout), edit_mask=keep, steps=steps,
                     cfg_strength=cfg_strength, seed=seed,
                     guide_mel=interpolate_frames(source_mel, positions).T[None] if guided else None,
                     start_time=guide if guided else 0.0)
        return mel[0].T

    def speak(self, words: Sequence[Word], voice: Voice, *, speed: float = 1.0, seed: int = 0,
              steps: int | None = None, cfg_strength: float | None = None,
              guide_voice: str | None = GUIDE_VOICE, guide: float = SPEAK_GUIDE) -> Audio:
        """`words` said in `voice`: the reference is the kept prompt, the new frames follow it. They start at flow
        time `guide` from `guide_voice` saying the words, stretched unit by unit to the planned durations (None, or
        a guide voice that is not installed: from noise). The result is at the reference's active speech level
        (`voice_level`), so every sentence of a voice is as loud as its reference and as the others; a style's
        level then moves from there (`tts.style.apply_conditioning`)."""
        if not 0.0 <= guide < 1.0:
            raise ValueError(f"guide must be in [0, 1), got {guide}")
        words = list(words)
        units = text_units(words)
        prompt = self.prompt_mel(voice)
        predicted = self.predicted_frames(units)
        total = max(len(units), int(round(predicted.sum() * self.voice_rate(voice) / speed)))
        counts = fit_durations(predicted, total, units.words)
        estimate = (self._guide_estimate(_spoken_text(words), words, guide_voice, seed, prompt, self.voice_pitch(voice),
                                         self._voice_frame_ids(voice)) if guide > 0 else None)
        kept = prompt.shape[1]
        layout = _Layout()
        layout.add_kept(0, kept)
        layout.add_generated(expand(units.ids, counts).tolist(), guide=None if estimate is None else [
            kept + position for position in _warped_positions(estimate.counts, counts)])
        cond = torch.cat((prompt, torch.zeros(prompt.shape[0], total)), dim=1)
        source = None if estimate is None else torch.cat((prompt, estimate.mel), dim=1)
        mel = self._infill(cond, layout, steps, cfg_strength, seed, source, guide if estimate is not None else 0.0)
        from tts.data.styles import set_level

        return set_level(self.vocoder.decode(mel[:, kept:]), self.voice_level(voice))

    def edit(self, audio: Audio, transcript: str, new_transcript: str, *, seed: int = 0,
             steps: int | None = None, cfg_strength: float | None = None, margin: int = MARGIN_FRAMES,
             context: int = EDIT_CONTEXT_WORDS, guide_voice: str | None = GUIDE_VOICE,
             guide: float = EDIT_GUIDE) -> EditResult:
        """Say `new_transcript` instead of `transcript` in `audio`, regenerating only the words that differ.

        `guide_voice` (a base speaker or pseudo-speaker id of `tts.data.voicebank`) says `new_transcript` first,
        moved toward the recording's voice, and the new words start from its rendering at flow time `guide`
        (`_guide_estimate`), each as long as the guide says it (`_guide_timed`); None, or a guide voice whose
        synthesizer is not installed (logged), starts them from noise, at the duration predictor's lengths.

        Raises:
            TextError: an empty transcript, or no word differs (nothing to do).
            AudioError: a recording longer than `MAX_EDIT_SECONDS`.
            ValueError: `guide` outside [0, 1).
        """
        if not 0.0 <= guide < 1.0:
            raise ValueError(f"guide must be in [0, 1), got {guide}")
        audio = self._check_recording(audio)
        new_words = list(prepare_text(new_transcript).words)
        units, counts, plans = self._edit_plans(audio, transcript, new_words, context)
        mel = self._mel(audio)
        estimate = (self._guide_estimate(new_transcript, new_words, guide_voice, seed, mel, _pitch(audio))
                    if guide > 0 else None)
        if estimate is not None:
            plans = [_guide_timed(plan, estimate) for plan in plans]
        return self._apply(audio, units, counts, plans, margin, steps, cfg_strength, seed,
                           guide if estimate is not None else 0.0, estimate, mel)

    def _guide_estimate(self, text: str, words: Sequence[Word], voice_id: str | None, seed: int,
                        voice_mel: torch.Tensor | None = None, voice_pitch: _Pitch | None = None,
                        voice_ids: torch.Tensor | None = None) -> _Estimate | None:
        """`voice_id` saying `text` (whose words are `words`), aligned to their units; None without a guide voice or
        where its synthesizer is missing. Given the mel `voice_mel` ``(M, F)`` of the voice it stands in for (and
        its pitch `voice_pitch`, the unit of each of its frames `voice_ids`), as close to that voice as a base
        speaker gets: said at its F0 median (`_to_voice_pitch`), with its spectrum (`_Estimate.matched`)."""
        if voice_id is None:
            return None
        from tts.data.voicebank import synthesize, voice_unavailable_reason

        reason = voice_unavailable_reason(voice_id)
        if reason:
            logger.warning("dit: %s; the new speech starts from noise", reason)
            return None
        spoken = synthesize(voice_id, text, seed=seed, noise_seed=seed).audio
        if voice_mel is not None:
            spoken = _to_voice_pitch(spoken, voice_pitch, seed)
        units, counts = self.align(spoken, words)
        estimate = _Estimate(self._mel(spoken), list(counts), units.ids)
        return estimate if voice_mel is None else estimate.matched(voice_mel, voice_ids)

    def preview_edit(self, audio: Audio, transcript: str, new_transcript: str,
                     context: int = EDIT_CONTEXT_WORDS) -> EditResult:
        """Which spans of `audio` `edit` would say again, without saying them: an `EditResult` whose audio is
        `audio` itself and whose spans are the seconds, in `audio`, of each changed stretch (the words and the
        pauses around them, before the cross-fade margins). Only the aligner runs. Raises as `edit`."""
        audio = self._check_recording(audio)
        units, counts, plans = self._edit_plans(audio, transcript, list(prepare_text(new_transcript).words), context)
        unit_end = np.cumsum(counts)
        unit_start = unit_end - np.asarray(counts)
        hop = self.hop_seconds
        plans = sorted(plans, key=lambda plan: plan.start)
        return EditResult(audio, [(float(unit_start[plan.start] * hop), float(unit_end[plan.end - 1] * hop))
                                  for plan in plans], [(plan.old_text, plan.new_text) for plan in plans])

    def _edit_plans(self, audio: Audio, transcript: str, new_words: Sequence[Word],
                    context: int = 0) -> tuple[UnitSequence, list[int], list[_Plan]]:
        """The aligned units of `audio`, their frame counts, and `_apply`'s plan of each changed stretch (with
        `context` unchanged words on each side) to say `new_words` (the new transcript's front-end words)."""
        if isinstance(context, bool) or not isinstance(context, int) or context < 0:
            raise ValueError(f"context must be a whole number of words, 0 or more, got {context!r}")
        old_words = list(prepare_text(transcript).words)
        new_words = list(new_words)
        units, counts = self.align(audio, old_words)
        new_units = text_units(new_words)
        rate = self.speaking_rate(units, counts)
        new_frames = self.predicted_frames(new_units) * rate
        old_spoken, new_spoken = _spoken_words(old_words), _spoken_words(new_words)
        matcher = difflib.SequenceMatcher(a=[w for _, w in old_spoken], b=[w for _, w in new_spoken], autojunk=False)
        changed = [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
        regions = []
        for i1, i2, j1, j2 in _with_context(changed, len(old_spoken), context):
            old_first = old_spoken[i1][0] if i1 < len(old_spoken) else len(old_words)
            old_last = old_spoken[i2 - 1][0] + 1 if i2 > i1 else old_first
            new_first = new_spoken[j1][0] if j1 < len(new_spoken) else len(new_words)
            new_last = new_spoken[j2 - 1][0] + 1 if j2 > j1 else new_first
            regions.append((old_first, old_last, new_first, new_last))
        if not regions:
            raise TextError("the new transcript says the same words as the old one: nothing to edit")
        plans = []
        for old_first, old_last, new_first, new_last in regions:
            start, end = units.word_units(old_first, old_last)
            # The region runs over the word boundaries around the changed words (an insertion: the one boundary
            # it goes in); those pauses keep their length, the new words get the predicted durations.
            left, right = (start, start + 1) if end == start else (start - 1, end + 1)
            new_start, new_end = new_units.word_units(new_first, new_last)
            inner = list(range(new_start, new_end))
            boundary = units.ids[left]
            if not inner:  # a deletion: one pause where there were two
                new_ids, new_counts = [boundary], [max(counts[left], counts[right - 1])]
            else:
                closing = counts[right - 1] if end > start else new_frames[min(new_end, len(new_units) - 1)]
                new_ids = [boundary] + [new_units.ids[i] for i in inner] + [boundary]
                new_counts = [counts[left]] + [new_frames[i] for i in inner] + [closing]
            plans.append(_Plan(left, right, new_ids, new_counts,
                               " ".join(w.text for w in old_words[old_first:old_last]),
                               " ".join(w.text for w in new_words[new_first:new_last]), (new_start, new_end)))
        return units, counts, plans

    def change_speed(self, audio: Audio, transcript: str, factor: float, *, span: tuple[float, float] | None = None,
                     seed: int = 0, steps: int | None = None, cfg_strength: float | None = None,
                     margin: int = MARGIN_FRAMES, guide: float = SPEED_GUIDE) -> EditResult:
        """`audio` (saying `transcript`) spoken `factor` times faster, in `span` (seconds) or throughout.

        A span is widened to the words whose sounds are centered in it and regenerated in place like an edit.
        Throughout, the whole recording is said again in its own voice, the original serving as the prompt.
        Either way the flow starts at time `guide` from the recording's own frames stretched unit by unit to the
        new durations (`_warped_positions`), so it re-says what was said rather than inventing it anew; 0 starts
        from noise (a zero-shot re-reading).
        """
        if not 0.0 <= guide < 1.0:
            raise ValueError(f"guide must be in [0, 1), got {guide}")
        if not 0.25 <= factor <= 4.0:
            raise ValueError(f"speed factor must be in [0.25, 4], got {factor}")
        audio = self._check_recording(audio)
        words = list(prepare_text(transcript).words)
        units, counts = self.align(audio, words)
        if span is None:
            voice_counts = fit_durations(counts, max(len(units), int(round(sum(counts) / factor))), units.words)
            mel = self._mel(audio)
            layout = _Layout()
            layout.add_kept(0, mel.shape[1])
            layout.add_generated(expand(units.ids, voice_counts).tolist(),
                                 guide=_warped_positions(counts, voice_counts))
            cond = torch.cat((mel, torch.zeros(mel.shape[0], len(layout) - mel.shape[1])), dim=1)
            out = self._infill(cond, layout, steps, cfg_strength, seed, mel, guide)[:, mel.shape[1]:]
            result = self.vocoder.decode(out)
            return EditResult(result, [(0.0, result.duration)], [(transcript, f"{transcript} (x{factor:g})")])
        ends = np.cumsum(counts) * self.hop_seconds
        starts = ends - np.asarray(counts) * self.hop_seconds
        centers = (starts + ends) / 2
        touched = [i for i in range(len(units)) if units.words[i] != BOUNDARY and span[0] <= centers[i] < span[1]]
        if not touched:
            raise TextError(f"no word is spoken between {span[0]:.2f} s and {span[1]:.2f} s")
        first = min(units.words[i] for i in touched)
        last = max(units.words[i] for i in touched) + 1
        start, end = units.word_units(first, last)
        start, end = max(0, start - 1), min(len(units), end + 1)
        new_counts = [c / factor for c in counts[start:end]]
        new_counts[0], new_counts[-1] = counts[start], counts[end - 1]  # the pauses around the span are kept
        text = " ".join(w.text for w in words[first:last])
        return self._apply(audio, units, counts, [_Plan(start, end, list(units.ids[start:end]), new_counts, text,
                                                        f"{text} (x{factor:g})")], margin, steps, cfg_strength, seed,
                           guide)

    def convert(self, source: Audio, voice: Voice, transcript: str | None = None, *, seed: int = 0,
                steps: int | None = None, cfg_strength: float | None = None, guide: float = CONVERT_GUIDE,
                guide_voice: str | None = GUIDE_VOICE) -> Audio:
        """`source` (saying `transcript`; None: transcribed by the offline ASR) said again in `voice`: the same words
        at the same times, the same melody.

        The source is aligned with its transcript. `guide_voice` says the transcript to the source's melody (moved
        to the voice's F0 median and range, `_sung_guide`) with formants scaled toward the voice; laid out unit by
        unit at the source's timing and given the voice's long-term spectrum (`_Estimate.matched`), that is the
        flow's start at time `guide`, and the DiT, prompted by the voice's reference and given the source's units at
        their aligned frames, says it again in the voice (SDEdit, as zero-shot speech starts from a guide voice).
        So the source's words, timing and melody are kept, and its vocal tract is not where the DiT starts. With no
        guide voice (None, or its synthesizer missing) the start is the source itself, moved toward the voice
        (`_to_voice_pitch` with the pitch range). Long recordings go through in pieces of about
        `CONVERT_PIECE_SECONDS`, cut in the middle of pauses (`_piece_bounds`), and are rendered by the vocoder in
        one pass.

        Raises:
            AudioError: a recording shorter than 0.2 s or longer than `MAX_CONVERT_SECONDS`.
            TextError: a transcript with nothing to say.
            VoiceError: no transcript given, and the ASR cannot run or hears no words.
            ValueError: `guide` outside [0, 1).
        """
        if not 0.0 <= guide < 1.0:
            raise ValueError(f"guide must be in [0, 1), got {guide}")
        source = self._check_recording(source, MAX_CONVERT_SECONDS, "convert")
        if transcript is None:
            from tts.voice import recognized_transcript

            transcript = recognized_transcript(source, "the source recording")
        words = list(prepare_text(transcript).words)
        units, counts = self.align(source, words)
        frame_ids = expand(units.ids, counts).tolist()
        prompt = self.prompt_mel(voice)
        sung = self._sung_guide(source, words, counts, voice, guide_voice, seed) if guide_voice is not None else None
        voice_ids = self._voice_frame_ids(voice)
        if sung is not None:
            estimate = _Estimate(self._mel(sung[0]), sung[1], units.ids).matched(prompt, voice_ids)
        else:
            moved = self._mel(_to_voice_pitch(source, self.voice_pitch(voice), seed, spread=True))
            # PSOLA kept the length: read it frame for frame
            moved = interpolate_frames(moved, torch.arange(len(frame_ids), dtype=torch.float64))
            estimate = _Estimate(moved, list(counts), units.ids).matched(prompt, voice_ids)
        positions = _warped_positions(estimate.counts, counts)
        kept = prompt.shape[1]
        first = torch.cat((prompt, estimate.mel), dim=1)
        pieces = []
        for start, end in _piece_bounds(units, counts, int(CONVERT_PIECE_SECONDS / self.hop_seconds)):
            layout = _Layout()
            layout.add_kept(0, kept)
            layout.add_generated(frame_ids[start:end], guide=[kept + p for p in positions[start:end]])
            cond = torch.cat((prompt, torch.zeros(prompt.shape[0], end - start)), dim=1)
            pieces.append(self._infill(cond, layout, steps, cfg_strength, seed, first, guide)[:, kept:])
        return self.vocoder.decode(torch.cat(pieces, dim=1))

    def _sung_guide(self, source: Audio, words: Sequence[Word], counts: Sequence[int], voice: Voice,
                    guide_voice: str, seed: int) -> tuple[Audio, list[int]] | None:
        """`guide_voice` saying `words` to the melody of `source` (whose units are `counts` frames long), and the
        frames of each of its units: each voiced frame of the source's F0, moved to the voice's F0 median and
        range, is placed at the same relative place of the same unit in the guide's own timing, and the guide is
        said to that contour with formants scaled toward the voice (one PSOLA pass, `tts.data.styles.psola`).
        None without the guide's synthesizer or a pitch to work from."""
        from tts.data.styles import psola
        from tts.data.voicebank import PITCH_EXPONENT, synthesize, voice_unavailable_reason
        from tts.evaluation.prosody import f0_track

        track = f0_track(source, method="praat")
        target, own = self.voice_pitch(voice), _pitch(source, track)
        reason = voice_unavailable_reason(guide_voice)
        if reason or target is None or own is None:
            if reason:
                logger.warning("dit: %s; the conversion starts from the recording itself", reason)
            return None
        spoken = synthesize(guide_voice, _spoken_text(words), seed=seed, noise_seed=seed).audio
        _, guide_counts = self.align(spoken, words)
        spoken_pitch = _pitch(spoken)
        if spoken_pitch is None:
            return None
        voiced = np.flatnonzero(np.isfinite(track.f0))
        frames = voiced * track.hop_seconds / self.hop_seconds  # source F0 frames on the DiT's frame grid
        ends = np.cumsum(counts)
        unit = np.minimum(np.searchsorted(ends, frames, side="right"), len(counts) - 1)
        share = (frames - (ends[unit] - np.asarray(counts)[unit])) / np.maximum(np.asarray(counts)[unit], 1)
        guide_ends = np.cumsum(guide_counts)
        guide_lengths = np.asarray(guide_counts)[unit]
        at = (guide_ends[unit] - guide_lengths + np.clip(share, 0.0, 1.0) * guide_lengths) * self.hop_seconds
        scale = float(np.clip(target.spread / max(own.spread, 1e-3), *PITCH_SPREAD_LIMITS))
        # Semitones from the source's median, an octave at most each way (a pitch tracker's octave errors), scaled.
        semitones = np.clip(12 * np.log2(track.f0[voiced] / own.median), -MELODY_LIMIT, MELODY_LIMIT)
        f0 = target.median * 2 ** (semitones * scale / 12)
        keep = guide_lengths > 0
        order = np.argsort(at[keep], kind="stable")
        ratio = float(np.clip(target.median / spoken_pitch.median, *GUIDE_PITCH_LIMITS))
        sung = psola(spoken, formant_ratio=ratio ** (1.0 / PITCH_EXPONENT), seed=seed,
                     melody=(at[keep][order], f0[keep][order]))
        return sung, list(guide_counts)

    # -- helpers --------------------------------------------------------------------------------------------

    def _check_recording(self, audio: Audio, longest: float = MAX_EDIT_SECONDS, what: str = "edit") -> Audio:
        if audio.duration > longest:
            hint = "cut the part around the words to change" if what == "edit" else "split the recording"
            raise AudioError(f"the recording is {audio.duration:.0f} s long; {what} at most {longest:.0f} s "
                             f"at a time ({hint})")
        if audio.duration < 0.2:
            raise AudioError(f"the recording is shorter than 0.2 s: give the speech to {what}")
        return audio.resample(SAMPLE_RATE) if audio.sample_rate != SAMPLE_RATE else audio

    def _apply(self, audio: Audio, units: UnitSequence, counts: Sequence[int], plans: list[_Plan], margin: int,
               steps: int | None, cfg_strength: float | None, seed: int, guide: float = 0.0,
               estimate: _Estimate | None = None, mel: torch.Tensor | None = None) -> EditResult:
        """Regenerate each planned unit span (`_Plan`).

        A span that keeps its units (a speed edit) has the old frames, stretched, as its first estimate; a word
        edit's new words have the guide voice's frames of them (`estimate`), stretched to the plan's lengths (not
        at all where those are the guide's own, `_guide_timed`), and its pauses their old frames. With `guide` > 0
        and a first estimate for every generated frame, the flow starts from them (`_infill`). `mel` is the
        recording's (`_mel`), where the caller has it already."""
        mel = self._mel(audio) if mel is None else mel
        frames = mel.shape[1]
        source_mel = mel if estimate is None else torch.cat((mel, estimate.mel), dim=1)
        estimate_start = None if estimate is None else np.cumsum(estimate.counts) - np.asarray(estimate.counts)
        unit_end = np.cumsum(counts)
        unit_start = unit_end - np.asarray(counts)
        old_layout = expand(units.ids, counts).tolist()
        layout = _Layout()
        boundary = PHONEME_TABLE.word_boundary_id
        spans_frames, changes, position = [], [], 0
        for plan in sorted(plans, key=lambda p: p.start):
            start, end, new_ids, new_counts, old_text, new_text = plan[:6]
            frame_start, frame_end = int(unit_start[start]), int(unit_end[end - 1])
            left = max(position, frame_start - margin)
            right = min(frames, frame_end + margin)
            layout.add_kept(position, left)
            region_start = len(layout)
            layout.add_generated(old_layout[left:frame_start], range(left, frame_start))  # left margin
            words = [BOUNDARY if unit == boundary else 0 for unit in new_ids]  # sounds get at least a frame
            total = max(sum(1 for word in words if word != BOUNDARY), int(round(sum(new_counts))))
            fitted = fit_durations(new_counts, total, words)
            same_units = list(new_ids) == list(units.ids[start:end])
            if same_units:
                warped = _warped_positions(counts[start:end], fitted, frame_start)
            elif estimate is not None and plan.new_units is not None:
                # The pauses around the new words from their own frames, the new words from the guide voice's.
                first, last = plan.new_units
                warped = _warped_positions(counts[start:start + 1], fitted[:1], frame_start)
                if last > first:
                    warped += [frames + position for position in _warped_positions(
                        estimate.counts[first:last], fitted[1:-1], int(estimate_start[first]))]
                    warped += _warped_positions(counts[end - 1:end], fitted[-1:], int(unit_start[end - 1]))
            else:
                warped = None
            layout.add_generated(expand(new_ids, fitted).tolist(), guide=warped)
            layout.add_generated(old_layout[frame_end:right], range(frame_end, right))  # right margin
            spans_frames.append((region_start, len(layout)))
            changes.append((old_text, new_text))
            position = right
        layout.add_kept(position, frames)
        source = torch.tensor(layout.source)
        cond = torch.where((source >= 0)[None], mel[:, source.clamp(min=0)], torch.zeros(()))
        new_mel = self._infill(cond, layout, steps, cfg_strength, seed, source_mel, guide)
        rendered = self.vocoder.decode(new_mel).samples
        out = _splice(audio.samples, rendered, layout, self.dit.config.mel.hop_length)
        hop = self.hop_seconds
        return EditResult(Audio(out, audio.sample_rate), [(a * hop, b * hop) for a, b in spans_frames], changes)


class _Pitch(NamedTuple):
    """A voice's pitch: F0 median (Hz) and spread (standard deviation of F0 in semitones) of its voiced frames."""

    median: float
    spread: float


def _pitch(audio: Audio, track: "F0Track | None" = None) -> _Pitch | None:
    """The F0 median and spread of the voiced frames of `audio`'s active span (Praat's pitch, or its F0 `track`
    where the caller has it, through `tts.evaluation.prosody.prosody_stats`); None with too few of them."""
    from tts.evaluation.prosody import f0_track, prosody_stats

    try:
        stats = prosody_stats(audio, track=f0_track(audio, method="praat") if track is None else track)
    except AudioError:
        return None
    if stats.f0_median_hz is None:
        return None
    return _Pitch(stats.f0_median_hz, stats.f0_std_semitones)


def _to_voice_pitch(audio: Audio, pitch: _Pitch | None, seed: int, spread: bool = False) -> Audio:
    """`audio` said at the F0 median of `pitch` (the F0 ratio within `GUIDE_PITCH_LIMITS`), its formants scaled by
    the ratio to the power ``1 / PITCH_EXPONENT``, the coupling of the voice bank's pseudo-speakers, and with
    `spread` its F0 range scaled to `pitch`'s too (within `PITCH_SPREAD_LIMITS`): one PSOLA pass
    (`tts.data.styles.psola`). Unchanged where either pitch is unknown."""
    from tts.data.styles import psola
    from tts.data.voicebank import PITCH_EXPONENT

    own = _pitch(audio)
    if pitch is None or own is None:
        return audio
    ratio = float(np.clip(pitch.median / own.median, *GUIDE_PITCH_LIMITS))
    scale = float(np.clip(pitch.spread / max(own.spread, 1e-3), *PITCH_SPREAD_LIMITS)) if spread else 1.0
    return psola(audio, pitch_ratio=ratio, pitch_range=scale, formant_ratio=ratio ** (1.0 / PITCH_EXPONENT),
                 seed=seed)


def _guide_timed(plan: _Plan, estimate: _Estimate) -> _Plan:
    """A word edit's `plan` with its new units as long as the guide voice says them in `estimate` (the pauses at
    its edges keep the recording's lengths). Fitted to the duration predictor's lengths instead (rescaled to the
    recording's speaking rate or not), the guide's words were heard worse once placed in the recording."""
    if plan.new_units is None or plan.new_units[1] <= plan.new_units[0]:
        return plan
    first, last = plan.new_units
    return plan._replace(counts=[plan.counts[0], *estimate.counts[first:last], plan.counts[-1]])


def _warped_positions(counts: Sequence[int], new_counts: Sequence[int], first_frame: int = 0) -> list[float]:
    """For each frame of units laid out with `new_counts`, the input frame (fractional) at the same relative
    place in the same unit laid out with `counts` from `first_frame` on: each unit stretched on its own."""
    positions, start = [], float(first_frame)
    for old, new in zip(counts, new_counts):
        positions += [start + (k + 0.5) * old / new - 0.5 for k in range(int(new))]
        start += old
    return positions


def _piece_bounds(units: UnitSequence, counts: Sequence[int], longest: int) -> list[tuple[int, int]]:
    """``(start, end)`` frames of consecutive pieces covering the units laid out with `counts`, each at most
    `longest` frames where the words allow: a piece ends in the middle of the longest pause (a word boundary or a
    punctuation mark; between two words with no pause, at the boundary) in the second half of its reach, else of the
    last one in its reach, else (one word longer than the reach) of the next one."""
    pauses = {PHONEME_TABLE.word_boundary_id} | {PHONEME_TABLE.id(mark) for mark in PUNCTUATION}
    ends = np.cumsum(counts)
    middles = [(int(ends[i] - counts[i] / 2), counts[i]) for i, unit in enumerate(units.ids) if unit in pauses]
    total, bounds, start = int(ends[-1]) if len(ends) else 0, [], 0
    while total - start > longest:
        reach = [(count, middle) for middle, count in middles if start + longest // 2 <= middle <= start + longest]
        reach = reach or [(0, middle) for middle, _ in middles if start < middle <= start + longest][-1:]
        reach = reach or [(0, middle) for middle, _ in middles if middle > start + longest][:1]
        if not reach:
            break
        cut = max(reach)[1]
        bounds.append((start, cut))
        start = cut
    bounds.append((start, total))
    return bounds


def _with_context(changed: Sequence[tuple[int, int, int, int]], spoken: int,
                  context: int) -> list[tuple[int, int, int, int]]:
    """The changed stretches ``(i1, i2, j1, j2)`` of a word diff (old words ``i1:i2`` become new words ``j1:j2``),
    each widened by `context` unchanged words on both sides (said again as they were), merged where they meet."""
    merged: list[list[int]] = []
    for i1, i2, j1, j2 in changed:
        before = max(0, min(context, i1 - (merged[-1][1] if merged else 0)))
        after = min(context, spoken - i2)
        i1, j1, i2, j2 = i1 - before, j1 - before, i2 + after, j2 + after
        if merged and i1 <= merged[-1][1]:
            merged[-1][1], merged[-1][3] = i2, j2
        else:
            merged.append([i1, i2, j1, j2])
    return [tuple(region) for region in merged]


def _spoken_words(words: Sequence[Word]) -> list[tuple[int, str]]:
    """``(index, comparable text)`` of the words that are spoken (punctuation left out of the diff)."""
    return [(i, _WORD_CHARS.sub("", w.text.lower())) for i, w in enumerate(words) if not w.is_punctuation]


def _spoken_text(words: Sequence[Word]) -> str:
    """`words` written back as a line: spaces between words, punctuation against the word before it."""
    return "".join(w.text if w.is_punctuation or i == 0 else " " + w.text for i, w in enumerate(words))


def _splice(original: np.ndarray, rendered: np.ndarray, layout: _Layout, hop: int) -> np.ndarray:
    """The output waveform: kept frames' samples copied from `original`, generated frames from `rendered`, and
    over each margin (a generated frame with a source) a raised-cosine cross-fade between the two."""
    frames = len(layout)
    keep = np.asarray(layout.keep)
    source = np.asarray(layout.source)
    # Output length: the input's, changed by the frames gained or lost.
    input_frames = 1 + len(original) // hop
    total = len(original) + (frames - input_frames) * hop
    weight = np.zeros(frames)  # share of the rendered audio per frame (0 kept, 1 generated core)
    weight[~keep] = 1.0
    # Margins: generated frames that have a source; ramp across each run of them toward the core.
    margin = (~keep) & (source >= 0)
    index = 0
    while index < frames:
        if not margin[index]:
            index += 1
            continue
        run_end = index
        while run_end < frames and margin[run_end]:
            run_end += 1
        rising = run_end < frames and not keep[run_end] and not margin[run_end]  # the core follows: fade in
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(index, run_end) - index + 0.5) / (run_end - index))
        weight[index:run_end] = ramp if rising else ramp[::-1]
        index = run_end
    per_sample = np.repeat(weight, hop)[:total]
    per_sample = np.pad(per_sample, (0, max(0, total - len(per_sample))), constant_values=per_sample[-1] if len(per_sample) else 0)
    old = np.zeros(total, dtype=np.float32)
    for frame in range(frames):
        if source[frame] < 0:
            continue
        a, b = frame * hop, min(total, (frame + 1) * hop)
        s = source[frame] * hop
        piece = original[s : s + (b - a)]
        old[a : a + len(piece)] = piece
    new = np.zeros(total, dtype=np.float32)
    new[: min(total, len(rendered))] = rendered[:total]
    out = per_sample * new + (1 - per_sample) * old
    exact = per_sample == 0
    out[exact] = old[exact]
    return out.astype(np.float32)


def _as_audio(audio) -> Audio:
    from tts.audio import load_audio

    if isinstance(audio, tuple):
        return Audio(np.asarray(audio[0], dtype=np.float32), int(audio[1]))
    return audio if isinstance(audio, Audio) else load_audio(audio)


def _marked(result: EditResult, watermark: bool) -> EditResult:
    """The studio's watermark on each regenerated span only: the kept audio stays the input's, sample for sample."""
    if not watermark:
        return result
    from tts.watermark import embed_fixed

    samples = result.audio.samples.copy()
    rate = result.audio.sample_rate
    for start, end in result.spans:
        a, b = int(round(start * rate)), min(len(samples), int(round(end * rate)))
        if b > a:
            samples[a:b] = embed_fixed(Audio(samples[a:b], rate)).samples[: b - a]
    return replace(result, audio=Audio(samples, rate))


def edit(audio: Audio | str | tuple, transcript: str, new_transcript: str, *, seed: int = 0,
         steps: int | None = None, cfg_strength: float | None = None, models: DitEngine | None = None,
         watermark: bool = True, context: int = EDIT_CONTEXT_WORDS, takes: int = 1,
         on_take: "Callable[[int, int, Take], None] | None" = None,
         guide_voice: str | None = GUIDE_VOICE, guide: float = EDIT_GUIDE) -> EditResult:
    """Change the words of a recording: `audio` says `transcript`; the result says `new_transcript`.

    Only the words that differ are regenerated (replacements, insertions, deletions, several places at once),
    with `context` unchanged words on each side said again with them, in the recording's voice and speaking
    rate; everything else is the input's samples. `audio` is an `Audio`, a path or ``(samples, rate)``; `models`
    a loaded `DitEngine` (default: the shipped checkpoints); `watermark` marks the regenerated spans as synthetic
    (the kept audio is left untouched). `takes` above 1 makes that many edits (seeds `seed`, `seed + 1`, ...) and
    keeps the one in which Whisper hears `new_transcript` best (`tts.takes.pick_take`; `on_take` is told of each).
    `guide_voice` says the new transcript first and the new words start from its rendering at flow time `guide`
    (None: from noise; `DitEngine.edit`). `steps` and `cfg_strength` are the DiT's sampling; None: one step
    without guidance from a guide (`GUIDED_STEPS`), eight guided ones from noise (`DEFAULT_STEPS`).

    Returns:
        `EditResult`: the audio, the regenerated spans (seconds, in the output) and the changed words (and
        with several takes, all of them).
    """
    from tts.takes import pick_take

    parts = models if models is not None else load_dit_engine()
    audio = _as_audio(audio)
    made: dict[int, EditResult] = {}

    def render(take_seed: int) -> Audio:
        made[take_seed] = parts.edit(audio, transcript, new_transcript, seed=take_seed, steps=steps,
                                     cfg_strength=cfg_strength, context=context, guide_voice=guide_voice,
                                     guide=guide)
        return made[take_seed].audio

    if takes == 1:
        render(seed)
        return _marked(made[seed], watermark)
    kept = pick_take(render, new_transcript, takes=takes, seed=seed, on_take=on_take)
    return _marked(replace(made[kept.best.seed], takes=kept), watermark)


def preview_edit(audio: Audio | str | tuple, transcript: str, new_transcript: str, *,
                 models: DitEngine | None = None, context: int = EDIT_CONTEXT_WORDS) -> EditResult:
    """Which spans of the recording `edit` would say again (`DitEngine.preview_edit`), in seconds of `audio`,
    with the words each changes; quick (only the aligner runs). Arguments as in `edit`."""
    parts = models if models is not None else load_dit_engine()
    return parts.preview_edit(_as_audio(audio), transcript, new_transcript, context)


def change_speed(audio: Audio | str | tuple, transcript: str, factor: float, *,
                 span: tuple[float, float] | None = None, seed: int = 0, steps: int | None = None,
                 cfg_strength: float | None = None, models: DitEngine | None = None,
                 watermark: bool = True, guide: float = SPEED_GUIDE) -> EditResult:
    """`audio` (saying `transcript`) spoken `factor` times faster (< 1: slower), throughout or in `span`
    (seconds; widened to whole words). `guide`: how much of the recording itself, stretched, the DiT starts
    from (0: none, a new reading; `DitEngine.change_speed`). Other arguments as in `edit`."""
    parts = models if models is not None else load_dit_engine()
    result = parts.change_speed(_as_audio(audio), transcript, factor, span=span, seed=seed, steps=steps,
                                cfg_strength=cfg_strength, guide=guide)
    return _marked(result, watermark)


def dit_engine_fn(models: DitEngine | None = None, seed: int = 0):
    """The evaluation harness function of `dit` (`tts.evaluation.adapters`): each prompt cloned, the target text
    infilled after it with `seed`."""
    from tts.synthesis import synthesize
    from tts.voice import clone_voice

    parts = models if models is not None else load_dit_engine()

    def engine_fn(target_text: str, prompt_audio: Audio, prompt_text: str, *, style=None, style_ref=None) -> Audio:
        return synthesize(target_text, clone_voice(prompt_audio, prompt_text), engine="dit", emotion=style,
                          style_ref=style_ref, seed=seed, models=parts)

    engine_fn.heard_voices = parts.heard_voices
    return engine_fn


_ENGINES: dict[tuple, DitEngine] = {}
_ENGINES_LOCK = threading.Lock()


def load_dit_engine(**checkpoints: str) -> DitEngine:
    """The `dit` engine for these checkpoints (default: the shipped ones), loaded once per process."""
    names = {**DIT_CHECKPOINTS, **checkpoints}
    if names == DIT_CHECKPOINTS:
        from tts.engines import engine_status

        status = next(s for s in engine_status() if s.name == "dit")
        if not status.available:
            raise CheckpointError(f"the dit engine is unavailable: {status.reason}")
    key = tuple(sorted(names.items()))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = DitEngine.from_pretrained(**names)
        return _ENGINES[key]


__all__ = ["DIT_CHECKPOINTS", "DitEngine", "EditResult", "change_speed", "edit", "load_dit_engine"]

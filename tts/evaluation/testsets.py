"""Test sets in Seed-TTS-eval's meta format, and the built-in held-out sets.

A meta file has one utterance per line: ``utt|prompt_text|prompt_wav|target_text`` (a fifth field, a
ground-truth wav for paired metrics, is accepted). ``prompt_wav`` is relative to the meta file's folder
unless absolute. Blank lines and ``#`` comments are skipped; a bad line is recorded in `TestSet.errors`
and the rest of the file still loads.

Built-in sets (made on first use by the base speakers, then cached; see docs/benchmarks.md):

* ``heldout-en``: 40 target texts (`HELDOUT_TEXTS`, ``data/heldout_texts.txt``) spoken as clones of four
  held-out voices (`HELDOUT_VOICES`, four different synthesizers), 10 each, with prompt texts of their
  own (``data/heldout_prompts.txt``). No training recipe may use these voices or contain these texts:
  corpus builders exclude `TRAINING_EXCLUDED_VOICES` (the held-out voices and ``flite:slt``, the same
  person as ``festival:cmu_us_slt_arctic_hts``) and drop any text for which `overlaps_heldout` is true.
* ``smoke``: 3 short utterances with flite prompts, for tests.

The cache folder is ``$TIMBRE_CACHE/testsets`` (default ``~/.cache/timbre/testsets``); a set's folder name
carries a digest of its definition, so editing the texts builds a new set instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from tts.audio import Audio
from tts.errors import TimbreError
from tts.files import cache_root

logger = logging.getLogger(__name__)

T = TypeVar("T")

HELDOUT_VOICES: tuple[str, ...] = (
    "kokoro:jm_kumo",
    "festival:cmu_us_slt_arctic_hts",
    "flite:awb",
    "piper:joe",
)
"""Base-speaker voices reserved for evaluation prompts: no training recipe may use them."""

HELDOUT_SAME_SPEAKER_VOICES: dict[str, tuple[str, ...]] = {"festival:cmu_us_slt_arctic_hts": ("flite:slt",)}
"""Other synthesizers' voices built from the same recorded person as a held-out voice: CMU ARCTIC's SLT
speaks both (Resemblyzer SIM 0.84 between them, against 0.45-0.72 for other pairs of voices)."""

TRAINING_EXCLUDED_VOICES: tuple[str, ...] = HELDOUT_VOICES + tuple(
    voice for twins in HELDOUT_SAME_SPEAKER_VOICES.values() for voice in twins
)
"""What corpus builders must leave out so that every held-out prompt speaker is unseen in training."""

VOICES_FILE = "voices.json"
"""Beside a meta file: ``{utt: voice id}``, the voice of each item's prompt, where the set knows it (the built-in
sets write it); evaluations use it to leave out items in a voice the engine has heard (`heard_by`)."""


def person_of(voice_id: str) -> str:
    """The person behind base voice `voice_id`: another synthesizer of a held-out voice's recordings counts as that
    held-out voice (`HELDOUT_SAME_SPEAKER_VOICES`)."""
    return next((held for held, twins in HELDOUT_SAME_SPEAKER_VOICES.items() if voice_id in twins), voice_id)


def speakers_behind(voice_id: str) -> frozenset[str]:
    """The people (`person_of`) whose voices `voice_id` is made of: a base voice's own, a pseudo-speaker's sources."""
    from tts.data.voicebank import get_voice, is_pseudo_id

    sources = get_voice(voice_id).sources if is_pseudo_id(voice_id) else (voice_id,)
    return frozenset(person_of(source) for source in sources)


def heard_by(voice_id: str, heard: Iterable[str]) -> bool:
    """Whether `voice_id` is made of a voice in `heard`, the voices an engine speaks with itself (e.g. the `dit`
    engine's guide voice): such a voice is not held out from that engine, so its SIM would measure the engine's
    own voice, and evaluations leave its items out."""
    behind = speakers_behind(voice_id)
    return any(behind & speakers_behind(voice) for voice in heard)


def split_heard(items: Iterable[T], voice_of: Callable[[T], str | None], heard: Sequence[str]) -> tuple[list[T], list[T]]:
    """``(kept, left out)``: `items` whose voice (`voice_of`, None where unknown) is made of a voice in `heard`
    (`heard_by`) are left out, since a SIM to them would measure the engine's own voice, not cloning."""
    kept: list[T] = []
    left: list[T] = []
    for item in items:
        voice = voice_of(item) if heard else None
        (left if voice and heard_by(voice, heard) else kept).append(item)
    if left:
        logger.info("left out %d item(s) in a voice the engine speaks with itself (%s)", len(left), ", ".join(heard))
    return kept, left

META_FIELDS = ("utt", "prompt_text", "prompt_wav", "target_text")
SET_VERSION = 1

PromptSynthesizer = Callable[[str, str], Audio]
"""``(voice_id, text) -> Audio``: how prompt clips are made (the base speakers by default)."""


def _read_lines(filename: str) -> tuple[str, ...]:
    text = resources.files("tts.evaluation").joinpath("data").joinpath(filename).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


@lru_cache(maxsize=1)
def heldout_texts() -> tuple[str, ...]:
    """The 40 held-out target texts (``data/heldout_texts.txt``)."""
    return _read_lines("heldout_texts.txt")


@lru_cache(maxsize=1)
def heldout_prompt_texts() -> tuple[str, ...]:
    """The prompt texts, two per held-out voice in `HELDOUT_VOICES` order (``data/heldout_prompts.txt``)."""
    texts = _read_lines("heldout_prompts.txt")
    if len(texts) != 2 * len(HELDOUT_VOICES):
        raise RuntimeError(f"heldout_prompts.txt must hold {2 * len(HELDOUT_VOICES)} texts, has {len(texts)}")
    return texts


@lru_cache(maxsize=1)
def heldout_edits() -> dict[str, tuple[str, str]]:
    """Held-out text -> ``(one word replaced, three consecutive words replaced)``, new words that read as English
    there (``data/heldout_edits.txt``), for every text of `heldout_texts`."""
    edits = {}
    for line in _read_lines("heldout_edits.txt"):
        fields = line.split("\t")
        if len(fields) != 3:
            raise RuntimeError(f"heldout_edits.txt: expected 3 tab-separated fields, got {len(fields)}: {line!r}")
        edits[fields[0]] = (fields[1], fields[2])
    if list(edits) != list(heldout_texts()):
        raise RuntimeError("heldout_edits.txt must edit every text of heldout_texts.txt, in its order")
    return edits


def __getattr__(name: str):
    # HELDOUT_TEXTS reads a package data file, so it is built on first access, not at import.
    if name == "HELDOUT_TEXTS":
        return heldout_texts()
    if name == "HELDOUT_PROMPT_TEXTS":
        return heldout_prompt_texts()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plain(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@lru_cache(maxsize=1)
def _heldout_plain() -> tuple[str, ...]:
    edits = (text for pair in heldout_edits().values() for text in pair)
    return tuple(_plain(text) for text in (*heldout_texts(), *heldout_prompt_texts(), *edits))


def overlaps_heldout(text: str) -> bool:
    """True when `text` contains a held-out target or prompt text, or an edit of a target (`heldout_edits`), case
    and punctuation ignored.

    Corpus builders drop such texts so that no training data contains the evaluation sentences.
    """
    plain = f" {_plain(text)} "
    return any(f" {held} " in plain for held in _heldout_plain())


# ---------------------------------------------------------------------------------------------------------
# Meta files


@dataclass(frozen=True)
class TestItem:
    """One utterance to synthesize: say `target_text` in the voice of `prompt_wav` (which says `prompt_text`)."""

    __test__ = False  # not a pytest class

    utt: str
    prompt_text: str
    prompt_wav: Path
    target_text: str
    reference_wav: Path | None = None
    """Ground truth of the target, for paired metrics (optional fifth field)."""
    prompt_voice: str | None = None
    """The prompt's voice id, where the set says it (`VOICES_FILE`)."""

    def meta_line(self, root: Path | None = None) -> str:
        """This item as a meta line; paths under `root` are written relative to it."""
        fields = [self.utt, self.prompt_text, _relative(self.prompt_wav, root), self.target_text]
        if self.reference_wav is not None:
            fields.append(_relative(self.reference_wav, root))
        return "|".join(fields)


@dataclass(frozen=True)
class MetaError:
    """A meta line that could not be used, and why."""

    line_number: int
    line: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}: {self.line[:80]!r}"


@dataclass
class TestSet:
    """A named list of test items, with the lines that failed to parse."""

    __test__ = False  # not a pytest class

    name: str
    items: list[TestItem]
    errors: list[MetaError] = field(default_factory=list)
    source: Path | None = None
    """The meta file it was read from."""

    def __len__(self) -> int:
        return len(self.items)

    def limit(self, count: int | None) -> "TestSet":
        """The first `count` items (all when None)."""
        if count is None:
            return self
        if count < 1:
            raise ValueError(f"limit must be at least 1, got {count}")
        return TestSet(self.name, self.items[:count], list(self.errors), self.source)


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            pass
    return str(path)


def parse_meta(text: str, root: str | os.PathLike | None = None, name: str = "custom") -> TestSet:
    """Parse meta-file contents; relative wav paths are resolved against `root` (default: cwd)."""
    base = Path(root) if root is not None else Path.cwd()
    items: list[TestItem] = []
    errors: list[MetaError] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [part.strip() for part in line.split("|")]
        if len(fields) not in (4, 5):
            errors.append(MetaError(number, raw, f"expected 4 fields ({'|'.join(META_FIELDS)}), found {len(fields)}"))
            continue
        utt, prompt_text, prompt_wav, target_text = fields[:4]
        missing = [label for label, value in zip(META_FIELDS, fields) if not value]
        if missing:
            errors.append(MetaError(number, raw, f"empty field(s): {', '.join(missing)}"))
            continue
        if utt in seen:
            errors.append(MetaError(number, raw, f"duplicate utterance id {utt!r}"))
            continue
        seen.add(utt)
        reference = base / fields[4] if len(fields) == 5 and fields[4] else None
        items.append(TestItem(utt, prompt_text, base / prompt_wav, target_text, reference))
    for error in errors:
        logger.warning("test set %s: %s", name, error)
    return TestSet(name, items, errors)


def read_meta(path: str | os.PathLike, name: str | None = None) -> TestSet:
    """Read a meta file; its wav paths are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise TimbreError(f"{path}: no such test-set meta file")
    testset = parse_meta(path.read_text(encoding="utf-8"), root=path.parent, name=name or path.stem)
    testset.source = path
    voices_path = path.parent / VOICES_FILE
    if voices_path.is_file():
        try:
            voices = json.loads(voices_path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise TimbreError(f"{voices_path}: not a JSON object of utterance id -> voice id ({error})") from None
        if not isinstance(voices, dict):
            raise TimbreError(f"{voices_path}: not a JSON object of utterance id -> voice id")
        testset.items = [replace(item, prompt_voice=voices.get(item.utt)) for item in testset.items]
    return testset


def write_meta(items: list[TestItem], path: str | os.PathLike) -> Path:
    """Write `items` as a meta file (atomically), wav paths relative to its folder where possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(item.meta_line(path.parent) + "\n" for item in items), encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Built-in sets


@dataclass(frozen=True)
class _PlannedItem:
    utt: str
    voice: str
    prompt_index: int
    target_text: str


def _heldout_plan() -> list[_PlannedItem]:
    prompts_per_voice = 2
    plan = []
    for k, target in enumerate(heldout_texts()):
        voice_index = k % len(HELDOUT_VOICES)
        prompt_index = prompts_per_voice * voice_index + (k // len(HELDOUT_VOICES)) % prompts_per_voice
        plan.append(_PlannedItem(f"heldout-en-{k:03d}", HELDOUT_VOICES[voice_index], prompt_index, target))
    return plan


def _smoke_plan() -> list[_PlannedItem]:
    texts = heldout_texts()
    awb = HELDOUT_VOICES.index("flite:awb")
    return [
        _PlannedItem(f"smoke-{n:03d}", "flite:awb", 2 * awb + n % 2, texts[k]) for n, k in enumerate((0, 2, 3))
    ]


BUILTIN_SETS: dict[str, Callable[[], list[_PlannedItem]]] = {"heldout-en": _heldout_plan, "smoke": _smoke_plan}


def _voice_slug(voice_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", voice_id).strip("-")


def builtin_set_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of built-in set `name` (named by a digest of its definition)."""
    if name not in BUILTIN_SETS:
        raise TimbreError(f"unknown test set {name!r}; built-in sets: {', '.join(BUILTIN_SETS)} (or a meta file path)")
    plan = BUILTIN_SETS[name]()
    definition = json.dumps(
        [SET_VERSION, [(p.utt, p.voice, heldout_prompt_texts()[p.prompt_index], p.target_text) for p in plan]]
    )
    digest = hashlib.sha256(definition.encode()).hexdigest()[:10]
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "testsets"
    return root / f"{name}-v{SET_VERSION}-{digest}"


def _base_speaker_prompt(voice_id: str, text: str) -> Audio:
    from tts.data.speakers import synthesize_voice_id

    return synthesize_voice_id(voice_id, text).audio


def build_testset(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    synthesize: PromptSynthesizer | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TestSet:
    """Make built-in set `name` in its cache folder if needed (prompt clips, then ``meta.lst``) and load it.

    Args:
        synthesize: ``(voice_id, text) -> Audio`` for the prompt clips; the base speakers by default.
        progress: called with (prompts done, prompts in all) while clips are made.
    """
    folder = builtin_set_dir(name, cache_dir)
    meta_path = folder / "meta.lst"
    if meta_path.is_file():
        return read_meta(meta_path, name=name)
    synthesize = synthesize or _base_speaker_prompt
    prompt_texts = heldout_prompt_texts()
    plan = BUILTIN_SETS[name]()
    prompts = sorted({(p.voice, p.prompt_index) for p in plan})
    paths = {}
    for done, (voice, index) in enumerate(prompts):
        path = folder / "prompts" / f"{_voice_slug(voice)}-{index}.wav"
        if not path.is_file():
            logger.info("making prompt %s (%s)", path.name, voice)
            synthesize(voice, prompt_texts[index]).save(path)
        paths[(voice, index)] = path
        if progress is not None:
            progress(done + 1, len(prompts))
    items = [TestItem(p.utt, prompt_texts[p.prompt_index], paths[(p.voice, p.prompt_index)], p.target_text) for p in plan]
    (folder / VOICES_FILE).write_text(
        json.dumps({item.utt: p.voice for item, p in zip(items, plan)}, indent=1), encoding="utf-8"
    )
    write_meta(items, meta_path)
    return read_meta(meta_path, name=name)


def load_testset(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> TestSet:
    """A built-in set by name (made on first use) or a meta file by path."""
    if str(name_or_path) in BUILTIN_SETS:
        return build_testset(str(name_or_path), cache_dir=cache_dir)
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "meta.lst"
    if not path.is_file():
        raise TimbreError(
            f"unknown test set {str(name_or_path)!r}: use a built-in set ({', '.join(BUILTIN_SETS)}) "
            "or the path of a meta file (utt|prompt_text|prompt_wav|target_text)"
        )
    return read_meta(path)

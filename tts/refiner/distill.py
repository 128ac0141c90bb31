"""Self-distillation pairs for timbre swapping (Seed-TTS, section 3.3): the data step of the distilled refiner.

    python -m tts.refiner.distill --features FEATURES.safetensors --out runs/distill/pairs [--limit 1500] [--max-minutes 30]
    python -m tts.refiner.train --corpus CORPUS --features FEATURES.safetensors --out runs/distill/run \\
        --init-from flow_refiner --distill-pairs runs/distill/pairs --learning-rate 1e-4 --warmup-steps 100

The speech tokens of a recording still carry some of its speaker's timbre, so a refiner prompted with another
voice renders a mixture. Self-distillation teaches it to ignore that leak:

1. For a corpus utterance S_ori (tokens ``z``, speaker A), the trained refiner renders ``z`` prompted by a
   random utterance of another voice B: S_alt says the same words with the same timing and melody, in a timbre
   that is no longer A's. S_alt goes through the vocoder and the studio mel, and the frozen tokenizer reads it
   again: tokens ``z_alt`` (one per token of ``z``, so they line up with S_ori frame for frame).
2. Fine-tuning (`tts.refiner.train` ``--distill-pairs``): for a share of the examples the refiner gets ``z_alt``
   with a prompt of speaker A and must reconstruct S_ori, the recording itself. Whatever timbre ``z_alt``
   carries is B's, the target is A's: following the tokens' timbre is penalised, following the prompt rewarded.

S_ori is the corpus recording rather than the refiner's own rendering of ``z`` with A's prompt: the same
content, prosody and timbre, without the refiner's errors.

Pairs folder: ``recipe.json`` (the models and settings that made it; a rerun with other settings refuses to mix
them) and shards ``pairs-NNNNN.safetensors`` of `SHARD_ITEMS` utterances each, written atomically, so a killed
run resumes at the first missing shard. Utterances are taken in a seeded random order (``--limit`` keeps a
random subset across voices) and each one's voice B and prompt span come from its own seeded generator, so a
shard is the same whatever ran before it. A shard holds ``tokens`` (int32, concatenated), ``token_lengths``,
``items`` (feature-cache indices), ``prompt_items`` / ``prompt_starts`` / ``prompt_ends`` (voice B's utterance
and its frame span), and the utterances' file names (metadata), checked against the feature cache on load.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from tts.errors import TimbreError
from tts.files import atomic_write_bytes, atomic_write_text, read_tensor_file, run_bounds
from tts.refiner.data import FeatureCache

logger = logging.getLogger(__name__)

__all__ = ["PAIRS_FORMAT", "PAIRS_VERSION", "SHARD_ITEMS", "PairRecipe", "make_pairs", "load_pairs", "main"]

PAIRS_FORMAT = "timbre-distill-pairs"
PAIRS_VERSION = 1
SHARD_ITEMS = 32
RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class PairRecipe:
    """How the pairs are made (stored in ``recipe.json``).

    Attributes:
        refiner, tokenizer, vocoder: checkpoint names or folders (the tokenizer must be the feature cache's).
        steps, cfg_strength: the refiner's sampling of S_alt.
        prompt_seconds: range of voice B's prompt length.
        seed: order of the utterances and every utterance's choice of voice B, prompt span and noise.
    """

    refiner: str = "flow_refiner"
    tokenizer: str = "speech_tokenizer"
    vocoder: str = "vocoder"
    steps: int = 4
    cfg_strength: float = 2.0
    prompt_seconds: tuple[float, float] = (2.0, 4.0)
    seed: int = 0


def _same_tokenizer(a: str, b: str) -> bool:
    """Whether two tokenizer references name the same checkpoint (a shipped name or a folder ending in it)."""
    return Path(a).name == Path(b).name


def _order(count: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).permutation(count).tolist()


def _shard_path(folder: Path, number: int) -> Path:
    return folder / f"pairs-{number:05d}.safetensors"


def _check_recipe(folder: Path, recipe: PairRecipe, features: Path) -> None:
    """Write ``recipe.json``, or check that the one there matches (pairs of two recipes never mix)."""
    wanted = {"format": PAIRS_FORMAT, "version": PAIRS_VERSION, "features": str(features.resolve()), **asdict(recipe)}
    wanted = json.loads(json.dumps(wanted))  # tuples as lists, as read back
    path = folder / RECIPE_FILE
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TimbreError(f"{path}: unreadable ({error}); delete the folder or choose another --out") from error
        if found != wanted:
            changed = sorted(key for key in set(found) | set(wanted) if found.get(key) != wanted.get(key))
            raise TimbreError(f"{folder} holds pairs made with other settings ({', '.join(changed)}); "
                              "choose another --out or delete it")
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(wanted, indent=2))


class _Renderer:
    """Voice B's rendering of an utterance's tokens, read again by the tokenizer (step 1 of the module docstring)."""

    def __init__(self, cache: FeatureCache, recipe: PairRecipe, device: torch.device) -> None:
        from tts.refiner.model import FlowRefiner
        from tts.tokenizer.model import SpeechTokenizer
        from vocoder.vocos import Vocos

        self.cache, self.recipe, self.device = cache, recipe, device
        self.refiner = FlowRefiner.from_pretrained(recipe.refiner).float().eval().to(device)
        self.tokenizer = SpeechTokenizer.from_pretrained(recipe.tokenizer).float().eval().to(device)
        self.vocoder = Vocos.from_pretrained(recipe.vocoder).float().eval().to(device)
        config = self.refiner.config
        if (config.codebook_size, config.frames_per_token) != (cache.codebook_size, cache.frames_per_token):
            raise TimbreError(f"refiner {recipe.refiner!r} was trained on other tokens than {cache.path}'s")
        if self.tokenizer.config.mel != cache.mel_config:
            raise TimbreError(f"tokenizer {recipe.tokenizer!r} reads another mel than {cache.path}'s")
        self.by_voice: dict[str, list[int]] = {}
        for index, item in enumerate(cache.items):
            if item.frames >= 2 * cache.frames_per_token:
                self.by_voice.setdefault(item.voice_id, []).append(index)
        if len(self.by_voice) < 2:
            raise TimbreError(f"{cache.path}: self-distillation needs at least two voices")

    def prompt_for(self, index: int) -> tuple[int, int, int]:
        """Voice B's utterance and frame span ``(item, start, end)`` for utterance `index` (token-aligned)."""
        cache, step = self.cache, self.cache.frames_per_token
        rng = np.random.default_rng([self.recipe.seed, index])
        voices = sorted(v for v in self.by_voice if v != cache.items[index].voice_id)
        others = self.by_voice[voices[int(rng.integers(len(voices)))]]
        source = others[int(rng.integers(len(others)))]
        low, high = (round(s * cache.mel_config.frame_rate / step) for s in self.recipe.prompt_seconds)
        available = cache.items[source].frames // step
        length = max(1, min(int(rng.integers(low, high + 1)), available))
        start = int(rng.integers(0, available - length + 1))
        return source, start * step, (start + length) * step

    @torch.inference_mode()
    def tokens_alt(self, index: int, prompt: tuple[int, int, int]) -> torch.Tensor:
        """``(N,)`` tokens of utterance `index` rendered in voice B's timbre and tokenized again."""
        from tts.audio import log_mel
        from tts.refiner.sampling import generate

        cache, step = self.cache, self.cache.frames_per_token
        source, start, end = prompt
        tokens = cache.tokens(index).to(self.device)
        prompt_mel = cache.mel(source, start, end).to(self.device)
        prompt_tokens = cache.tokens(source, start // step, end // step).to(self.device)
        mel = generate(self.refiner, tokens, prompt_mel, prompt_tokens, steps=self.recipe.steps,
                       cfg_strength=self.recipe.cfg_strength, seed=(self.recipe.seed * 1_000_003 + index) % 2**31)
        samples = self.vocoder.decode(mel[0]).samples  # 24 kHz float32
        again = log_mel(torch.from_numpy(samples), cache.mel_config)[:, : tokens.shape[0] * step].to(self.device)
        ids, lengths = self.tokenizer.encode(again[None])
        count = int(lengths[0])
        if count != tokens.shape[0]:
            raise TimbreError(f"{cache.items[index].file_name}: S_alt read back as {count} tokens, not {tokens.shape[0]}")
        return ids[0, :count].to(torch.int32).cpu()


def make_pairs(
    features: str | Path,
    out: str | Path,
    recipe: PairRecipe = PairRecipe(),
    limit: int | None = None,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    max_minutes: float | None = None,
) -> dict:
    """Write (or complete) the pairs folder `out` for the feature cache `features`; returns a summary (``complete``
    False when `max_minutes` ran out first: no shard is started after that, and a rerun goes on).

    Raises:
        TimbreError: a folder made with another recipe, models that do not fit the cache, or fewer than two voices.
    """
    from safetensors.torch import save

    from tts.device import select_device

    features, out = Path(features), Path(out)
    cache = FeatureCache(features)
    if not _same_tokenizer(cache.tokenizer, recipe.tokenizer):
        raise TimbreError(f"{features} holds tokens of {cache.tokenizer!r}; pass --tokenizer {cache.tokenizer}")
    _check_recipe(out, recipe, features)
    order = _order(len(cache), recipe.seed)[: limit or None]
    shards = [order[i : i + SHARD_ITEMS] for i in range(0, len(order), SHARD_ITEMS)]
    todo = [n for n in range(len(shards)) if not _shard_path(out, n).is_file()]
    summary = {"pairs": str(out), "items": len(order), "shards": len(shards), "written": 0, "complete": not todo}
    if not todo:
        return summary
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    renderer = _Renderer(cache, recipe, select_device(device))
    done = sum(len(s) for n, s in enumerate(shards) if n not in todo)
    for number in todo:
        items = [i for i in shards[number] if cache.items[i].frames >= 2 * cache.frames_per_token]
        prompts = [renderer.prompt_for(i) for i in items]
        tokens = [renderer.tokens_alt(i, p) for i, p in zip(items, prompts)]
        tensors = {
            "tokens": torch.cat(tokens) if tokens else torch.zeros(0, dtype=torch.int32),
            "token_lengths": torch.tensor([t.shape[0] for t in tokens], dtype=torch.int64),
            "items": torch.tensor(items, dtype=torch.int64),
            "prompt_items": torch.tensor([p[0] for p in prompts], dtype=torch.int64),
            "prompt_starts": torch.tensor([p[1] for p in prompts], dtype=torch.int64),
            "prompt_ends": torch.tensor([p[2] for p in prompts], dtype=torch.int64),
        }
        metadata = {"format": PAIRS_FORMAT, "version": str(PAIRS_VERSION),
                    "file_names": json.dumps([cache.items[i].file_name for i in items], ensure_ascii=False)}
        atomic_write_bytes(_shard_path(out, number), save(tensors, metadata=metadata))
        summary["written"] += 1
        done += len(shards[number])
        if progress is not None:
            progress(done, len(order))
        if deadline is not None and time.monotonic() >= deadline:
            break
    summary["complete"] = summary["written"] == len(todo)
    return summary


def load_pairs(folder: str | Path, cache: FeatureCache) -> dict[int, torch.Tensor]:
    """The distillation tokens of a pairs folder: feature-cache index -> ``(N,)`` int64 tokens ``z_alt``.

    Raises:
        TimbreError: not a pairs folder, pairs of another tokenizer, or utterances that are not the cache's.
    """
    folder = Path(folder)
    try:
        recipe = json.loads((folder / RECIPE_FILE).read_text())
    except (OSError, ValueError) as error:
        raise TimbreError(f"{folder}: not a pairs folder ({error}); make one with `python -m tts.refiner.distill`") from error
    if recipe.get("format") != PAIRS_FORMAT or recipe.get("version") != PAIRS_VERSION:
        raise TimbreError(f"{folder}: not version-{PAIRS_VERSION} distillation pairs; make them again")
    if not _same_tokenizer(recipe["tokenizer"], cache.tokenizer):
        raise TimbreError(f"{folder}: pairs of tokenizer {recipe['tokenizer']!r}, the features are of {cache.tokenizer!r}")
    pairs: dict[int, torch.Tensor] = {}
    for path in sorted(folder.glob("pairs-*.safetensors")):
        tensors, meta = read_tensor_file(path, PAIRS_FORMAT, PAIRS_VERSION,
                                         "delete it and run `python -m tts.refiner.distill` again")
        names = json.loads(meta["file_names"])
        for index, name, (start, end) in zip(tensors["items"].tolist(), names, run_bounds(tensors["token_lengths"])):
            item = cache.items[index] if 0 <= index < len(cache) else None
            if item is None or item.file_name != name or item.num_tokens != end - start:
                raise TimbreError(f"{path}: utterance {name!r} is not item {index} of {cache.path}; "
                                  "the pairs were made from another feature cache")
            pairs[index] = tensors["tokens"][start:end].long()
    if not pairs:
        raise TimbreError(f"{folder}: no pairs yet; run `python -m tts.refiner.distill` first")
    return pairs


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m tts.refiner.distill``."""
    defaults = PairRecipe()
    parser = argparse.ArgumentParser(prog="python -m tts.refiner.distill",
                                     description="Make self-distillation pairs (resumable; see the module docs).")
    parser.add_argument("--features", type=Path, required=True, help="refiner feature cache of the corpus")
    parser.add_argument("--out", type=Path, required=True, help="pairs folder (resumed when it exists)")
    parser.add_argument("--refiner", default=defaults.refiner, help="refiner that renders voice B")
    parser.add_argument("--tokenizer", default=defaults.tokenizer, help="the feature cache's tokenizer")
    parser.add_argument("--vocoder", default=defaults.vocoder)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="ODE steps of the refiner")
    parser.add_argument("--cfg-strength", type=float, default=defaults.cfg_strength)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--limit", type=int, help="only this many utterances (a seeded random subset)")
    parser.add_argument("--max-minutes", type=float, help="start no shard after this many minutes (rerun to go on)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tts.refiner.distill``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    recipe = PairRecipe(refiner=args.refiner, tokenizer=args.tokenizer, vocoder=args.vocoder, steps=args.steps,
                        cfg_strength=args.cfg_strength, seed=args.seed)

    def progress(done: int, total: int) -> None:
        logger.info("pairs: %d / %d utterances", done, total)

    try:
        summary = make_pairs(args.features, args.out, recipe, args.limit, args.device, progress, args.max_minutes)
    except TimbreError as error:
        print(f"tts.refiner.distill: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The measurements behind docs/corpus.md, so anyone can rerun them:

    python -m tts.data.measure sim --voices 48          # Resemblyzer SIM between voice-bank voices
    python -m tts.data.measure warps --sentences 12     # WER of warped vs unwarped base voices
    python -m tts.data.measure styles --sentences 8     # F0, range, rate, level, voicing and WER per style
    python -m tts.data.measure corpus DIR --per-group 12   # WER per base speaker on a sample of a corpus

Every command prints its numbers as JSON (and writes them to ``--json PATH``). Sentences come
from the held-out split of `tts.data.sentences` (text no corpus trains on). ASR is Whisper tiny.en and SIM
is Resemblyzer (the evaluation harness's CPU proxies).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from tts.files import atomic_write_text

logger = logging.getLogger(__name__)


def _texts(count: int, seed: int = 11) -> list[str]:
    from tts.data.sentences import sample_sentences

    return [sentence.text for sentence in sample_sentences(count, seed=seed, split="heldout", kinds=["statement", "question", "exclamation"])]


def _wer(text: str, audio) -> float:
    from tts.evaluation.asr import transcribe
    from tts.evaluation.wer import wer

    return wer(text, transcribe(audio))


def _summary(values: Sequence[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"n": 0}
    return {"n": int(array.size), "mean": round(float(array.mean()), 3), "p5": round(float(np.percentile(array, 5)), 3),
            "median": round(float(np.median(array)), 3), "p95": round(float(np.percentile(array, 95)), 3),
            "max": round(float(array.max()), 3)}


def sample_voices(count: int, seed: int = 0, heldout: bool = False) -> list[str]:
    """A stratified sample of the voice bank: half blends, half warps spread over their sources."""
    from tts.data.voicebank import voice_bank

    rng = random.Random(seed)
    pool = [s for s in voice_bank() if s.heldout == heldout]
    blends = [s.voice_id for s in pool if s.kind == "blend"]
    by_source: dict[str, list[str]] = defaultdict(list)
    for speaker in pool:
        if speaker.kind == "warp":
            by_source[speaker.sources[0]].append(speaker.voice_id)
    rng.shuffle(blends)
    chosen = blends[: count // 2]
    sources = sorted(by_source)
    for source in sources:
        rng.shuffle(by_source[source])
    while len(chosen) < count and any(by_source.values()):
        for source in sources:
            if by_source[source] and len(chosen) < count:
                chosen.append(by_source[source].pop())
    return chosen


def sim_distribution(voice_ids: Sequence[str], seed: int = 0) -> dict:
    """Resemblyzer SIM between voices (different sentences) and within a voice (two sentences)."""
    from tts.data.voicebank import synthesize
    from tts.evaluation.similarity import cosine, speaker_embedding

    first, second = _texts(2, seed=seed + 3)
    embeddings = []
    for voice_id in voice_ids:
        embeddings.append((speaker_embedding(synthesize(voice_id, first).audio),
                           speaker_embedding(synthesize(voice_id, second).audio)))
        logger.info("embedded %s", voice_id)
    same = [cosine(a, b) for a, b in embeddings]
    different, nearest = [], []
    families = defaultdict(list)
    for i, (a, _) in enumerate(embeddings):
        row = []
        for j, (_, b) in enumerate(embeddings):
            if i == j:
                continue
            value = cosine(a, b)
            row.append(value)
            if i < j:
                different.append(value)
                families[" / ".join(sorted((_family(voice_ids[i]), _family(voice_ids[j]))))].append(value)
        nearest.append(max(row))
    return {
        "voices": list(voice_ids),
        "same_voice": _summary(same),
        "different_voices": _summary(different),
        "nearest_other_voice": _summary(nearest),
        "share_of_pairs_above_0.85": round(float(np.mean(np.asarray(different) > 0.85)), 4),
        "by_family": {key: _summary(values) for key, values in sorted(families.items())},
    }


def _family(voice_id: str) -> str:
    from tts.data.voicebank import get_voice, is_pseudo_id

    if not is_pseudo_id(voice_id):
        return f"base:{voice_id.split(':')[0]}"
    speaker = get_voice(voice_id)
    return "blend" if speaker.kind == "blend" else f"warp:{speaker.engine}"


def warp_wer(sources: Sequence[str], warps_per_source: int, sentences: int) -> list[dict]:
    """WER of each source voice and of its bank warps on the same sentences, and the warps' SIM to it."""
    from tts.data.voicebank import synthesize, voice_bank
    from tts.evaluation.similarity import similarity

    texts = _texts(sentences)
    rows = []
    for source in sources:
        warps = [s.voice_id for s in voice_bank() if s.kind == "warp" and s.sources[0] == source][:warps_per_source]
        base = [synthesize(source, text).audio for text in texts]
        base_wer = [_wer(text, audio) for text, audio in zip(texts, base)]
        warp_values, sims = [], []
        for voice_id in warps:
            for index, text in enumerate(texts):
                audio = synthesize(voice_id, text).audio
                warp_values.append(_wer(text, audio))
                if index == 0:
                    sims.append(similarity(audio, base[0]))
        rows.append({"source": source, "warps": warps, "sentences": len(texts),
                     "wer_source": round(statistics.mean(base_wer), 4), "wer_warps": round(statistics.mean(warp_values), 4),
                     "sim_warp_to_source": _summary(sims)})
        logger.info("%s", rows[-1])
    return rows


def style_measures(voices: Sequence[str], sentences: int, intensity: float = 1.0) -> dict:
    """Per style, relative to neutral on the same voice and sentence: F0 median shift (semitones), F0
    range (5-95 %, semitones), duration ratio (neutral / styled = rate), level (dB), voiced fraction,
    and the WER of each style."""
    from tts.data.styles import LEVEL_GATE_DB, STYLES
    from tts.preprocess import active_rms_dbfs
    from tts.data.voicebank import render
    from tts.evaluation.prosody import prosody_stats

    texts = _texts(sentences, seed=5)
    rows: dict[str, dict[str, list[float]]] = {style: defaultdict(list) for style in STYLES}
    for voice in voices:
        for index, text in enumerate(texts):
            reference = None
            for style in STYLES:
                output = render(voice, text, style=style, intensity=0.0 if style == "neutral" else intensity, seed=index).output
                stats = prosody_stats(output.audio, output.text)
                level = active_rms_dbfs(output.audio, gate_db=-LEVEL_GATE_DB)
                record = rows[style]
                if style == "neutral":
                    reference = (stats, output.audio.duration, level)
                if stats.f0_median_hz and reference[0].f0_median_hz:
                    record["f0_shift_st"].append(12 * np.log2(stats.f0_median_hz / reference[0].f0_median_hz))
                if stats.f0_range_semitones is not None:
                    record["f0_range_st"].append(stats.f0_range_semitones)
                record["rate_ratio"].append(reference[1] / output.audio.duration)
                record["level_db"].append(level)
                record["voiced_fraction"].append(stats.voiced_fraction)
                if stats.speaking_rate:
                    record["phones_per_s"].append(stats.speaking_rate)
                record["wer"].append(_wer(text, output.audio))
            logger.info("%s %d done", voice, index)
    return {style: {key: round(float(np.mean(values)), 3) for key, values in record.items()} for style, record in rows.items()}


def _source_of(record: dict) -> str:
    recipe = record.get("voice_recipe")
    if not recipe:
        return record["voice_id"]
    return "kokoro blend" if recipe["kind"] == "blend" else f"warp of {recipe['source']}"


def corpus_wer(folder: str | Path, per_group: int, seed: int = 0) -> dict:
    """WER per base speaker (and per kind of pseudo-speaker) on a random sample of a built corpus."""
    from tts.audio import load_audio

    records = [json.loads(line) for line in (Path(folder) / "metadata.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[_source_of(record)].append(record)
        engine_key = f"engine {record['engine']}"
        groups[engine_key].append(record)
    rng = random.Random(seed)
    result = {}
    for name in sorted(groups):
        chosen = list(groups[name])
        rng.shuffle(chosen)
        chosen = chosen[:per_group]
        values = [_wer(r["source_text"], load_audio(Path(folder) / r["file_name"])) for r in chosen]
        result[name] = {"items": len(groups[name]), "sampled": len(values), "wer_mean": round(statistics.mean(values), 4),
                        "over_50pct": sum(v > 0.5 for v in values)}
        logger.info("%s %s", name, result[name])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tts.data.measure``."""
    parser = argparse.ArgumentParser(prog="python -m tts.data.measure", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("sim")
    sim.add_argument("--voices", type=int, default=48)
    sim.add_argument("--heldout", action="store_true", help="sample the held-out voices instead")
    warps = commands.add_parser("warps")
    warps.add_argument("--sources", default="flite:rms,flite:kal16,festival:kal_diphone,kokoro:jf_alpha,kokoro:jf_nezumi")
    warps.add_argument("--warps-per-source", type=int, default=4)
    warps.add_argument("--sentences", type=int, default=8)
    styles = commands.add_parser("styles")
    styles.add_argument("--voices", default="flite:rms,festival:kal_diphone,kokoro:jf_alpha,pw0000,pk0001")
    styles.add_argument("--sentences", type=int, default=4)
    styles.add_argument("--intensity", type=float, default=1.0)
    corpus = commands.add_parser("corpus")
    corpus.add_argument("folder", type=Path)
    corpus.add_argument("--per-group", type=int, default=12)
    for command in (sim, warps, styles, corpus):
        command.add_argument("--json", type=Path, help="also write the numbers here")
        command.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "sim":
        result = sim_distribution(sample_voices(args.voices, args.seed, args.heldout), args.seed)
    elif args.command == "warps":
        result = warp_wer(args.sources.split(","), args.warps_per_source, args.sentences)
    elif args.command == "styles":
        result = style_measures(args.voices.split(","), args.sentences, args.intensity)
    else:
        result = corpus_wer(args.folder, args.per_group, args.seed)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

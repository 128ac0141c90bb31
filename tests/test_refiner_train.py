"""The flow refiner's data and training recipe: feature cache, (prompt, target) pairs and prompt augmentation,
the flow-matching loss, and a few training steps with resume and export."""

from __future__ import annotations

import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tts.audio import STUDIO_MEL, load_audio, log_mel
from tts.checkpoints import read_model_card_data
from tts.data.corpus import METADATA_NAME, CorpusItem
from tts.errors import TimbreError
from dataclasses import replace

from tts.data.corpus import read_metadata
from tts.data.styles import STYLES
from tts.refiner.data import BatchRecipe, BatchSampler, FeatureCache, collate, corpus_styles, extract_features
from tts.refiner.model import FlowRefiner
from tts.refiner.train import PRESETS, TrainOptions, flow_matching_loss, guidance_drops, main, train
from tts.training import Augmentation

pytestmark = pytest.mark.usefixtures("single_thread")

VOICES = {"espeak:en": "en", "espeak:en+f3": "en+f3"}
TEXTS = ["Hello there.", "A quick test of the voice.", "Good morning, Sam."]


class ProjectionTokenizer:
    """Test-only stand-in for the speech tokenizer: each token is an FSQ-style rounding of a fixed random
    projection of three mel frames (5 x 5 x 2 = 50 ids). Deterministic, and it follows `encode`'s contract."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(frames_per_token=3, codebook_size=50, mel=STUDIO_MEL)
        self.projection = torch.randn(STUDIO_MEL.n_mels, 3, generator=torch.Generator().manual_seed(0)) / 10
        self.levels = torch.tensor([5, 5, 2])

    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        frames = mel.shape[-1]
        tokens = -(-frames // 3)
        padded = torch.nn.functional.pad(mel, (0, tokens * 3 - frames), mode="replicate")
        pooled = padded.unflatten(-1, (tokens, 3)).mean(-1).transpose(1, 2)  # (B, N, M)
        unit = (torch.tanh((pooled + 5.0) @ self.projection) + 1) / 2  # (B, N, 3) in [0, 1]
        digits = torch.minimum((unit * self.levels).long(), self.levels - 1)
        ids = digits[..., 0] * 10 + digits[..., 1] * 2 + digits[..., 2]
        lengths = torch.full((mel.shape[0],), tokens) if mel_lengths is None else -(-mel_lengths // 3)
        return ids, lengths


def espeak_corpus(folder):
    """Two espeak-ng voices, three short sentences each, in the corpus format, in the new folder `folder`."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder.mkdir()
    lines = []
    for voice_id, voice in VOICES.items():
        for index, text in enumerate(TEXTS):
            name = f"{voice.replace('+', '_')}_{index}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "190", "-w", str(folder / name), text], check=True, timeout=30)
            lines.append(CorpusItem(name, text, voice_id, engine="espeak").to_json())
    (folder / METADATA_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return espeak_corpus(tmp_path_factory.mktemp("refiner") / "corpus")


@pytest.fixture(scope="module")
def cache(corpus, tmp_path_factory):
    path = extract_features(corpus, ProjectionTokenizer(), tmp_path_factory.mktemp("features") / "f.safetensors", "projection")
    return FeatureCache(path)


def test_feature_cache_holds_mels_and_tokens_of_every_item(corpus, cache):
    assert len(cache) == 6 and cache.tokenizer == "projection"
    assert (cache.codebook_size, cache.frames_per_token, cache.mel_config) == (50, 3, STUDIO_MEL)
    tokenizer = ProjectionTokenizer()
    for index, item in enumerate(cache.items):
        mel = log_mel(load_audio(corpus / item.file_name).samples)
        assert cache.mel(index).shape == mel.shape and item.num_tokens == -(-mel.shape[-1] // 3)
        assert torch.allclose(cache.mel(index), mel, atol=0.01)  # stored as float16
        assert torch.equal(cache.tokens(index), tokenizer.encode(mel[None])[0][0])
        assert torch.equal(cache.mel(index, 5, 9), cache.mel(index)[:, 5:9])
    everything = torch.cat([cache.mel(i) for i in range(len(cache))], dim=1)
    assert cache.mel_mean == pytest.approx(float(everything.mean()), abs=0.01)
    assert cache.mel_std == pytest.approx(float(everything.std()), abs=0.01)
    (cache.path.parent / "bad.safetensors").write_bytes(b"not a cache")
    with pytest.raises(TimbreError):
        FeatureCache(cache.path.parent / "bad.safetensors")


def test_pairs_are_token_aligned_and_prompts_share_the_voice(corpus, cache):
    recipe = BatchRecipe(target_frames=60, prompt_frames=(20, 40), same_utterance_probability=0.5)
    sampler = BatchSampler(cache, range(len(cache)), recipe, np.random.default_rng(0), corpus=corpus)
    for _ in range(20):
        index = int(sampler.rng.integers(len(cache)))
        example = sampler.example(index, augment=False)
        frames, prompt_frames = example.target_mel.shape[-1], example.prompt_mel.shape[-1]
        assert frames == 3 * example.tokens.shape[0] <= 60 and prompt_frames == 3 * example.prompt_tokens.shape[0]
        assert 3 <= prompt_frames <= 40
        # The prompt is a span of an utterance of the same voice, and the tokens are that span's.
        voice = cache.items[index].voice_id
        sources = [i for i, item in enumerate(cache.items) if item.voice_id == voice]
        assert any(
            torch.equal(example.prompt_mel, cache.mel(i, s, s + prompt_frames))
            for i in sources for s in range(0, cache.items[i].frames - prompt_frames + 1, 3)
        )
    batch = collate([sampler.example(0, augment=False), sampler.example(3, augment=False)], cache)
    assert batch.target_mel.shape[-1] == 3 * batch.tokens.shape[1] == 3 * int(batch.token_lengths.max())
    assert batch.prompt_tokens.shape[1] == -(-batch.prompt_mel.shape[-1] // 3)


def test_prompt_augmentation_band_limits_the_prompt(corpus, cache):
    lowpass_only = Augmentation(gain_db=(0.0, 0.0), noise_probability=0.0, lowpass_probability=1.0, lowpass_hz=(4000.0, 4000.0))
    always = BatchRecipe(augmentation=lowpass_only)
    sampler = BatchSampler(cache, range(len(cache)), always, np.random.default_rng(0), corpus=corpus)
    clean, limited = cache.mel(1, 0, 60), sampler._prompt_mel(1, 0, 60, augment=True)
    high = slice(60, None)  # mel bands well above 4 kHz
    assert (clean[high] - limited[high]).mean() > 3.0  # much less energy up there
    assert (clean[:30] - limited[:30]).abs().mean() < 0.5  # the low bands are kept


def test_flow_loss_ignores_padding_and_guidance_drops_are_per_item(cache):
    torch.manual_seed(0)
    model = FlowRefiner(PRESETS["tiny"].model.__class__(**{**PRESETS["tiny"].model.__dict__, "codebook_size": 50}))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    sampler = BatchSampler(cache, range(len(cache)), BatchRecipe(target_frames=30), np.random.default_rng(1))
    short, long = sampler.example(0, augment=False), sampler.example(4, augment=False)
    batch = collate([short, long], cache)
    noise = torch.randn(batch.target_mel.shape, generator=torch.Generator().manual_seed(0))
    time = torch.tensor([0.3, 0.6])
    loss = flow_matching_loss(model, batch, time, noise)
    changed = collate([short, long], cache)
    real = 3 * int(changed.token_lengths[0])
    changed.target_mel[0, :, real:] += 10.0  # padding content must not matter
    assert torch.allclose(loss, flow_matching_loss(model, changed, time, noise))
    drops = guidance_drops(PRESETS["tiny"], 1000, torch.Generator().manual_seed(0))
    rate = {key: float(value.float().mean()) for key, value in drops.items()}
    assert rate["drop_prompt"] == pytest.approx(0.15 + 0.85 * 0.1, abs=0.04)
    assert rate["drop_tokens"] == pytest.approx(0.15, abs=0.04)
    assert not torch.equal(drops["drop_prompt"], drops["drop_speaker"])
    assert torch.isfinite(flow_matching_loss(model, batch, time, noise, {k: v[:2] for k, v in drops.items()}))


def styled_corpus(corpus, folder, styles):
    """`corpus`'s metadata with item ``i`` relabelled ``styles[i]`` (label, intensity) in the new folder `folder`
    (the audio stays where it is: only the labels are read from here)."""
    folder.mkdir()
    items = [replace(item, style=label, intensity=intensity) for item, (label, intensity) in zip(read_metadata(corpus), styles)]
    (folder / METADATA_NAME).write_text("".join(item.to_json() + "\n" for item in items), encoding="utf-8")
    return folder


LABELS = [("neutral", 0.0), ("happy", 0.5), ("whisper", 1.0), ("sad", 0.2), ("neutral", 0.0), ("angry", 0.8)]


def test_targets_carry_their_corpus_style_and_intensity(corpus, cache, tmp_path):
    labelled = styled_corpus(corpus, tmp_path / "styled", LABELS)
    by_file = {item.file_name: (STYLES.index(item.style), item.intensity) for item in read_metadata(labelled)}
    styles = corpus_styles(cache, labelled, STYLES)
    assert styles == [by_file[item.file_name] for item in cache.items]
    assert sorted(styles) == sorted((STYLES.index(label), value) for label, value in LABELS)
    sampler = BatchSampler(cache, range(len(cache)), BatchRecipe(target_frames=30, prompt_frames=(9, 15)),
                           np.random.default_rng(0), styles=styles)
    picks = [0, 2, 5, 2]
    batch = collate([sampler.example(i, augment=False) for i in picks], cache)
    assert batch.style_ids.tolist() == [styles[i][0] for i in picks]
    assert batch.style_intensity.tolist() == pytest.approx([styles[i][1] for i in picks])
    plain = collate([BatchSampler(cache, range(6), BatchRecipe(), np.random.default_rng(0)).example(2)], cache)
    assert plain.style_ids.tolist() == [0] and plain.style_intensity.tolist() == [0.0]
    with pytest.raises(TimbreError, match="not one of"):
        corpus_styles(cache, labelled, ("neutral", "happy"))
    with pytest.raises(ValueError, match="entries"):
        BatchSampler(cache, range(6), BatchRecipe(), np.random.default_rng(0), styles=styles[:3])
    partial_corpus = tmp_path / "partial"
    partial_corpus.mkdir()
    (partial_corpus / METADATA_NAME).write_text((labelled / METADATA_NAME).read_text().splitlines()[0] + "\n")
    with pytest.raises(TimbreError, match="not in"):
        corpus_styles(cache, partial_corpus, STYLES)


def test_style_training_labels_the_model_and_fine_tunes_a_neutral_one(corpus, cache, tmp_path):
    labelled = styled_corpus(corpus, tmp_path / "styled", LABELS)
    base = dict(corpus=labelled, features=cache.path, config="tiny", max_steps=1, batch_size=2, validation_items=1,
                prompt_augmentation=False)
    train(TrainOptions(out=tmp_path / "neutral", **base))
    assert FlowRefiner.from_pretrained(tmp_path / "neutral" / "export").config.styles == ("neutral",)
    train(TrainOptions(out=tmp_path / "styled_run", styles=True, init_from=str(tmp_path / "neutral" / "export"), **base))
    model = FlowRefiner.from_pretrained(tmp_path / "styled_run" / "export")
    assert model.config.styles == STYLES and model.config.style_id("whisper") == STYLES.index("whisper")
    counts = read_model_card_data(tmp_path / "styled_run" / "export")["Data"]["styles"]
    assert counts == {"neutral": 2, "happy": 1, "sad": 1, "angry": 1, "surprised": 0, "calm": 0, "whisper": 1}


def test_three_steps_then_resume_with_a_tiny_tokenizer(corpus, tmp_path):
    tokenizer_module = pytest.importorskip("tts.tokenizer", reason="tts.tokenizer is not in this checkout")
    torch.manual_seed(0)
    tokenizer = tokenizer_module.SpeechTokenizer(
        tokenizer_module.SpeechTokenizerConfig(dim=32, num_layers=1, heads=2, dim_head=16, head_layers=1)
    )
    tokenizer_folder = tokenizer.save_pretrained(tmp_path / "tokenizer")
    out = tmp_path / "run"
    options = TrainOptions(corpus=corpus, out=out, tokenizer=str(tokenizer_folder), config="tiny", max_steps=2,
                           batch_size=2, log_every=1, validation_items=1)
    first = train(options)
    assert first["step"] == 2 and all(np.isfinite(r["loss"]) for r in first["history"])
    assert (out / "features.safetensors").is_file() and (out / "state").is_dir() and not (out / "state.tmp").exists()
    exported = FlowRefiner.from_pretrained(out / "export")
    assert exported.config.codebook_size == tokenizer.config.codebook_size
    assert exported.config.tokenizer == str(tokenizer_folder)
    assert exported.config.mel_mean == pytest.approx(FeatureCache(out / "features.safetensors").mel_mean, abs=1e-3)
    card = read_model_card_data(out / "export")
    assert card["Training"]["steps"] == 2 and card["Data"]["voices"] == 2

    assert main(["--corpus", str(corpus), "--out", str(out), "--config", "tiny", "--max-steps", "3",
                 "--batch-size", "2", "--log-every", "1"]) == 0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if "event" not in e] == [1, 2, 3]  # resumed at step 2: one more step
    assert [e["step"] for e in logged if e.get("event") == "validation"] == [2, 3]
    assert read_model_card_data(out / "export")["Training"]["steps"] == 3
    with pytest.raises(TimbreError, match="tokenizer"):
        train(TrainOptions(**{**options.__dict__, "tokenizer": "another", "max_steps": 4}))

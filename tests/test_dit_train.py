"""The studio DiT's text condition (units laid out on frames), its alignment data and infilling batches, and the
training recipe: a few steps with resume, export and sampling, and the warm start from a flow refiner."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import write_tone_corpus
from tests.test_refiner_train import ProjectionTokenizer
from tts.checkpoints import read_model_card_data
from tts.dit.data import AlignedCorpus, InfillRecipe, InfillSampler, extract_alignments
from tts.dit.model import DiT
from tts.dit.sampling import sample
from tts.dit.train import PRESETS, TrainOptions, main, train, warm_start
from tts.dit.units import BOUNDARY, NUM_UNITS, aligned_unit_frames, expand, fit_durations, text_units
from tts.errors import TextError, TimbreError
from tts.refiner.data import extract_features
from tts.text import PHONEME_TABLE, Word
from tts.tokenizer.align import PhonemeTiming, WordTiming

pytestmark = pytest.mark.usefixtures("single_thread")

HOP = 256 / 24000


def test_text_units_fold_stress_and_keep_words_apart():
    words = [Word("cat", ("k", "ˈ", "æ", "t")), Word(",", ()), Word("go", ("ɡ", "ˌ", "oʊ"))]
    units = text_units(words)
    size, wb = len(PHONEME_TABLE), PHONEME_TABLE.word_boundary_id
    assert units.ids == (wb, PHONEME_TABLE.id("k"), PHONEME_TABLE.id("æ") + size, PHONEME_TABLE.id("t"), wb,
                         PHONEME_TABLE.id(","), wb, PHONEME_TABLE.id("ɡ"), PHONEME_TABLE.id("oʊ") + 2 * size, wb)
    assert units.words == (BOUNDARY, 0, 0, 0, BOUNDARY, 1, BOUNDARY, 2, 2, BOUNDARY)
    assert max(units.ids) < NUM_UNITS
    assert units.word_units(2, 3) == (7, 9) and units.word_units(0, 3) == (1, 9)
    assert units.word_units(1, 1) == (4, 4)  # an insertion point: right after word 0
    with pytest.raises(TextError):
        text_units([Word(".", ())])


def test_aligned_units_cover_every_frame_and_follow_the_timings():
    timings = [
        WordTiming("cat", 0.20, 0.50, [PhonemeTiming("k", 0.20, 0.30), PhonemeTiming("ˈ", 0.30, 0.30),
                                       PhonemeTiming("æ", 0.30, 0.42), PhonemeTiming("t", 0.42, 0.50)]),
        WordTiming(",", 0.50, 0.70),
        WordTiming("go", 0.70, 1.00, [PhonemeTiming("ɡ", 0.70, 0.80), PhonemeTiming("oʊ", 0.80, 1.00)]),
    ]
    frames = 110  # 1.17 s: trailing silence
    units, counts = aligned_unit_frames(timings, frames, HOP)
    assert sum(counts) == frames and len(counts) == len(units) and min(counts) >= 0
    ends = np.cumsum(counts)
    assert ends[0] == int(np.ceil(0.20 / HOP))  # leading silence up to the first phoneme
    assert ends[3] == int(np.ceil(0.50 / HOP))  # "t" ends where "cat" ends
    assert counts[5] == int(np.ceil(0.70 / HOP)) - int(np.ceil(0.50 / HOP))  # the comma holds the pause
    assert counts[-1] == frames - int(np.ceil(1.0 / HOP))  # the final boundary holds the tail
    layout = expand(units.ids, counts)
    assert layout.shape == (frames,) and int(layout[int(0.35 / HOP)]) == PHONEME_TABLE.id("æ") + len(PHONEME_TABLE)


def test_fit_durations_keeps_proportions_and_the_total():
    assert fit_durations([1, 1, 2], 8) == [2, 2, 4]
    counts = fit_durations([0.1, 5.0, 0.1, 5.0, 0.1], 7, words=[BOUNDARY, 0, BOUNDARY, 1, BOUNDARY])
    assert sum(counts) == 7 and counts[1] >= 1 and counts[3] >= 1
    tight = fit_durations([9.0, 0.1, 0.1], 2, words=[BOUNDARY, 0, 0])
    assert sum(tight) == 2 and tight[1:] == [1, 1]  # every spoken unit gets its frame before the boundary
    assert sum(fit_durations(np.random.default_rng(0).random(50), 333)) == 333
    with pytest.raises(ValueError):
        fit_durations([], 3)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """A tone corpus's feature cache and its alignments by an untrained tiny aligner (any alignment is a valid
    layout: these tests check bookkeeping, not accuracy)."""
    from tts.tokenizer.model import SpeechTokenizer
    from tts.tokenizer.train import PRESETS as TOKENIZER_PRESETS

    folder = tmp_path_factory.mktemp("dit")
    (folder / "corpus").mkdir()
    corpus = write_tone_corpus(folder / "corpus")
    features = extract_features(corpus, ProjectionTokenizer(), folder / "features.safetensors", "projection")
    torch.manual_seed(0)
    aligner = SpeechTokenizer(TOKENIZER_PRESETS["tiny"].model)
    extract_alignments(features, aligner, folder / "alignments.safetensors", "tiny")
    return folder


def test_alignments_cover_every_item(aligned):
    corpus = AlignedCorpus(aligned / "features.safetensors", aligned / "alignments.safetensors")
    assert corpus.usable == list(range(6)) and corpus.aligner == "tiny"
    for index, item in enumerate(corpus.cache.items):
        ids, counts = corpus.units(index)
        assert int(counts.sum()) == item.frames and corpus.frame_units(index).shape == (item.frames,)
        assert int(ids[0]) == int(ids[-1]) == PHONEME_TABLE.word_boundary_id
    (aligned / "other.safetensors").write_bytes(b"junk")
    with pytest.raises(TimbreError):
        AlignedCorpus(aligned / "features.safetensors", aligned / "other.safetensors")


def test_infill_examples_give_text_only_where_frames_are_generated(aligned):
    corpus = AlignedCorpus(aligned / "features.safetensors", aligned / "alignments.safetensors")
    recipe = InfillRecipe(max_frames=60, prompt_frames=(20, 30))
    sampler = InfillSampler(corpus, range(6), recipe, np.random.default_rng(0))
    for layout in ("prompt", "span", "edit"):
        for index in range(6):
            mel, text, generate = sampler.example(index, layout)[:3]
            assert mel.shape[0] == text.shape[0] == generate.shape[0]
            assert bool((text[~generate] == -1).all()) and bool((text[generate] >= 0).all())
            if layout == "prompt":  # a prompt from another clip of the voice, then the whole crop generated
                prompt = int((~generate).sum())
                assert 20 <= prompt <= 30 and bool(generate[prompt:].all())
            else:
                runs = torch.diff(generate.int()).abs().sum()
                assert runs <= 2 and generate.any()  # one contiguous span
    batch = sampler.batch(4)
    assert batch.mel.shape[:2] == batch.text.shape == batch.generate.shape == batch.mask.shape
    assert bool((batch.generate <= batch.mask).all())
    assert batch.units.shape == batch.unit_frames.shape
    for row in range(4):  # each row holds one item's whole unit sequence and its durations
        assert any(torch.equal(batch.units[row, : len(corpus.units(i)[0])], corpus.units(i)[0])
                   and int(batch.unit_frames[row].sum()) == corpus.cache.items[i].frames for i in range(6))


def test_training_resumes_exports_and_samples(aligned, tmp_path):
    out = tmp_path / "run"
    options = TrainOptions(features=aligned / "features.safetensors", out=out, config="tiny", max_steps=3,
                           batch_size=3, save_every_steps=2, log_every=1, validation_items=2)
    first = train(options)
    assert first["step"] == 3 and set(first["validation"]) == {"step", "flow", "duration"}
    assert np.isfinite(first["validation"]["flow"])
    second = train(TrainOptions(**{**vars(options), "max_steps": 5}))
    assert second["step"] == 5  # resumed from step 3, not restarted
    card = read_model_card_data(out / "export")
    assert card["Training"]["steps"] == 5 and card["Data"]["items"] == 6
    model = DiT.from_pretrained(out / "export").float()
    assert model.config.text_condition == "frames" and model.config.mel_std != 1.0
    assert model.duration_predictor is not None
    prompt = torch.randn(20, 100) - 4
    text = torch.cat((torch.full((20,), -1), torch.randint(0, NUM_UNITS, (16,))))
    mel = sample(model, prompt, text, total_frames=36, steps=2, seed=0)
    assert mel.shape == (1, 36, 100) and torch.equal(mel[0, :20], prompt)  # the prompt is kept exactly
    assert torch.isfinite(mel).all()


def test_recipe_cli_and_warm_start(aligned, tmp_path):
    from tts.refiner.model import FlowRefiner
    from tts.refiner.train import PRESETS as REFINER_PRESETS

    torch.manual_seed(1)
    refiner = FlowRefiner(REFINER_PRESETS["tiny"].model)
    for parameter in refiner.parameters():
        parameter.data.normal_(0, 0.02)
    refiner.save_pretrained(tmp_path / "refiner")
    model = DiT(PRESETS["tiny"].model)
    copied, normalisation = warm_start(model, str(tmp_path / "refiner"))
    blocks = {k: v for k, v in refiner.state_dict().items() if k.startswith("blocks.")}
    assert blocks and all(f"transformer_blocks.{k[len('blocks.'):]}" in copied for k in blocks)
    target = model.state_dict()
    assert all(torch.equal(target[f"transformer_blocks.{k[len('blocks.'):]}"], v) for k, v in blocks.items())
    assert torch.equal(model.proj_out.weight, refiner.proj_out.weight)
    assert torch.equal(model.input_embed.proj.weight[:, :200], refiner.input_proj.weight[:, :200])
    assert normalisation == {"mel_mean": refiner.config.mel_mean, "mel_std": refiner.config.mel_std}

    code = main(["--features", str(aligned / "features.safetensors"), "--out", str(tmp_path / "cli"), "--config",
                 "tiny", "--max-steps", "2", "--batch-size", "2", "--validation-items", "2",
                 "--init-from", str(tmp_path / "refiner")])
    assert code == 0
    card = read_model_card_data(tmp_path / "cli" / "export")
    assert card["Data"]["warm start"]["tensors"] == len(copied)
    assert main(["--features", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x")]) == 2

    # Fine-tuning: a trained DiT starts a new run whole, with its own normalisation.
    trained = DiT.from_pretrained(tmp_path / "cli" / "export")
    again = DiT(PRESETS["tiny"].model)
    copied, normalisation = warm_start(again, str(tmp_path / "cli" / "export"))
    assert copied == sorted(again.state_dict())
    assert all(torch.equal(v, trained.state_dict()[k].float()) for k, v in again.state_dict().items())
    assert normalisation == {"mel_mean": trained.config.mel_mean, "mel_std": trained.config.mel_std}
    with pytest.raises(TimbreError, match="another configuration"):
        warm_start(DiT(replace(PRESETS["tiny"].model, depth=PRESETS["tiny"].model.depth + 1)),
                   str(tmp_path / "cli" / "export"))


# -- guide starts --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guides(aligned, flite):
    """The tone corpus's guide starts, in two shards, made by a tiny-DiT engine with the shipped aligner (flite's
    rms and kal16 as the guide voices: the rms items must get kal16)."""
    from tests.test_dit_engine import tiny_dit_engine
    from tts.dit.guides import extract_guides

    engine = tiny_dit_engine()
    paths = [extract_guides(aligned / "features.safetensors", aligned / "alignments.safetensors", engine,
                            aligned / f"guides{k}.safetensors", ("flite:rms", "flite:kal16"), (k, 2))
             for k in range(2)]
    return paths


def test_guide_starts_are_the_engines_starts_laid_out_at_each_items_timing(aligned, guides, monkeypatch):
    """Every item (each voice has other utterances) gets a guide of its own frame count, said by a guide voice
    that is not its own, moved toward its voice (nearer its spectrum than the same guide left unmoved); another
    cache's items, a bad shard and a junk file are refused."""
    from tests.test_dit_engine import tiny_dit_engine
    from tts.audio import speech_band_means
    from tts.dit import engine as engine_module
    from tts.dit.guides import GuideStarts, extract_guides

    corpus = AlignedCorpus(aligned / "features.safetensors", aligned / "alignments.safetensors")
    names = [item.file_name for item in corpus.cache.items]
    starts = GuideStarts(guides, names)
    monkeypatch.setattr(engine_module, "GUIDE_MATCH", 0.0)  # the same guides, their spectrum not moved
    unmoved = GuideStarts([extract_guides(aligned / "features.safetensors", aligned / "alignments.safetensors",
                                          tiny_dit_engine(), aligned / "unmoved.safetensors",
                                          ("flite:rms", "flite:kal16"))], names)
    assert len(starts) == len(unmoved) == 6 and all(position in starts for position in range(6))
    for position, item in enumerate(corpus.cache.items):
        mel = starts.mel(position, 0, item.frames)
        assert mel.shape == (100, item.frames) and torch.isfinite(mel).all()
        assert starts.guide_voices[position] in (("flite:kal16",) if item.voice_id == "flite:rms"
                                                 else ("flite:rms", "flite:kal16"))
        own = speech_band_means(corpus.cache.mel(position, 0, item.frames))
        moved_off = float((speech_band_means(mel) - own).abs().mean())
        unmoved_off = float((speech_band_means(unmoved.mel(position, 0, item.frames)) - own).abs().mean())
        assert moved_off < unmoved_off
    assert starts.mel(2, 10, 30).shape == (100, 20)
    with pytest.raises(TimbreError, match="another feature cache"):
        GuideStarts(guides, list(reversed(names)))
    (aligned / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(TimbreError, match="make the guides"):
        GuideStarts([aligned / "junk.safetensors"], names)
    with pytest.raises(TimbreError, match="shard"):
        extract_guides(aligned / "features.safetensors", aligned / "alignments.safetensors", None,
                       aligned / "x.safetensors", shard=(2, 2))
    with pytest.raises(TimbreError, match="held out"):
        extract_guides(aligned / "features.safetensors", aligned / "alignments.safetensors", None,
                       aligned / "x.safetensors", voices=("flite:rms", "piper:joe"))


def test_guided_examples_start_from_the_guide_on_generated_frames_only(aligned, guides):
    from tts.dit.guides import GuideStarts

    corpus = AlignedCorpus(aligned / "features.safetensors", aligned / "alignments.safetensors")
    starts = GuideStarts(guides, [item.file_name for item in corpus.cache.items])
    recipe = InfillRecipe(max_frames=60, prompt_frames=(20, 30), guided_share=1.0)
    sampler = InfillSampler(corpus, range(6), recipe, np.random.default_rng(0), starts)
    for layout, time in zip(("prompt", "span", "edit"), recipe.guide_times):
        for index in range(6):
            example = sampler.example(index, layout)
            assert example.start is not None and example.start_time == time
            kept = ~example.generate
            assert torch.equal(example.start[kept], example.mel[kept])
            assert not torch.allclose(example.start[example.generate], example.mel[example.generate])
    batch = sampler.batch(4)
    assert batch.start.shape == batch.mel.shape and {round(t, 4) for t in batch.start_time.tolist()} <= {0.8, 0.9}
    plain = InfillSampler(corpus, range(6), replace(recipe, guided_share=0.0), np.random.default_rng(0), starts)
    assert plain.example(0, "span").start is None and float(plain.batch(3).start_time.abs().sum()) == 0.0
    assert InfillSampler(corpus, range(6), recipe, np.random.default_rng(0)).batch(2).start is None


def test_a_guided_row_runs_the_flow_from_its_guide_start(aligned, guides, monkeypatch):
    """`DiTTrainer.forward`: a row that starts from its guide at t0 is at ``x0 + s (x1 - x0)`` with
    ``x0 = (1 - t0) noise + t0 guide``, told the time ``t0 + (1 - t0) s``, and its target velocity is
    ``(x1 - x0) / (1 - t0)``, its error weighted by ``(1 - t0)^2``; a row at t0 = 0 is the plain path, loss for
    loss."""
    from tts.dit.guides import GuideStarts
    from tts.dit.train import DiTTrainer

    corpus = AlignedCorpus(aligned / "features.safetensors", aligned / "alignments.safetensors")
    starts = GuideStarts(guides, [item.file_name for item in corpus.cache.items])
    recipe = InfillRecipe(max_frames=60, prompt_frames=(20, 30), guided_share=1.0)
    batch = InfillSampler(corpus, range(6), recipe, np.random.default_rng(0), starts).collate(
        [0, 1, 2], ["span", "edit", "prompt"])
    torch.manual_seed(0)
    trainer = DiTTrainer(PRESETS["tiny"]).eval()
    unguided = replace(batch, start=None, start_time=None)
    plain = trainer(unguided, generator=torch.Generator().manual_seed(3), drops=(False, False))
    at_zero = trainer(replace(batch, start_time=torch.zeros(3)), generator=torch.Generator().manual_seed(3),
                      drops=(False, False))
    assert torch.allclose(plain["flow"], at_zero["flow"])
    seen = {}
    model_forward = trainer.model.forward

    def spy(xt, cond, text, time, **kwargs):
        seen.update(xt=xt, time=time)
        return model_forward(xt, cond, text, time, **kwargs)

    monkeypatch.setattr(trainer.model, "forward", spy)
    trainer(batch, generator=torch.Generator().manual_seed(3), drops=(False, False))
    generator = torch.Generator().manual_seed(3)
    x1 = trainer.model.normalize_mel(batch.mel)
    noise = torch.randn(x1.shape, generator=generator)
    s = torch.rand(3, generator=generator)
    t0 = batch.start_time[:, None, None]
    x0 = (1 - t0) * noise + t0 * trainer.model.normalize_mel(batch.start)
    assert torch.allclose(seen["time"], batch.start_time + (1 - batch.start_time) * s)
    assert torch.allclose(seen["xt"], x0 + s[:, None, None] * (x1 - x0), atol=1e-6)
    # a perfect guide is the plain path at the later time
    perfect = replace(batch, start=batch.mel)
    trainer(perfect, generator=torch.Generator().manual_seed(3), drops=(False, False))
    later = seen["time"][:, None, None]
    assert torch.allclose(seen["xt"], (1 - later) * noise + later * x1, atol=1e-5)
    # a guided row's error counts as the error of where it ends: (1 - t0) x the velocity's
    monkeypatch.setattr(trainer.model, "forward", lambda xt, *args, **kwargs: torch.zeros_like(xt))
    still = trainer(batch, generator=torch.Generator().manual_seed(3), drops=(False, False))["flow"]
    generated = batch.generate[..., None].float()
    expected = ((x1 - x0).square() * generated).sum() / (generated.sum() * x1.shape[-1])
    assert torch.allclose(still, expected, rtol=1e-4)


def test_training_from_guide_starts_through_the_cli(aligned, guides, tmp_path):
    code = main(["--features", str(aligned / "features.safetensors"), "--out", str(tmp_path / "run"), "--config",
                 "tiny", "--max-steps", "2", "--batch-size", "3", "--validation-items", "2",
                 "--guides", *map(str, guides), "--guided-share", "0.7", "--warmup-steps", "1"])
    assert code == 0
    card = read_model_card_data(tmp_path / "run" / "export")
    assert ", warm-up 1," in card["Training"]["optimizer"]
    assert card["Data"]["guide starts"]["items"] == 6 and card["Data"]["guide starts"]["share"] == 0.7
    assert "start from it" in card["Training"]["objective"]
    assert main(["--features", str(aligned / "features.safetensors"), "--out", str(tmp_path / "bad"), "--config",
                 "tiny", "--max-steps", "1", "--guides", *map(str, guides), "--guided-share", "0"]) == 2
    assert main(["guides", "--features", str(aligned / "features.safetensors"), "--shard", "x"]) == 2

"""Self-distillation (`tts.refiner.distill`): the pairs step on tiny real models (resumable, deterministic,
refusing mixed recipes and foreign caches), the sampler's use of the pairs, and fine-tuning with them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors import safe_open

from tests.test_refiner_train import espeak_corpus
from tts.checkpoints import read_model_card_data
from tts.errors import TimbreError
from tts.refiner.data import BatchRecipe, BatchSampler, FeatureCache, extract_features
from tts.refiner.distill import PairRecipe, load_pairs, main, make_pairs
from tts.refiner.model import FlowRefiner
from tts.refiner.train import PRESETS, TrainOptions, train, validation_loss, validation_sets

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return espeak_corpus(tmp_path_factory.mktemp("distill") / "corpus")


@pytest.fixture(scope="module")
def models(corpus, tmp_path_factory):
    """Tiny untrained tokenizer, refiner and vocoder saved as checkpoints, and the corpus's feature cache."""
    from tts.tokenizer import SpeechTokenizer, SpeechTokenizerConfig
    from vocoder.vocos import Vocos, VocosConfig

    folder = tmp_path_factory.mktemp("distill")
    torch.manual_seed(0)
    tokenizer = SpeechTokenizer(SpeechTokenizerConfig(dim=32, num_layers=1, heads=2, dim_head=16, head_layers=1)).eval()
    tokenizer_path = str(tokenizer.save_pretrained(folder / "tokenizer"))
    cache_path = extract_features(corpus, tokenizer, folder / "features.safetensors", tokenizer_path)
    cache = FeatureCache(cache_path)
    config = replace(PRESETS["tiny"].model, codebook_size=cache.codebook_size, frames_per_token=cache.frames_per_token,
                     tokenizer=tokenizer_path, mel=cache.mel_config, mel_mean=round(cache.mel_mean, 4),
                     mel_std=round(cache.mel_std, 4))
    refiner_path = str(FlowRefiner(config).save_pretrained(folder / "refiner"))
    vocoder_path = str(Vocos(VocosConfig(dim=32, intermediate_dim=64, num_layers=2)).save_pretrained(folder / "vocoder"))
    recipe = PairRecipe(refiner=refiner_path, tokenizer=tokenizer_path, vocoder=vocoder_path, steps=2)
    return cache, recipe


@pytest.fixture(scope="module")
def pairs(models, tmp_path_factory):
    cache, recipe = models
    out = tmp_path_factory.mktemp("pairs") / "pairs"
    summary = make_pairs(cache.path, out, recipe, device="cpu")
    assert summary == {"pairs": str(out), "items": 6, "shards": 1, "written": 1, "complete": True}
    return out


def test_pairs_cover_every_utterance_with_another_voice_as_prompt(models, pairs):
    cache, _ = models
    loaded = load_pairs(pairs, cache)
    assert sorted(loaded) == list(range(len(cache)))
    for index, tokens in loaded.items():
        assert tokens.dtype == torch.long and tokens.shape == (cache.items[index].num_tokens,)
        assert 0 <= int(tokens.min()) and int(tokens.max()) < cache.codebook_size
    with safe_open(str(pairs / "pairs-00000.safetensors"), framework="pt") as shard:
        items, prompts = shard.get_tensor("items").tolist(), shard.get_tensor("prompt_items").tolist()
        starts, ends = shard.get_tensor("prompt_starts").tolist(), shard.get_tensor("prompt_ends").tolist()
    for item, prompt, start, end in zip(items, prompts, starts, ends):
        assert cache.items[item].voice_id != cache.items[prompt].voice_id
        assert 0 <= start < end <= cache.items[prompt].frames and start % cache.frames_per_token == 0


def test_pairs_resume_reproduce_and_refuse_other_recipes(models, pairs):
    cache, recipe = models
    first = load_pairs(pairs, cache)
    assert make_pairs(cache.path, pairs, recipe, device="cpu")["written"] == 0  # nothing left to do
    (pairs / "pairs-00000.safetensors").unlink()  # as if the run was killed before this shard
    assert make_pairs(cache.path, pairs, recipe, device="cpu")["written"] == 1
    again = load_pairs(pairs, cache)
    assert all(torch.equal(first[i], again[i]) for i in first)  # every utterance's choices are seeded
    with pytest.raises(TimbreError, match="other settings .*steps"):
        make_pairs(cache.path, pairs, replace(recipe, steps=3), device="cpu")
    assert main(["--features", str(cache.path), "--out", str(pairs), "--refiner", recipe.refiner, "--tokenizer",
                 recipe.tokenizer, "--vocoder", recipe.vocoder, "--steps", "3"]) == 2


def test_a_time_budget_stops_between_shards_and_a_rerun_goes_on(models, tmp_path, monkeypatch):
    from tts.refiner import distill

    cache, recipe = models
    monkeypatch.setattr(distill, "SHARD_ITEMS", 2)
    first = make_pairs(cache.path, tmp_path / "pairs", recipe, device="cpu", max_minutes=0)
    assert (first["shards"], first["written"], first["complete"]) == (3, 1, False)
    assert len(load_pairs(tmp_path / "pairs", cache)) == 2
    rest = make_pairs(cache.path, tmp_path / "pairs", recipe, device="cpu")
    assert (rest["written"], rest["complete"]) == (2, True) and len(load_pairs(tmp_path / "pairs", cache)) == 6


def test_pairs_of_another_cache_or_an_empty_folder_are_refused(models, pairs, tmp_path):
    cache, recipe = models
    other = tmp_path / "other"
    other.mkdir()
    (other / "recipe.json").write_text((pairs / "recipe.json").read_text())
    with pytest.raises(TimbreError, match="no pairs yet"):
        load_pairs(other, cache)
    with safe_open(str(pairs / "pairs-00000.safetensors"), framework="pt") as shard:
        tensors = {name: shard.get_tensor(name) for name in shard.keys()}
        meta = shard.metadata()
    from safetensors.torch import save_file

    tensors["items"] = tensors["items"].flip(0)  # the utterances no longer match the cache's order
    save_file(tensors, str(other / "pairs-00000.safetensors"), metadata=meta)
    with pytest.raises(TimbreError, match="another feature cache"):
        load_pairs(other, cache)
    with pytest.raises(TimbreError, match="not a pairs folder"):
        load_pairs(tmp_path / "missing", cache)
    save_file(tensors, str(other / "pairs-00000.safetensors"), metadata={**meta, "version": "0"})
    with pytest.raises(TimbreError, match="not a version-1 timbre-distill-pairs file; delete it and run"):
        load_pairs(other, cache)
    (other / "pairs-00000.safetensors").write_bytes(b"\x00" * 40)  # a shard cut short by a full disk
    with pytest.raises(TimbreError, match="unreadable .*delete it and run"):
        load_pairs(other, cache)


def test_sampler_gives_a_share_of_targets_their_distillation_tokens(models, pairs):
    cache, _ = models
    alt = load_pairs(pairs, cache)
    recipe = BatchRecipe(target_frames=24, prompt_frames=(9, 12))
    indices = list(range(len(cache)))
    differs = 0
    for seed in range(6):  # one example per sampler: the "always" one draws one more random number per example
        def example(**alt_options):
            return BatchSampler(cache, indices, recipe, np.random.default_rng(seed), **alt_options).example(2)

        a, n, p = example(alt_tokens=alt, alt_probability=1.0), example(alt_tokens=alt), example()
        assert torch.equal(n.tokens, p.tokens) and torch.equal(n.target_mel, p.target_mel)  # share 0: as without
        assert torch.equal(a.target_mel, p.target_mel) and torch.equal(a.prompt_tokens, p.prompt_tokens)
        span = cache.tokens(2).unfold(0, len(p.tokens), 1)
        where = [k for k in range(span.shape[0]) if torch.equal(span[k], p.tokens)]
        assert any(torch.equal(alt[2][k : k + len(p.tokens)], a.tokens) for k in where)
        differs += not torch.equal(a.tokens, p.tokens)
    assert differs > 0
    with pytest.raises(ValueError, match="alt_probability"):
        BatchSampler(cache, indices, recipe, np.random.default_rng(0), alt_probability=1.5)


def test_fine_tuning_with_pairs_starts_from_the_refiner_and_reports_the_distillation_loss(models, pairs, corpus, tmp_path):
    cache, recipe = models
    out = tmp_path / "run"
    summary = train(TrainOptions(corpus=corpus, out=out, features=cache.path, config="tiny", max_steps=2, batch_size=2,
                                 log_every=1, validation_items=2, init_from=recipe.refiner, distill_pairs=pairs,
                                 learning_rate=1e-4, warmup_steps=1))
    assert summary["step"] == 2
    assert summary["validation"] == {"step": 2, "flow_loss": None}  # six items: none held out (see validation_sets)
    tuned, start = FlowRefiner.from_pretrained(out / "export"), FlowRefiner.from_pretrained(recipe.refiner)
    assert tuned.config == start.config
    card = read_model_card_data(out / "export")
    assert card["Data"]["fine-tuned from"] == recipe.refiner
    assert card["Data"]["self-distillation"]["utterances"] == len(cache)
    assert "lr 0.0001" in card["Training"]["optimizer"]
    with pytest.raises(TimbreError, match="other tokens or mels"):
        other = replace(start.config, codebook_size=start.config.codebook_size + 1)
        train(TrainOptions(corpus=corpus, out=tmp_path / "bad", features=cache.path, config="tiny", max_steps=1,
                           batch_size=2, init_from=str(FlowRefiner(other).save_pretrained(tmp_path / "other"))))


def test_validation_measures_the_same_pairs_with_and_without_the_distillation_tokens(models, pairs):
    cache, recipe = models
    alt = load_pairs(pairs, cache)
    sets = validation_sets(cache, [1, 4], BatchRecipe(target_frames=24, prompt_frames=(9, 12)), 2, 0, alt)
    assert sorted(sets) == ["distill_flow_loss", "flow_loss"]
    own, distilled = sets["flow_loss"][0], sets["distill_flow_loss"][0]
    assert torch.equal(own.target_mel, distilled.target_mel) and torch.equal(own.prompt_mel, distilled.prompt_mel)
    assert not torch.equal(own.tokens, distilled.tokens)
    refiner = FlowRefiner.from_pretrained(recipe.refiner)
    torch.manual_seed(0)
    for parameter in refiner.parameters():  # untrained output layers are zero: make the tokens matter
        parameter.data.normal_(0.0, 0.05)
    assert validation_loss(refiner, sets["distill_flow_loss"]) != validation_loss(refiner, sets["flow_loss"])
    assert list(validation_sets(cache, [1, 4], BatchRecipe(target_frames=24, prompt_frames=(9, 12)), 2, 0)) == ["flow_loss"]
    assert validation_sets(cache, [], BatchRecipe(), 2, 0, alt) == {}

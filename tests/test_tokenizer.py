"""Speech tokenizer model: token rate, FSQ, shapes, batching, save/load, determinism, mel augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tts.audio import STUDIO_MEL, Audio, log_mel, warp_mel_bands
from tts.checkpoints import config_from_dict, config_to_dict
from tts.errors import CheckpointError
from tts.text import PHONEME_TABLE
from tts.text.phonemes import PhonemeTable
from tts.tokenizer.model import FiniteScalarQuantizer, SpeechTokenizer, SpeechTokenizerConfig
from tts.tokenizer.train import PRESETS
from tts.training import Augmentation, augment_waveform, band_warp_factors, change_speed

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = PRESETS["tiny"].model


def tiny_model(seed: int = 0, **changes) -> SpeechTokenizer:
    torch.manual_seed(seed)
    config = TINY if not changes else SpeechTokenizerConfig(**{**TINY.__dict__, **changes})
    return SpeechTokenizer(config).eval()


def test_token_rate_is_derived_from_the_mel_config():
    config = SpeechTokenizerConfig()
    assert config.token_rate == STUDIO_MEL.frame_rate / 3 == 31.25
    assert config.ctc_rate == STUDIO_MEL.frame_rate and config.alignment_rate == 31.25
    assert SpeechTokenizerConfig(ctc_frames_per_token=1).ctc_rate == 31.25
    assert SpeechTokenizerConfig(alignment_head=False).alignment_rate == STUDIO_MEL.frame_rate
    assert config.codebook_size == 8 * 5 * 5 * 5 == 1000
    assert config.phoneme_vocab_size == len(PHONEME_TABLE)
    assert config.phoneme_table_version == PHONEME_TABLE.version
    assert [config.num_tokens(f) for f in (1, 2, 3, 4, 6, 7)] == [1, 1, 1, 2, 2, 3]


def test_config_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="divide"):
        SpeechTokenizerConfig(ctc_frames_per_token=2)
    with pytest.raises(ValueError, match="levels"):
        SpeechTokenizerConfig(fsq_levels=(8, 1))


def test_config_json_round_trip():
    config = SpeechTokenizerConfig(fsq_levels=(4, 4, 3), dim=48)
    assert config_from_dict(SpeechTokenizerConfig, config_to_dict(config)) == config


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 100, 301])
def test_shapes_and_token_count(frames):
    model = tiny_model()
    mel = torch.randn(2, STUDIO_MEL.n_mels, frames) * 3 - 4
    tokens, lengths = model.encode(mel)
    expected = math.ceil(frames / 3)
    assert tokens.shape == (2, expected) and tokens.dtype == torch.int64
    assert lengths.tolist() == [expected, expected]
    assert 0 <= int(tokens.min()) and int(tokens.max()) < model.config.codebook_size
    output = model(mel)
    assert output.codes.shape == (2, expected, len(TINY.fsq_levels))
    assert output.embeddings.shape == (2, expected, TINY.dim)
    assert output.ctc_logits.shape == (2, expected * 3, TINY.phoneme_vocab_size)  # K = 3: a CTC frame per mel frame
    assert output.ctc_lengths.tolist() == [frames, frames]
    assert output.alignment_logits.shape == (2, expected, TINY.phoneme_vocab_size)  # the token rate
    logits, lengths = model.alignment_logits(mel)
    assert torch.equal(logits, output.alignment_logits) and lengths.tolist() == [expected, expected]


def test_heads_at_other_rates():
    mel = torch.randn(1, STUDIO_MEL.n_mels, 100)
    output = tiny_model(ctc_frames_per_token=1)(mel)
    assert output.ctc_logits.shape[1] == 34 and output.ctc_lengths.tolist() == [34]
    without = tiny_model(alignment_head=False)
    assert without(mel).alignment_logits is None
    logits, lengths = without.alignment_logits(mel)  # falls back to the token head, at the mel rate
    assert logits.shape[1] == 102 and lengths.tolist() == [100]


def test_padded_batch_matches_items_alone():
    model = tiny_model()
    long, short = torch.randn(1, 100, 90) - 4, torch.randn(1, 100, 50) - 4
    batch = torch.full((2, 100, 90), -16.0)
    batch[0], batch[1, :, :50] = long[0], short[0]
    lengths = torch.tensor([90, 50])
    with torch.no_grad():
        together = model(batch, lengths)
        alone = model(short)
    assert together.token_lengths.tolist() == [30, 17]
    assert alone.ctc_lengths.tolist() == [50]
    assert torch.allclose(together.ctc_logits[1, :50], alone.ctc_logits[0, :50], atol=1e-4)
    assert (together.tokens[1, :17] == alone.tokens[0]).float().mean() > 0.95
    assert torch.equal(together.tokens[1, 17:], torch.zeros(13, dtype=torch.long))


def test_fsq_indices_and_digits_round_trip():
    quantizer = FiniteScalarQuantizer((8, 5, 5, 5))
    every = torch.arange(1000)
    digits = quantizer.indices_to_digits(every)
    assert digits.shape == (1000, 4)
    assert torch.equal(quantizer.digits_to_indices(digits), every)
    assert len({tuple(d) for d in digits.tolist()}) == 1000  # a bijection
    codes = quantizer.digits_to_codes(digits)
    assert codes.min() == -1 and codes.max() == 1
    with pytest.raises(ValueError, match="speech tokens"):
        quantizer.indices_to_digits(torch.tensor([1000]))


def test_fsq_forward_codes_match_digits_and_pass_gradients():
    quantizer = FiniteScalarQuantizer((8, 5, 5, 5))
    z = torch.randn(64, 4, requires_grad=True)
    codes, digits = quantizer(z)
    assert torch.equal(codes.detach(), quantizer.digits_to_codes(digits))
    assert all(int(digits[:, q].max()) < level for q, level in enumerate((8, 5, 5, 5)))
    codes.sum().backward()
    assert z.grad is not None and bool((z.grad.abs() > 0).all())  # straight-through


def test_fsq_levels_own_equal_slices_of_tanh():
    quantizer = FiniteScalarQuantizer((8, 5))
    squashed = torch.linspace(-0.99999, 0.99999, 40_001)
    _, digits = quantizer(torch.atanh(squashed)[:, None].repeat(1, 2))
    for q, level in enumerate((8, 5)):
        counts = torch.bincount(digits[:, q], minlength=level).float()
        assert counts.min() / counts.max() > 0.99


def test_tokens_to_embeddings_reproduce_the_forward_path():
    model = tiny_model()
    mel = torch.randn(1, 100, 60) - 4
    with torch.no_grad():
        output = model(mel)
        assert torch.allclose(model.tokens_to_embeddings(output.tokens), output.embeddings, atol=1e-6)
        assert torch.allclose(model.ctc_logits_from_tokens(output.tokens), output.ctc_logits, atol=1e-5)


def test_save_load_is_bit_exact(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "tok", model_card={"Note": "test"})
    loaded = SpeechTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    mel = torch.randn(1, 100, 40) - 4
    assert torch.equal(model.encode(mel)[0], loaded.encode(mel)[0])
    # The float16 export loads strictly too.
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert SpeechTokenizer.from_pretrained(tmp_path / "half").encode(mel)[0].shape == (1, 14)


def test_same_seed_same_model_and_tokens():
    mel = torch.randn(1, 100, 45) - 4
    first, second = tiny_model(seed=3), tiny_model(seed=3)
    assert torch.equal(first.encode(mel)[0], second.encode(mel)[0])
    assert torch.equal(first.encode(mel)[0], first.encode(mel)[0])
    assert not torch.equal(first.ctc_logits(mel)[0], tiny_model(seed=4).ctc_logits(mel)[0])


def test_tokenize_resamples_audio(tone):
    model = tiny_model()
    tokens = model.tokenize(tone.resample(16_000))
    frames = STUDIO_MEL.num_frames(len(tone))
    assert tokens.shape == (math.ceil(frames / 3),)


def test_other_phoneme_table_version_is_refused():
    other = PhonemeTable.from_symbols(PHONEME_TABLE.symbols, version=PHONEME_TABLE.version + 1)
    TINY.check_phoneme_table(PHONEME_TABLE)
    with pytest.raises(CheckpointError, match="phoneme table"):
        TINY.check_phoneme_table(other)


def test_waveform_augmentation_changes_level_and_bandwidth(tone):
    rng = np.random.default_rng(0)
    samples = tone.samples + 0.05 * rng.standard_normal(len(tone)).astype(np.float32)
    only_gain = Augmentation(gain_db=(-6.0, -6.0), noise_probability=0.0, lowpass_probability=0.0)
    quieter = augment_waveform(samples, only_gain, rng)
    assert np.allclose(quieter, samples * 10 ** (-6 / 20), atol=1e-6)
    phone = Augmentation(gain_db=(0.0, 0.0), noise_probability=0.0, lowpass_probability=1.0, lowpass_hz=(4000.0, 4000.0))
    full, limited = log_mel(samples), log_mel(augment_waveform(samples, phone, rng))
    above = torch.arange(STUDIO_MEL.n_mels) >= 70  # bands well above 4 kHz
    assert limited[above].mean() < full[above].mean() - 4
    assert (limited[:40] - full[:40]).abs().mean() < 0.1


def _peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 24_000)[np.argmax(spectrum)])


def test_speed_change_shortens_the_clip_and_raises_its_pitch(tone):
    faster = change_speed(tone.samples, 1.1)
    assert abs(len(faster) - len(tone.samples) / 1.1) <= 2
    assert _peak_hz(faster) == pytest.approx(220 * 1.1, abs=2)
    assert _peak_hz(change_speed(tone.samples, 0.9)) == pytest.approx(220 * 0.9, abs=2)
    always = Augmentation(gain_db=(0.0, 0.0), noise_probability=0.0, lowpass_probability=0.0,
                          speed_probability=1.0, speed_range=(0.9, 0.9))
    assert len(augment_waveform(tone.samples, always, np.random.default_rng(0))) == pytest.approx(24_000 / 0.9, abs=2)


def test_voice_augmentation_off_draws_nothing_from_the_generator(tone):
    # Recipes that leave speed and band warps off (vocoder, refiner prompts) keep their random streams as before.
    plain = Augmentation(noise_probability=0.0, lowpass_probability=0.0)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    augment_waveform(tone.samples, plain, a)
    assert band_warp_factors(4, plain, a) == [None] * 4
    b.uniform(*plain.gain_db), b.random(), b.random()
    assert a.random() == b.random()


def test_mel_band_warp_moves_a_formant_and_keeps_time():
    t = np.arange(24_000) / 24_000
    mel = log_mel((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    centroid = lambda m: float((m.exp().mean(-1) * torch.arange(m.shape[0])).sum() / m.exp().mean(-1).sum())  # noqa: E731
    reference = log_mel((0.3 * np.sin(2 * np.pi * 1150 * t)).astype(np.float32))
    warped = warp_mel_bands(mel, 1.15)
    assert warped.shape == mel.shape
    assert abs(centroid(warped) - centroid(reference)) < 0.3 < centroid(reference) - centroid(mel)
    assert centroid(warp_mel_bands(mel, 0.87)) < centroid(mel) - 0.5
    assert torch.allclose(warp_mel_bands(mel, 1.0), mel, atol=1e-5)
    batch = torch.stack([mel, reference])
    assert torch.allclose(warp_mel_bands(batch, 1.15)[1], warp_mel_bands(reference, 1.15))
    with pytest.raises(ValueError, match="positive"):
        warp_mel_bands(mel, 0.0)


def test_training_batch_applies_speed_and_band_warps(tone):
    from tts.tokenizer.train import CorpusData, _float, make_batch

    waves = [(tone.samples * 32767).astype(np.int16)] * 2
    data = CorpusData(waves, [[30], [31]], [0, 1], ["a.wav", "b.wav"], ["x", "y"])
    voice = Augmentation(gain_db=(0.0, 0.0), noise_probability=0.0, lowpass_probability=0.0, speed_probability=1.0,
                         speed_range=(1.12, 1.12), band_warp_probability=1.0, band_warp_range=(1.1, 1.1))
    batch = make_batch(data, [0, 1], STUDIO_MEL, voice, np.random.default_rng(0))
    expected = STUDIO_MEL.num_frames(round(24_000 / 1.12))
    assert batch["mel_lengths"].tolist() == [expected, expected]
    faster = log_mel(change_speed(_float(waves[0]), 1.12))
    assert torch.allclose(batch["mel"][0, :, :expected], warp_mel_bands(faster, 1.1), atol=1e-3)


def test_training_batch_pads_and_counts_frames(tone):
    from tts.tokenizer.train import CorpusData, make_batch

    waves = [(tone.samples[:n] * 32767).astype(np.int16) for n in (24_000, 10_000)]
    data = CorpusData(waves, [[30, 31], [32]], [0, 1], ["a.wav", "b.wav"], ["x", "y"])
    batch = make_batch(data, [0, 1], STUDIO_MEL, Augmentation(), np.random.default_rng(0))
    assert batch["mel"].shape == (2, STUDIO_MEL.n_mels, STUDIO_MEL.num_frames(24_000))
    assert batch["mel_lengths"].tolist() == [STUDIO_MEL.num_frames(24_000), STUDIO_MEL.num_frames(10_000)]
    assert batch["targets"].tolist() == [30, 31, 32] and batch["target_lengths"].tolist() == [2, 1]
    assert batch["speakers"].tolist() == [0, 1]


def test_tokenize_rejects_bad_audio():
    with pytest.raises(TypeError):
        tiny_model().tokenize(np.zeros(100))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        tiny_model().tokenize(Audio(np.zeros(0, dtype=np.float32)))


def test_token_spans_of_touching_intervals_partition_the_tokens():
    config = SpeechTokenizerConfig()
    token_seconds = 1 / config.token_rate
    assert config.token_span(0.0, token_seconds * 10) == (0, 10)
    bounds = [0.0, 0.013, 0.2, 0.2, 0.731, 1.5]
    spans = [config.token_span(a, b) for a, b in zip(bounds, bounds[1:])]
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert spans[2] == (spans[2][0], spans[2][0])  # a zero-length interval holds no token
    assert spans[-1][1] == config.token_span(0.0, 1.5)[1]


def test_tokens_do_not_depend_on_the_recording_level(tone):
    model = tiny_model()
    rng = np.random.default_rng(0)
    samples = tone.samples + 0.01 * rng.standard_normal(len(tone)).astype(np.float32)
    loud, quiet = model.tokenize(Audio(samples)), model.tokenize(Audio(samples * 0.1))
    assert (loud == quiet).float().mean() > 0.95
    unnormalized = tiny_model(normalize_level=False)
    assert not torch.equal(unnormalized.tokenize(Audio(samples)), unnormalized.tokenize(Audio(samples * 0.1)))


def test_speech_level_ignores_padding_and_empty_items():
    from tts.tokenizer.model import speech_level

    mel = torch.zeros(3, 100, 20)
    mel[0, :, :10] = 2.0  # a loud first half, then padding at -100
    mel[0, :, 10:] = -100.0
    levels = speech_level(mel, torch.tensor([10, 20, 0]))
    assert levels.tolist() == [2.0, 0.0, 0.0]

"""The request style (tts.style): emotion mixtures, control ranges, engine conditioning, inline tags, the
prosody controls measured on real speech, and tags switching the style inside `synthesize` on tiny engines."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.audio import Audio
from tts.data.styles import (LEVEL_GATE_DB, LIMITER_CEILING, NEUTRAL, NEUTRAL_LEVEL_DBFS, STYLE_TABLE, STYLES,
                             set_level, style_params)
from tts.errors import TextError, TimbreError
from tts.preprocess import active_rms_dbfs
from tts.style import (
    CONTROL_RANGES,
    NEUTRAL_STYLE,
    Style,
    StyleTagError,
    apply_conditioning,
    engine_conditioning,
    escape_style_text,
    parse_emotion,
    parse_style_tags,
    strip_style_tags,
    style_from_options,
)

pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------------------------------------------
# The Style value


def test_labels_and_mixtures_parse_to_normalized_weights():
    assert Style("happy").emotion == (("happy", 1.0),)
    assert Style(" Happy ").mixture == {"happy": 1.0}
    mixed = Style("happy:0.7+sad:0.3")
    assert mixed.mixture == pytest.approx({"happy": 0.7, "sad": 0.3})
    assert mixed == Style({"sad": 3, "happy": 7}) == Style([("happy", 7.0), ("sad", 3.0)])
    assert mixed.dominant == "happy" and mixed.emotion_spec == "happy:0.7+sad:0.3"
    assert parse_emotion("calm, angry") == (("angry", 0.5), ("calm", 0.5))  # ties in STYLES order
    assert parse_emotion("sad:1+sad:1+happy:0") == (("sad", 1.0),)
    assert Style("neutral:0.8+whisper:0.2").dominant == "whisper"  # neutral only dilutes
    assert NEUTRAL_STYLE.dominant == "neutral" and hash(Style("happy")) == hash(Style("HAPPY"))
    assert Style.parse("angry", intensity=2, pitch=-3).to_dict()["emotion"] == {"angry": 1.0}


@pytest.mark.parametrize("spec, message", [
    ("bored", "unknown style label 'bored'.*happy, sad"),
    ("happy:0.5+joy:0.5", "unknown style label 'joy'"),
    ("happy:-1", "weight"),
    ("happy:lots", "weight"),
    ("happy:0+sad:0", "sum to 0"),
    ("", "empty"),
    ("happy++sad", "empty"),
    (3, "unknown style"),
])
def test_bad_emotions_are_refused_with_the_valid_labels(spec, message):
    with pytest.raises(TimbreError, match=message):
        Style(spec)


@pytest.mark.parametrize("name", list(CONTROL_RANGES))
def test_controls_accept_their_range_and_refuse_beyond(name):
    low, high = CONTROL_RANGES[name]
    assert getattr(Style(**{name: low}), name) == low and getattr(Style(**{name: high}), name) == high
    for bad in (low - 0.01, high + 0.01, float("nan"), "loud", None):
        with pytest.raises(ValueError, match=rf"{name} must be .*{low:g} to {high:g}"):
            Style(**{name: bad})
    with pytest.raises(ValueError, match="unknown style control"):
        Style.parse("happy", volume=3)


def test_keyword_options_alias_style_and_override_a_style_value():
    assert style_from_options() == NEUTRAL_STYLE
    assert style_from_options(style="sad", intensity=0.5) == Style("sad", intensity=0.5)
    assert style_from_options("sad") == style_from_options(style="sad")
    base = Style("happy", intensity=1.5, pitch=2)
    assert style_from_options(base, energy=-3) == Style("happy", intensity=1.5, pitch=2, energy=-3)
    with pytest.raises(ValueError, match="older name"):
        style_from_options("happy", style="sad")


def test_plain_styles_need_no_post_processing():
    from tts.style import SIGNAL_RENDERED

    for label in set(STYLES) - SIGNAL_RENDERED:
        for intensity in (0.0, 0.4, 1.0):
            conditioning = engine_conditioning(Style(label, intensity=intensity))
            assert conditioning.emotion == label and not conditioning.has_residual
            assert conditioning.intensity == (0.0 if label == "neutral" else intensity) and conditioning.speed == 1.0
    whisper = engine_conditioning(Style("whisper", intensity=0.4))  # always on the audio: the engine speaks neutrally
    assert whisper.emotion == "neutral" and whisper.speed == pytest.approx(style_params("whisper", 0.4).rate)
    assert whisper.residual.aperiodicity == pytest.approx(0.4) and whisper.residual.energy_db == pytest.approx(-3.2)
    # neutral in a mixture dilutes: happy at half strength is what the engine renders itself
    assert engine_conditioning(Style("happy:1+neutral:1")) == engine_conditioning(Style("happy", intensity=0.5))


def test_intensity_above_one_and_mixtures_become_a_residual():
    doubled = engine_conditioning(Style("happy", intensity=2.0))
    assert (doubled.emotion, doubled.intensity) == ("happy", 1.0)  # the engine's maximum
    assert doubled.residual.pitch_shift == pytest.approx(STYLE_TABLE["happy"].pitch_shift)  # the second half
    assert doubled.residual.pitch_range == pytest.approx(STYLE_TABLE["happy"].pitch_range)
    assert doubled.speed == pytest.approx(STYLE_TABLE["happy"].rate)  # rate goes to the engine's speed
    whisper = engine_conditioning(Style("whisper", intensity=2.0, speed=2.0))  # never the engine's own: all residual
    assert whisper.emotion == "neutral" and whisper.residual.aperiodicity == pytest.approx(1.0)  # all noise at most
    assert whisper.residual.energy_db == pytest.approx(-16.0)
    assert whisper.speed == pytest.approx(2.0 * STYLE_TABLE["whisper"].rate ** 2)

    mixed = engine_conditioning(Style("happy:0.7+sad:0.3", pitch=2.0, energy=-3.0, pitch_range=1.5))
    assert (mixed.emotion, mixed.intensity) == ("happy", pytest.approx(0.7))
    sad = style_params("sad", 0.3)
    assert mixed.residual.pitch_shift == pytest.approx(sad.pitch_shift + 2.0)
    assert mixed.residual.energy_db == pytest.approx(sad.energy_db - 3.0)
    assert mixed.residual.pitch_range == pytest.approx(sad.pitch_range * 1.5)
    assert mixed.speed == pytest.approx(sad.rate)
    # intensity moves every target setting monotonically, past 1 too
    shifts = [Style("surprised", intensity=x).target_params().pitch_shift for x in (0, 0.5, 1, 1.5, 2)]
    assert shifts == sorted(shifts) and shifts[-1] == pytest.approx(2 * STYLE_TABLE["surprised"].pitch_shift)
    assert Style("neutral", intensity=2.0).target_params() == NEUTRAL


# ---------------------------------------------------------------------------------------------------------
# Inline tags


def _texts_and_labels(text: str, default: Style = NEUTRAL_STYLE) -> list[tuple[str, str]]:
    return [(segment, style.emotion_spec) for segment, style in parse_style_tags(text, default)]


def test_tags_split_the_text_into_styled_segments():
    assert _texts_and_labels("[whisper] keep it down [/whisper] Thanks!") == [
        (" keep it down ", "whisper"), (" Thanks!", "neutral")]
    assert _texts_and_labels("Hi. [happy] Great news", Style("calm")) == [("Hi. ", "calm"), (" Great news", "happy")]
    assert _texts_and_labels("[happy]a[sad]b") == [("a", "happy"), ("b", "sad")]  # open until the next tag
    assert _texts_and_labels("[HAPPY:0.7+sad:0.3]mixed[/sad]plain") == [("mixed", "happy:0.7+sad:0.3"),
                                                                        ("plain", "neutral")]
    assert parse_style_tags("no tags at all") == [("no tags at all", NEUTRAL_STYLE)]
    assert parse_style_tags("") == []


def test_nesting_inherits_and_closing_restores():
    segments = parse_style_tags("[happy intensity=1.5] a [pitch=3] b [/] c [sad] d [/happy] e", Style(energy=-2))
    texts = [segment for segment, _ in segments]
    styles = [style for _, style in segments]
    assert texts == [" a ", " b ", " c ", " d ", " e"]
    assert styles[0] == Style("happy", intensity=1.5, energy=-2)
    assert styles[1] == Style("happy", intensity=1.5, pitch=3, energy=-2)  # settings-only tag keeps the emotion
    assert styles[2] == styles[0]  # [/] closes the innermost tag
    assert styles[3] == Style("sad", intensity=1.5, energy=-2)  # controls are inherited
    assert styles[4] == Style(energy=-2)  # [/happy] also closes the [sad] opened inside it
    assert _texts_and_labels("[whisper]a[happy]b[/whisper]c") == [("a", "whisper"), ("b", "happy"), ("c", "neutral")]


def test_empty_segments_are_dropped_and_equal_neighbours_merged():
    assert _texts_and_labels("[happy][/happy]a[sad][/]b") == [("ab", "neutral")]
    assert _texts_and_labels("[happy]a[/happy][happy]b") == [("ab", "happy")]


def test_escapes_give_literal_brackets():
    assert _texts_and_labels(r"see \[1\] and a\\b [happy] \[x] done") == [
        (r"see [1] and a\b ", "neutral"), (" [x] done", "happy")]
    assert _texts_and_labels(r"a \n path ] here") == [(r"a \n path ] here", "neutral")]  # kept as they are
    assert strip_style_tags(escape_style_text(r"[a] \ b\[")) == r"[a] \ b\["


@pytest.mark.parametrize("text, position, message", [
    ("Hello [bored] there", 6, r"unknown tag \[bored\] at character 7.*happy"),
    ("Hello [/bored] there", 6, r"unknown tag \[/bored\]"),
    ("Hi [happy there", 3, "never closed"),
    ("Hi [happy [sad] there", 3, "never closed"),
    ("Hi [/sad] there", 3, "closes no open tag"),
    ("[happy] Hi [/] [/] there", 15, "closes no open tag"),
    ("Hi [] there", 3, "empty tag"),
    ("Hi [happy volume=3] there", 3, "unknown setting 'volume=3'"),
    ("Hi [happy pitch=high] there", 3, "pitch .* must be a number"),
    ("Hi [happy intensity=2.5] there", 3, "intensity must be from 0 to 2"),
])
def test_bad_tags_are_refused_with_their_position(text, position, message):
    with pytest.raises(StyleTagError, match=message) as caught:
        parse_style_tags(text)
    assert isinstance(caught.value, TextError) and caught.value.position == position


_PLAIN = st.text(alphabet=st.sampled_from(list("ab [] \\,.xyz")), max_size=8)
_OPEN = st.builds(lambda label, attrs: f"[{label}{attrs}]", st.sampled_from(STYLES),
                  st.sampled_from(["", " intensity=1.5", " pitch=-2 energy=3"]))
_PIECES = st.lists(st.one_of(st.tuples(st.just("text"), _PLAIN), st.tuples(st.just("open"), _OPEN),
                             st.tuples(st.just("close"), st.sampled_from(["[/]", "[/{}]"]))), max_size=12)


@settings(max_examples=150, deadline=None)
@given(_PIECES)
def test_segments_join_to_the_text_without_tags(pieces):
    tagged, plain, open_labels = [], [], []
    for kind, value in pieces:
        if kind == "text":
            tagged.append(escape_style_text(value))
            plain.append(value)
        elif kind == "open":
            tagged.append(value)
            open_labels.append(value[1:-1].split()[0])
        elif open_labels:  # a closing tag only where one is open
            tagged.append(value.format(open_labels[-1]))
            open_labels.pop()
    segments = parse_style_tags("".join(tagged))
    assert "".join(segment for segment, _ in segments) == "".join(plain)
    assert all(segment for segment, _ in segments)
    assert all(a[1] != b[1] for a, b in itertools.pairwise(segments))


# ---------------------------------------------------------------------------------------------------------
# The controls act on real speech (flite), through the same post-processing every engine's audio gets


@pytest.fixture(scope="module")
def loud_clip(flite) -> Audio:
    """flite's raw output: about -13 dBFS active level, peaks at 0.9."""
    return flite.synthesize("Where did you put the keys to the old blue car?", "slt").audio


@pytest.fixture(scope="module")
def clip(loud_clip) -> Audio:
    """The clip at the level the studio's engines speak at (`NEUTRAL_LEVEL_DBFS`), with headroom."""
    return set_level(loud_clip, NEUTRAL_LEVEL_DBFS)


def _f0_semitones(audio: Audio) -> np.ndarray:
    parselmouth = pytest.importorskip("parselmouth")
    pitch = parselmouth.Sound(audio.samples.astype(np.float64), audio.sample_rate).to_pitch(0.01, 60, 500)
    values = pitch.selected_array["frequency"]
    return 12 * np.log2(values[values > 0] / 55.0)


def _render(audio: Audio, **controls: float) -> Audio:
    return apply_conditioning(audio, engine_conditioning(Style(**controls)), seed=0)


def test_pitch_shift_moves_the_median_f0_by_its_semitones(clip):
    before = np.median(_f0_semitones(clip))
    assert np.median(_f0_semitones(_render(clip, pitch=4))) - before == pytest.approx(4.0, abs=0.5)
    assert np.median(_f0_semitones(_render(clip, pitch=-3))) - before == pytest.approx(-3.0, abs=0.5)


def test_pitch_range_widens_the_f0_spread(clip):
    spread = lambda semitones: np.percentile(semitones, 95) - np.percentile(semitones, 5)
    neutral = spread(_f0_semitones(clip))
    assert spread(_f0_semitones(_render(clip, pitch_range=2.0))) > 1.5 * neutral
    assert spread(_f0_semitones(_render(clip, pitch_range=0.5))) < 0.7 * neutral


def test_energy_changes_the_active_level_by_its_decibels(clip, loud_clip):
    assert _level(_render(clip, energy=6)) - _level(clip) == pytest.approx(6.0, abs=0.3)
    assert _level(_render(clip, energy=-9)) - _level(clip) == pytest.approx(-9.0, abs=0.3)
    # Without headroom the soft limiter keeps the peaks below full scale (and the gain falls a little short).
    louder = _render(loud_clip, energy=12)
    assert np.abs(louder.samples).max() <= LIMITER_CEILING and _level(louder) - _level(loud_clip) > 6.0


def test_no_controls_leave_the_audio_untouched_and_post_processing_is_seeded(clip):
    assert _render(clip) is clip and _render(clip, intensity=2.0) is clip  # neutral has nothing to exaggerate
    styled = engine_conditioning(Style("whisper:0.5+happy:0.5", intensity=1.6))
    first, again = (apply_conditioning(clip, styled, seed=3) for _ in range(2))
    assert np.array_equal(first.samples, again.samples)
    size = min(len(first), len(clip))
    assert not np.allclose(first.samples[:size], clip.samples[:size], atol=1e-3)


# ---------------------------------------------------------------------------------------------------------
# synthesize(): tags switch the style mid-passage on both engines


@pytest.fixture(scope="module")
def voice(flite):
    from tts.voice import clone_voice

    text = "The quick brown fox jumps over the lazy dog."
    return clone_voice(flite.synthesize(text, "slt").audio, transcript=text)


def test_engine_labels_and_rate_decide_what_is_rendered_on_the_audio():
    from tts.synthesis import plan_chunks

    sad = STYLE_TABLE["sad"]
    [(_, native)] = plan_chunks("Hello there.", Style("sad"), labels=STYLES, native_rate=False)
    assert (native.emotion, native.intensity, native.has_residual) == ("sad", 1.0, False)
    assert native.speed == pytest.approx(sad.rate)  # the label's rate goes to the speed, not to the engine
    [(_, plain)] = plan_chunks("Hello there.", Style("sad"))
    assert (plain.emotion, plain.speed, plain.has_residual) == ("sad", 1.0, False)  # a base speaker renders it all
    [(_, residual)] = plan_chunks("Hello there.", Style("sad", intensity=0.5), labels=("neutral",), native_rate=False)
    assert (residual.emotion, residual.intensity) == ("neutral", 0.0)  # an engine without the label speaks neutrally
    assert residual.residual.pitch_shift == pytest.approx(sad.pitch_shift / 2)
    assert residual.residual.energy_db == pytest.approx(sad.energy_db / 2)
    assert residual.speed == pytest.approx(sad.rate ** 0.5)


@pytest.fixture(scope="module")
def ar_engine():
    from tests.test_synthesis import tiny_engine

    return tiny_engine()


@pytest.fixture(scope="module")
def tone_engine():
    from tests.test_tone_color import tiny_tone_engine

    return tiny_tone_engine()


def _level(audio: Audio) -> float:
    return active_rms_dbfs(audio, gate_db=-LEVEL_GATE_DB)


def test_ar_engine_follows_the_tags_chunk_by_chunk(ar_engine, voice, monkeypatch):
    from tts import synthesis

    asked = []
    real = synthesis.generate_speech_tokens
    monkeypatch.setattr(synthesis, "generate_speech_tokens", lambda model, units, prompt, style, intensity, *rest:
                        asked.append((style, intensity)) or real(model, units, prompt, style, intensity, *rest))
    text = "Good morning. [whisper] Keep it down. [/whisper] [happy:0.5+sad:0.5 intensity=1.8] Great news!"
    whole = synthesis.synthesize(text, voice, emotion="calm", intensity=0.5, seed=2, models=ar_engine, watermark=False)
    assert asked == [("calm", 0.5), ("neutral", 0.0), ("happy", 0.9)]  # the whisper is rendered on the audio
    pieces = list(synthesis.synthesize(text, voice, emotion="calm", intensity=0.5, seed=2, models=ar_engine,
                                       watermark=False, stream=True))
    assert len(pieces) >= 5  # three chunks (the mixed one post-processed whole) and the pauses between them
    np.testing.assert_allclose(np.concatenate([p.samples for p in pieces]), whole.samples, atol=1e-3)

    def chunks(energy: float) -> list[Audio]:
        pieces = synthesis.synthesize(f"Good morning. [energy={energy}] Good morning. [/]", voice, seed=2,
                                      models=ar_engine, watermark=False, stream=True)
        return [piece for piece in pieces if np.any(piece.samples)]

    quiet, loud = chunks(-12), chunks(-2)
    assert np.array_equal(quiet[0].samples, loud[0].samples)  # the untagged chunk is the same
    assert _level(loud[-1]) - _level(quiet[-1]) == pytest.approx(10.0, abs=0.5)
    with pytest.raises(StyleTagError, match="bored"):
        synthesis.synthesize("Hi [bored] there.", voice, models=ar_engine)
    literal = synthesis.synthesize("Hi [bored] there.", voice, models=ar_engine, seed=0, tags=False, watermark=False)
    assert literal.duration > 0.1


def test_base_convert_follows_the_tags_chunk_by_chunk(tone_engine, voice, monkeypatch):
    from tts import synthesis, tone_color

    asked = []
    real = tone_color.base_speech
    monkeypatch.setattr(tone_color, "base_speech", lambda text, base, voice, **kw:
                        asked.append((text, kw["style"], kw["intensity"], kw["speed"])) or
                        real(text, base, voice, **kw))
    options = {"engine": "base+convert", "base": "flite:slt", "models": tone_engine, "seed": 1, "watermark": False}
    out = synthesis.synthesize("[sad speed=1.5] Red and blue. [/sad] [energy=-10] Good morning.", voice, **options)
    assert [entry[1:] for entry in asked] == [("sad", 1.0, 1.5), ("neutral", 0.0, 1.0)]
    assert [entry[0].strip() for entry in asked] == ["Red and blue.", "Good morning."]
    assert out.duration > 1.0
    quiet = [p for p in synthesis.synthesize("Good morning. [energy=-10] Good morning.", voice, stream=True,
                                             **options) if np.any(p.samples)]
    plain = [p for p in synthesis.synthesize("Good morning. [pitch_range=1] Good morning.", voice, stream=True,
                                             **options) if np.any(p.samples)]
    assert len(quiet) == 2 and len(plain) == 1  # an unchanged style is no new segment
    assert _level(quiet[0]) - _level(quiet[1]) == pytest.approx(10.0, abs=1.5)


def test_synthesize_refuses_bad_controls(ar_engine, voice):
    from tts.synthesis import synthesize

    for bad, message in (({"intensity": 2.5}, "intensity"), ({"pitch": 13}, "pitch"), ({"energy": -20}, "energy"),
                         ({"pitch_range": 0.1}, "pitch_range"), ({"emotion": "furious"}, "unknown style"),
                         ({"emotion": "happy", "style": "sad"}, "older name")):
        with pytest.raises(ValueError, match=message):
            synthesize("Hi.", voice, models=ar_engine, **bad)


def test_say_command_passes_the_style_flags(tmp_path, monkeypatch, voice):
    from tts import synthesis
    from tts.cli import main

    calls = []
    monkeypatch.setattr(synthesis, "synthesize",
                        lambda text, voice, **kw: calls.append((text, kw)) or Audio(np.zeros(2400, np.float32)))
    voice.save(tmp_path / "slt.voice")
    common = ["--voice", str(tmp_path / "slt.voice"), "-o", str(tmp_path / "out.wav")]
    assert main(["say", "[whisper] Hi [/whisper] there.", *common, "--emotion", "happy:0.7+sad:0.3",
                 "--intensity", "1.5", "--pitch", "2", "--pitch-range", "1.3", "--energy", "-4", "--speed", "1.2"]) == 0
    text, kwargs = calls[-1]
    assert kwargs["emotion"] == Style("happy:0.7+sad:0.3", intensity=1.5, pitch=2, pitch_range=1.3, energy=-4,
                                      speed=1.2)
    assert kwargs["tags"] is True and text == "[whisper] Hi [/whisper] there."
    assert main(["say", "Hi.", *common, "--style", "sad"]) == 0 and calls[-1][1]["emotion"] == Style("sad")
    assert main(["say", "see [1]", *common, "--no-tags"]) == 0 and calls[-1][1]["tags"] is False
    count = len(calls)
    assert main(["say", "Hi.", *common, "--pitch", "30"]) == 2
    assert main(["say", "Hi [bored].", *common]) == 2
    assert len(calls) == count  # refused before any synthesis

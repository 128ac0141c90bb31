"""`timbre say` (text + a voice -> audio), `timbre convert` (a recording -> the same words in another voice) and
`timbre edit` (a recording -> other words or another speed, the rest kept); a voice is an audio clip or a saved
``.voice`` file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def load_voice_argument(path: Path, transcript: str | None = None):
    """A `Voice` from a ``.voice`` file or an audio clip (cloned, transcribed when no transcript is given)."""
    from tts.voice import Voice, clone_voice

    if path.suffix.lower() == ".voice":
        voice = Voice.load(path)
        return clone_voice(voice, transcript) if transcript else voice
    return clone_voice(path, transcript)


def register(subparsers) -> None:
    """Add ``timbre say``, ``timbre convert`` and ``timbre edit``."""
    from tts.data.styles import STYLES

    from tts.synthesis import CONVERSION_ENGINES, DEFAULT_CONVERSION_ENGINE, DEFAULT_ENGINE, SYNTHESIS_ENGINES

    parser = subparsers.add_parser("say", help="speak text in a cloned voice")
    parser.add_argument("text", help="what to say")
    parser.add_argument("--engine", choices=SYNTHESIS_ENGINES, default=DEFAULT_ENGINE,
                        help=f"dit: DiT infilling after the reference; ar: token LM -> refiner (streams within a "
                             f"sentence); base+convert: a base speaker, then the tone-color converter (default "
                             f"{DEFAULT_ENGINE})")
    parser.add_argument("--base", help="base speaker of base+convert: a voice id (piper:joe, kokoro:jf_alpha, ...) or ar")
    parser.add_argument("--tau", type=float, default=0.3, help="tone-color converter temperature (base+convert)")
    parser.add_argument("--voice", type=Path, required=True, help="reference clip (wav, flac, mp3, ...) or a .voice file")
    parser.add_argument("--transcript", help="what the reference clip says (default: transcribed offline)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file (wav, flac, mp3, ogg)")
    emotion = parser.add_mutually_exclusive_group()
    emotion.add_argument("--emotion", help=f"emotion label ({', '.join(STYLES)}) or a mixture such as "
                                           "happy:0.7+sad:0.3 (default neutral)")
    emotion.add_argument("--style", help="older name of --emotion")
    emotion.add_argument("--style-ref", type=Path,
                         help="a clip whose style to speak in (timbre from --voice): the emotion and intensity the style "
                              "classifier hears in it; --intensity, --speed, --pitch, --pitch-range and --energy act on "
                              "top")
    parser.add_argument("--intensity", type=float, default=None,
                        help="emotion strength 0-2 (default 1; above 1 exaggerates)")
    parser.add_argument("--speed", type=float, default=None, help="speaking rate 0.5-2 (default 1)")
    parser.add_argument("--pitch", type=float, default=None, help="pitch shift in semitones, -12 to 12 (default 0)")
    parser.add_argument("--pitch-range", type=float, default=None,
                        help="factor on pitch excursions (expressiveness), 0.25-3 (default 1)")
    parser.add_argument("--energy", type=float, default=None, help="level change in dB, -12 to 12 (default 0)")
    parser.add_argument("--no-tags", action="store_true",
                        help="read [brackets] in the text as text, not as style tags such as [whisper] ... [/whisper]")
    parser.add_argument("--seed", type=int, default=None, help="makes the result reproducible")
    parser.add_argument("--stream", action="store_true", help="generate chunk by chunk and report the time to first audio")
    parser.add_argument("--verify", action="store_true", help="re-generate sentences the offline ASR finds wrong")
    parser.add_argument("--takes", type=int, default=1,
                        help="make this many takes (seeds --seed, --seed+1, ...) and keep the one the offline ASR "
                             "hears best (tts.takes; not with --stream)")
    parser.set_defaults(func=_run_say)

    convert = subparsers.add_parser("convert", help="say a recording again in another voice")
    convert.add_argument("source", type=Path, help="the recording to convert")
    convert.add_argument("--engine", choices=CONVERSION_ENGINES, default=DEFAULT_CONVERSION_ENGINE,
                         help="dit: the recording's words and melody said by a base speaker, then again by the DiT in "
                              "the voice; tone-color: OpenVoice "
                              "converter (only timbre changes); distilled / ar: speech tokens -> (self-distilled) "
                              f"refiner (default {DEFAULT_CONVERSION_ENGINE})")
    convert.add_argument("--source-text", help="dit: what the recording to convert says (default: transcribed offline)")
    convert.add_argument("--tau", type=float, default=0.3, help="tone-color converter temperature (0: deterministic)")
    convert.add_argument("--voice", type=Path, required=True, help="target voice: a reference clip or a .voice file")
    convert.add_argument("--transcript", help="what the target's reference clip says (default: transcribed offline)")
    convert.add_argument("-o", "--output", type=Path, required=True, help="output file (wav, flac, mp3, ogg)")
    convert.add_argument("--seed", type=int, default=0)
    convert.set_defaults(func=_run_convert)

    edit = subparsers.add_parser("edit", help="change words (or the speed) inside a recording, keeping the rest")
    edit.add_argument("recording", type=Path, help="the recording to edit")
    edit.add_argument("--from", dest="old", required=True, help="what the recording says now")
    change = edit.add_mutually_exclusive_group(required=True)
    change.add_argument("--to", dest="new", help="what it should say: only the words that differ are regenerated")
    change.add_argument("--speed", type=float, help="say it this many times faster (0.7: slower), keeping the words")
    edit.add_argument("--span", help="with --speed: only between these seconds, as START:END (default: throughout)")
    edit.add_argument("-o", "--output", type=Path, required=True, help="output file (wav, flac, mp3, ogg)")
    edit.add_argument("--steps", type=int, default=None,
                      help="flow sampling steps (default: 1 from the guide voice, 8 from noise)")
    edit.add_argument("--seed", type=int, default=0)
    edit.add_argument("--takes", type=int, default=1,
                      help="with --to: make this many edits (seeds counting up from --seed) and keep the one Whisper "
                           "hears saying the new text best")
    edit.add_argument("--guide-voice", default=None, metavar="VOICE",
                      help="with --to: the base speaker that says the new text first; the new words start from its "
                           "rendering (default piper:joe; 'none': from noise)")
    edit.add_argument("--context", type=int, default=None, metavar="N",
                      help="with --to: unchanged words on each side of a change said again with it (default 1; "
                           "0 keeps every other word as recorded)")
    edit.set_defaults(func=_run_edit)


def _run_convert(args: argparse.Namespace) -> int:
    from tts.audio import load_audio
    from tts.synthesis import convert

    voice = load_voice_argument(args.voice, args.transcript)
    print(f"voice {voice.name or voice.source or args.voice} ({voice.consent_note})")
    start = time.perf_counter()
    result = convert(load_audio(args.source), voice, engine=args.engine, source_text=args.source_text, tau=args.tau,
                     seed=args.seed)
    path = result.save(args.output)
    print(f"wrote {path} ({result.duration:.2f} s in {time.perf_counter() - start:.2f} s)")
    return 0


def _parse_span(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        start, end = (float(part) for part in text.split(":"))
    except ValueError:
        raise SystemExit(f"timbre edit: --span takes START:END in seconds (e.g. 1.2:2.5), got {text!r}") from None
    if not 0 <= start < end:
        raise SystemExit(f"timbre edit: --span needs 0 <= START < END, got {text!r}")
    return start, end


def _run_edit(args: argparse.Namespace) -> int:
    from tts.audio import load_audio
    from tts.dit.engine import EDIT_CONTEXT_WORDS, GUIDE_VOICE, change_speed, edit

    span = _parse_span(args.span)
    if span is not None and args.speed is None:
        raise SystemExit("timbre edit: --span goes with --speed")
    if args.takes != 1 and args.speed is not None:
        raise SystemExit("timbre edit: --takes goes with --to (Whisper checks the new words); a speed edit is made once")
    if args.guide_voice is not None and args.speed is not None:
        raise SystemExit("timbre edit: --guide-voice goes with --to (a speed edit starts from the recording itself)")
    if args.context is not None and args.speed is not None:
        raise SystemExit("timbre edit: --context goes with --to (a speed edit says its span's own words again)")
    if args.context is not None and args.context < 0:
        raise SystemExit(f"timbre edit: --context is a number of words, 0 or more, got {args.context}")
    # The default guide falls back to noise where its synthesizer is missing (logged); one asked for must run.
    guide_voice = GUIDE_VOICE
    if args.guide_voice is not None and args.guide_voice.lower() == "none":
        guide_voice = None
    elif args.guide_voice is not None:
        from tts.data.voicebank import check_voice_id

        try:
            guide_voice = check_voice_id(args.guide_voice)
        except ValueError as error:  # TimbreError is a ValueError
            raise SystemExit(f"timbre edit: --guide-voice: {error}") from None
    audio = load_audio(args.recording)
    start = time.perf_counter()
    if args.speed is not None:
        result = change_speed(audio, args.old, args.speed, span=span, seed=args.seed, steps=args.steps)
    else:
        context = EDIT_CONTEXT_WORDS if args.context is None else args.context
        result = edit(audio, args.old, args.new, seed=args.seed, steps=args.steps, takes=args.takes,
                      guide_voice=guide_voice, context=context)
    path = result.audio.save(args.output)
    for index, take in enumerate(result.takes.takes if result.takes is not None else ()):
        kept = "  (kept)" if index == result.takes.best_index else ""
        print(f"take seed {take.seed}: WER {take.wer:.2f}, heard {take.transcript!r}{kept}")
    for (old, new), (a, b) in zip(result.changes, result.spans):
        print(f"{a:7.2f}-{b:7.2f} s  {old!r} -> {new!r}")
    print(f"wrote {path} ({result.audio.duration:.2f} s in {time.perf_counter() - start:.2f} s)")
    return 0


def _run_say(args: argparse.Namespace) -> int:
    from tts.audio import Audio
    from tts.style import parse_style_tags, style_from_options
    from tts.synthesis import synthesize

    # Check the style, its tags and a style clip before the (slow) cloning of the voice.
    style = style_from_options(args.emotion, style=args.style, intensity=args.intensity, speed=args.speed,
                               pitch=args.pitch, pitch_range=args.pitch_range, energy=args.energy)
    if not args.no_tags:
        parse_style_tags(args.text, style)
    if args.style_ref is not None:
        from tts.style_reference import load_style_clip

        style_options = {"style_ref": load_style_clip(args.style_ref), "intensity": args.intensity, "speed": args.speed,
                         "pitch": args.pitch, "pitch_range": args.pitch_range, "energy": args.energy}
    else:
        style_options = {"emotion": style}
    if args.takes != 1 and args.stream:
        from tts.errors import TimbreError

        raise TimbreError("takes are compared whole: use --takes or --stream, not both")
    voice = load_voice_argument(args.voice, args.transcript)
    print(f"voice {voice.name or voice.source or args.voice} ({voice.consent_note})")
    start = time.perf_counter()
    if args.takes != 1:
        from tts.takes import best_take

        takes = best_take(args.text, voice, takes=args.takes, engine=args.engine, base=args.base, tau=args.tau,
                          **style_options, seed=args.seed, verify=args.verify, tags=not args.no_tags,
                          on_take=lambda done, total, take: print(
                              f"take {done}/{total}: seed {take.seed}, WER {take.wer:.2f}, heard {take.transcript!r}"))
        print(f"kept take {takes.best_index + 1} (seed {takes.best.seed}, WER {takes.best.wer:.2f})")
        result = takes.best.audio
    else:
        result = synthesize(args.text, voice, engine=args.engine, base=args.base, tau=args.tau, **style_options,
                            seed=args.seed, stream=args.stream, verify=args.verify, tags=not args.no_tags)
    if args.stream:
        pieces, first = [], None
        for chunk in result:
            first = time.perf_counter() - start if first is None else first
            pieces.append(chunk.samples)
        result = Audio(np.concatenate(pieces), chunk.sample_rate)
        print(f"first audio after {first * 1000:.0f} ms")
    elapsed = time.perf_counter() - start
    path = result.save(args.output)
    print(f"wrote {path} ({result.duration:.2f} s of audio in {elapsed:.2f} s, RTF {elapsed / max(result.duration, 1e-9):.3f})")
    return 0

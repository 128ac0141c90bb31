"""What makes speech tokens good, measured: codebook usage, phoneme recognizability, speaker leakage.

- Codebook usage: perplexity of the token histogram (``exp`` of its entropy; at most the codebook size) and the
  fraction of codes used at least once.
- Phoneme recognizability: phoneme error rate (PER) of greedy CTC decoding *from the tokens alone*
  (`SpeechTokenizer.ctc_logits_from_tokens`) against the transcript's phonemes, on held-out utterances.
- Speaker leakage: accuracy of a multinomial logistic regression that predicts the speaker from an utterance's
  tokens (normalized token histogram plus mean and spread of the FSQ codes), trained on half of each speaker's
  utterances and tested on the other half. Lower is better; chance is reported beside it, and so is the same
  probe on the utterance's mel statistics, which shows how much the probe finds when nothing was removed.

Shapes: ``U`` utterances, ``T`` CTC frames, ``V`` phoneme vocabulary, ``N`` tokens, ``Q`` FSQ dimensions,
``Df`` feature width.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from tts.evaluation.wer import edit_counts
from tts.tokenizer.model import CTC_BLANK_ID, SpeechTokenizer

logger = logging.getLogger(__name__)


def greedy_ctc_decode(logits: torch.Tensor, length: int | None = None, blank: int = CTC_BLANK_ID) -> list[int]:
    """Best-path decoding of ``(T, V)`` CTC logits: argmax per frame, merge repeats, drop blanks."""
    best = logits[: length if length is not None else logits.shape[0]].argmax(dim=-1).tolist()
    out, previous = [], None
    for label in best:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def phoneme_error_rate(references: Sequence[Sequence[int]], hypotheses: Sequence[Sequence[int]]) -> float:
    """Corpus PER: all edit errors over all reference phonemes."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    errors = total = 0
    for reference, hypothesis in zip(references, hypotheses):
        counts = edit_counts(list(reference), list(hypothesis))
        errors += counts.errors
        total += counts.reference_words
    if total == 0:
        raise ValueError("the references hold no phonemes")
    return errors / total


def codebook_usage(token_sequences: Sequence[torch.Tensor], codebook_size: int) -> dict[str, float]:
    """Perplexity, fraction of codes used, and count of codes used, over all tokens of all sequences."""
    tokens = torch.cat([t.reshape(-1).long() for t in token_sequences]) if token_sequences else torch.zeros(0, dtype=torch.long)
    if tokens.numel() == 0:
        raise ValueError("no tokens to measure")
    counts = torch.bincount(tokens, minlength=codebook_size).double()
    probabilities = counts / counts.sum()
    nonzero = probabilities[probabilities > 0]
    entropy = float(-(nonzero * nonzero.log()).sum())
    return {
        "perplexity": float(np.exp(entropy)),
        "used_fraction": float((counts > 0).sum()) / codebook_size,
        "used_codes": int((counts > 0).sum()),
        "tokens": int(tokens.numel()),
    }


def token_features(model: SpeechTokenizer, tokens: torch.Tensor) -> np.ndarray:
    """``(N,)`` tokens of one utterance -> ``(codebook_size + 2Q,)`` features for the speaker probe."""
    histogram = torch.bincount(tokens.long(), minlength=model.config.codebook_size).float() / max(1, tokens.numel())
    codes = model.tokens_to_codes(tokens[None])[0]  # (N, Q)
    spread = codes.std(dim=0, unbiased=False) if codes.shape[0] > 1 else torch.zeros(codes.shape[1])
    return torch.cat([histogram, codes.mean(dim=0), spread]).cpu().numpy()


def mel_features(mel: torch.Tensor) -> np.ndarray:
    """``(M, F)`` log-mel -> ``(2M,)`` per-band mean and spread (the reference probe on the input)."""
    return torch.cat([mel.mean(dim=1), mel.std(dim=1, unbiased=False)]).cpu().numpy()


def stratified_halves(speakers: Sequence[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train and a test half, splitting each speaker's utterances in two (speakers with fewer
    than two utterances are left out)."""
    rng = np.random.default_rng(seed)
    speakers = np.asarray(speakers)
    train, test = [], []
    for speaker in np.unique(speakers):
        members = rng.permutation(np.flatnonzero(speakers == speaker))
        if len(members) < 2:
            continue
        half = len(members) // 2
        train.extend(members[:half].tolist())
        test.extend(members[half:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def probe_accuracy(
    features: np.ndarray, labels: Sequence[int], seed: int = 0, weight_decay: float = 1e-3, steps: int = 200
) -> dict[str, float]:
    """Test accuracy of a logistic-regression probe ``(U, Df)`` -> labels, with its chance level.

    Features are standardized with the training half's statistics; the probe is fitted by L-BFGS with an L2
    penalty. Chance is the test accuracy of always answering the training half's most frequent label.
    """
    labels = np.asarray(labels)
    train, test = stratified_halves(labels, seed)
    if len(train) == 0 or len(np.unique(labels[train])) < 2:
        raise ValueError("the speaker probe needs at least two speakers with two utterances each")
    classes, encoded = np.unique(labels, return_inverse=True)
    x = torch.as_tensor(features, dtype=torch.float64)
    mean, std = x[train].mean(dim=0), x[train].std(dim=0, unbiased=False)
    # Features constant over the training half (a code no training utterance used) carry nothing: zero them.
    x = (x - mean) / torch.where(std > 1e-8, std, torch.full_like(std, float("inf")))
    y = torch.as_tensor(encoded, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    weight = (0.01 * torch.randn(x.shape[1], len(classes), generator=generator, dtype=torch.float64)).requires_grad_()
    bias = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")
    train_t = torch.as_tensor(train)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[train_t] @ weight + bias, y[train_t]) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (x[torch.as_tensor(test)] @ weight + bias).argmax(dim=1).numpy()
    majority = np.bincount(encoded[train]).argmax()
    return {
        "accuracy": float(np.mean(predicted == encoded[test])),
        "chance": float(np.mean(encoded[test] == majority)),
        "speakers": int(len(np.unique(labels[np.concatenate([train, test])]))),
        "test_utterances": int(len(test)),
    }


@dataclass(frozen=True)
class TokenizerMetrics:
    """Scores of a tokenizer on a set of utterances (see the module docstring)."""

    utterances: int
    phoneme_error_rate: float
    codebook_perplexity: float
    codebook_used_fraction: float
    speaker_accuracy: float | None = None
    speaker_chance: float | None = None
    mel_speaker_accuracy: float | None = None

    def to_dict(self) -> dict:
        return {key: (round(value, 4) if isinstance(value, float) else value) for key, value in asdict(self).items()}


@torch.no_grad()
def evaluate_tokenizer(
    model: SpeechTokenizer,
    mels: Sequence[torch.Tensor],
    targets: Sequence[Sequence[int]],
    speakers: Sequence[int] | None = None,
    seed: int = 0,
) -> TokenizerMetrics:
    """Score `model` on utterances: ``mels`` ``(M, F)`` each, their CTC target ids, and optionally speaker labels.

    Speaker leakage is measured when `speakers` name at least two speakers with two utterances each.
    """
    if not mels or len(mels) != len(targets):
        raise ValueError("give one target sequence per mel, and at least one")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    hypotheses, all_tokens, token_rows, mel_rows = [], [], [], []
    for mel in mels:
        tokens, lengths = model.encode(mel[None].to(device=device, dtype=torch.float32))
        logits = model.ctc_logits_from_tokens(tokens, lengths)[0]
        hypotheses.append(greedy_ctc_decode(logits))
        all_tokens.append(tokens[0].cpu())
        if speakers is not None:
            token_rows.append(token_features(model, tokens[0]))
            mel_rows.append(mel_features(mel.float()))
    model.train(was_training)
    usage = codebook_usage(all_tokens, model.config.codebook_size)
    leakage: dict[str, float | None] = {"speaker_accuracy": None, "speaker_chance": None, "mel_speaker_accuracy": None}
    if speakers is not None and len(set(speakers)) >= 2:
        try:
            probe = probe_accuracy(np.stack(token_rows), speakers, seed)
            leakage = {
                "speaker_accuracy": probe["accuracy"],
                "speaker_chance": probe["chance"],
                "mel_speaker_accuracy": probe_accuracy(np.stack(mel_rows), speakers, seed)["accuracy"],
            }
        except ValueError as error:
            logger.info("speaker leakage not measured: %s", error)
    return TokenizerMetrics(
        utterances=len(mels),
        phoneme_error_rate=phoneme_error_rate(targets, hypotheses),
        codebook_perplexity=usage["perplexity"],
        codebook_used_fraction=usage["used_fraction"],
        **leakage,
    )


HELDOUT_CLIPS_PER_VOICE = 4


@torch.no_grad()
def heldout_phoneme_error_rates(model: SpeechTokenizer, voices: Sequence[str] | None = None,
                                clips_per_voice: int = HELDOUT_CLIPS_PER_VOICE) -> dict[str, float]:
    """PER from the tokens of voices no training recipe may use, reading held-out texts: voice spec -> PER.

    The voices default to the refiner stages' (`tts.evaluation.stages.STAGE_VOICES`: other synthesizers, pseudo-
    speakers made from them, and reserved pseudo-speakers of the training synthesizers); voice ``v`` reads
    held-out texts ``v * clips_per_voice`` onwards. Clips are rendered once and cached (`heldout_clip`).
    This is the number that says whether tokens carry words for voices the tokenizer never heard: the
    validation PER of a training run is measured on other utterances of its training voices.
    """
    from tts.audio import log_mel
    from tts.evaluation.stages import STAGE_VOICES, heldout_clip
    from tts.evaluation.testsets import heldout_texts
    from tts.text import phonemize
    from tts.tokenizer.align import ctc_targets

    voices = tuple(voices or STAGE_VOICES)
    texts = heldout_texts()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rates = {}
    try:
        for v, spec in enumerate(voices):
            references, hypotheses = [], []
            for k in range(clips_per_voice):
                text = texts[(v * clips_per_voice + k) % len(texts)]
                audio = heldout_clip(spec, text).audio.resample(model.config.mel.sample_rate)
                mel = log_mel(audio.samples, model.config.mel)[None].to(device)
                tokens, lengths = model.encode(mel)
                hypotheses.append(greedy_ctc_decode(model.ctc_logits_from_tokens(tokens, lengths)[0]))
                references.append(ctc_targets(phonemize(text)))
            rates[spec] = phoneme_error_rate(references, hypotheses)
    finally:
        model.train(was_training)
    return rates


def heldout_summary(rates: dict[str, float]) -> dict[str, float]:
    """Means of `heldout_phoneme_error_rates` for the model card: over all voices, over the other
    synthesizers' own voices (``engine:voice``), and over pseudo-speakers (``pk…``/``pw…``)."""
    own = [rate for spec, rate in rates.items() if ":" in spec]
    pseudo = [rate for spec, rate in rates.items() if ":" not in spec]
    summary = {"heldout_voices_per": float(np.mean(list(rates.values())))}
    if own:
        summary["heldout_synthesizers_per"] = float(np.mean(own))
    if pseudo:
        summary["heldout_pseudo_speakers_per"] = float(np.mean(pseudo))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tts.tokenizer.metrics [--checkpoint NAME_OR_PATH] [--voices A,B] [--clips N] [--json]``:
    PER from tokens on held-out voices, per voice and summarized."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m tts.tokenizer.metrics",
                                     description="Phoneme error rate from a speech tokenizer's tokens on held-out voices.")
    parser.add_argument("--checkpoint", default="speech_tokenizer", help="tokenizer folder or shipped name")
    parser.add_argument("--voices", help="comma-separated held-out voice specs (default: the refiner stages' voices)")
    parser.add_argument("--clips", type=int, default=HELDOUT_CLIPS_PER_VOICE, help="held-out texts per voice")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    model = SpeechTokenizer.from_pretrained(args.checkpoint).float()
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else None
    rates = heldout_phoneme_error_rates(model, voices, args.clips)
    summary = heldout_summary(rates)
    if args.json:
        print(json.dumps({"per_by_voice": rates, **summary}, indent=2))
        return 0
    for spec, rate in rates.items():
        print(f"{spec:34s} {rate:.3f}")
    for key, value in summary.items():
        print(f"{key:34s} {value:.3f}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

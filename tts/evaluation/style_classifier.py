"""The style classifier: which of `tts.data.styles.STYLES` a clip is spoken in, from utterance-level features.

    classifier = load_style_classifier()               # the shipped checkpoints/style_classifier
    prediction = classifier.classify(audio)            # StylePrediction(label, confidence, probabilities)

    paired = load_style_classifier(PAIRED_NAME)          # the same voice's neutral speech as a second input
    prediction = paired.classify(audio, neutral=[other_neutral_clip, ...])

    python -m tts.evaluation.style_classifier train --out checkpoints/style_classifier --seed 0
    python -m tts.evaluation.style_classifier train --paired --out checkpoints/style_classifier_paired --seed 0
    python -m tts.evaluation.style_classifier classify clip.wav

The model is small on purpose: `tts.evaluation.style_features` (prosody and spectral statistics of the clip,
normalized by the mean and spread stored in the config) -> one hidden layer (or none: logistic regression) ->
one logit per label. It measures the studio's outputs (`timbre eval --metrics style`) and reads the style of a
separate reference clip (``synthesize(..., style_ref=...)``, `tts.style_reference`).

Two kinds, one class. The plain classifier hears one clip alone, as a user's style clip arrives. The *paired*
classifier (`StyleClassifierConfig.paired`) also hears neutral speech of the same voice reading *other* texts:
its input is the clip's features (absolute level left out) and their difference from the mean of the neutral
clips' (`paired_features`). Styles differ from each other mostly in how far they move a voice from its own
neutral (happy and surprised both raise and widen F0, calm and sad both lower and narrow it), which one clip
alone cannot say. The evaluation harness gives it an engine's neutral outputs of the other texts spoken with
the same prompt clip, so it measures how the engine's styled speech departs from its own neutral speech.

Training data (`train`): ONLY voices that no engine is trained on (`tts.evaluation.testsets.HELDOUT_VOICES`, their
twin ``flite:slt`` and held-out pseudo-speakers), each reading sentences of the sentence generator's held-out split
in every rendered style of the voice bank (`tts.evaluation.stages.heldout_clip`, cached). The voices are split in two
(`TRAIN_VOICES`, `TEST_VOICES`) and so are the texts, so the accuracy in the model card is on voices and texts the
classifier never saw either. None of the texts is one of the evaluation set's (`heldout_texts`), which the harness
speaks. Deterministic in ``--seed``; rendered clips are cached, so an interrupted run resumes where it stopped.

Shapes: ``B`` clips, ``D`` features, ``I`` model inputs (`StyleClassifierConfig.input_names`), ``H`` hidden units,
``C`` labels.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from tts.audio import Audio
from tts.checkpoints import PretrainedMixin
from tts.data.styles import STYLES
from tts.errors import CheckpointError
from tts.evaluation.style_features import FEATURE_NAMES, FEATURE_VERSION, SPEAKER_FEATURES, style_features

logger = logging.getLogger(__name__)

SHIPPED_NAME = "style_classifier"
PAIRED_NAME = "style_classifier_paired"
"""The shipped paired classifier (`StyleClassifierConfig.paired`)."""

TRAIN_VOICES: tuple[str, ...] = (
    "flite:awb", "festival:cmu_us_slt_arctic_hts", "pw0100", "pw0101", "pw0104", "pw0109", "pw0112", "pw0116",
    "pk0150", "pk0152", "pw0009", "pw0029", "pw0049", "pw0069",
)
"""The classifier's training voices: held-out voices of every synthesizer (flite, festival's HTS and diphone, Piper,
Kokoro) and warps and blends of them."""

TEST_VOICES: tuple[str, ...] = (
    "flite:slt", "piper:joe", "kokoro:jm_kumo", "pw0110", "pw0113", "pk0151", "pw0039", "pw0059", "pw0079",
)
"""The voices its accuracy is measured on: none of them in `TRAIN_VOICES` (the same synthesizers, other people)."""

TRAIN_TEXTS_PER_VOICE = 5
TEST_TEXTS_PER_VOICE = 4
TRAIN_INTENSITIES = (0.6, 0.8, 1.0)
"""A training voice's styled clips cycle through these intensities (text k gets intensity k mod 3)."""
TEST_INTENSITY = 1.0
TEXT_SEED = 8
TEXT_CHARS = (25, 100)
"""Sentences are drawn from the held-out split of `tts.data.sentences`, between these many characters."""


@dataclass(frozen=True)
class StyleClassifierConfig:
    """Shape of the classifier and the feature normalization it was trained with.

    Attributes:
        labels: the classes, in logit order.
        feature_names: the inputs (`tts.evaluation.style_features.FEATURE_NAMES` of `feature_version`).
        feature_version: `tts.evaluation.style_features.FEATURE_VERSION` when trained.
        hidden_size: units of the hidden layer (0: logistic regression).
        feature_mean, feature_std: per-feature normalization of the model's input, from the training clips
            (empty: none); `input_names` long.
        paired: the input is `paired_features` (the clip's features against neutral speech of the same voice)
            rather than the clip's features alone.
    """

    labels: tuple[str, ...] = STYLES
    feature_names: tuple[str, ...] = FEATURE_NAMES
    feature_version: int = FEATURE_VERSION
    hidden_size: int = 32
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()
    paired: bool = False

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the model's inputs: `plain_feature_names` or, paired, `paired_feature_names`."""
        return paired_feature_names(self.feature_names) if self.paired else plain_feature_names(self.feature_names)

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be at least two distinct names, got {self.labels}")
        if self.hidden_size < 0:
            raise ValueError(f"hidden_size must be >= 0, got {self.hidden_size}")
        for name in ("feature_mean", "feature_std"):
            values = getattr(self, name)
            if values and len(values) != len(self.input_names):
                raise ValueError(f"{name} has {len(values)} values for {len(self.input_names)} inputs")
        if any(value <= 0 for value in self.feature_std):
            raise ValueError("feature_std values must be positive")


LEVEL_FEATURE = "level_dbfs"
"""A feature a paired classifier reads only as a difference: an engine's output level is its own."""


def plain_feature_names(names: Sequence[str] = FEATURE_NAMES) -> tuple[str, ...]:
    """Inputs of a plain classifier: the features that do not say who is speaking (all but `SPEAKER_FEATURES`)."""
    return tuple(name for name in names if name not in SPEAKER_FEATURES)


def paired_feature_names(names: Sequence[str] = FEATURE_NAMES) -> tuple[str, ...]:
    """Inputs of a paired classifier: the plain inputs but the absolute level, then every feature's difference
    from the voice's neutral speech (``delta_<name>``), the speaker's own ones included."""
    return (tuple(name for name in plain_feature_names(names) if name != LEVEL_FEATURE)
            + tuple(f"delta_{name}" for name in names))


def _columns(names: Sequence[str]) -> list[int]:
    return [FEATURE_NAMES.index(name) for name in names]


def plain_features(features: np.ndarray) -> np.ndarray:
    """``(..., len(plain_feature_names()))`` input of a plain classifier from ``(..., D)`` features."""
    features = np.asarray(features, dtype=np.float64)
    if features.shape[-1] != len(FEATURE_NAMES):
        raise ValueError(f"style features have {len(FEATURE_NAMES)} values, got {features.shape}")
    return features[..., _columns(plain_feature_names())]


def paired_features(features: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """``(..., len(paired_feature_names()))`` input of a paired classifier from a clip's ``(..., D)`` features
    and the ``(..., D)`` features of the same voice's neutral speech (one clip's, or the mean of several)."""
    features = np.asarray(features, dtype=np.float64)
    neutral = np.asarray(neutral, dtype=np.float64)
    if features.shape != neutral.shape or features.shape[-1] != len(FEATURE_NAMES):
        raise ValueError(f"paired features need two arrays of {len(FEATURE_NAMES)} features, got "
                         f"{features.shape} and {neutral.shape}")
    absolute = [name for name in plain_feature_names() if name != LEVEL_FEATURE]
    return np.concatenate([features[..., _columns(absolute)], features - neutral], axis=-1)


@dataclass(frozen=True)
class StylePrediction:
    """What the classifier heard: the most likely label, its probability, and every label's."""

    label: str
    confidence: float
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 4),
                "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()}}


class StyleClassifier(PretrainedMixin, nn.Module):
    """Normalized features ``(B, D)`` -> ``(B, C)`` logits: a 1-hidden-layer MLP (or logistic regression)."""

    config_class = StyleClassifierConfig

    def __init__(self, config: StyleClassifierConfig) -> None:
        super().__init__()
        if tuple(config.feature_names) != FEATURE_NAMES or config.feature_version != FEATURE_VERSION:
            raise CheckpointError(
                f"this style classifier reads features version {config.feature_version} "
                f"({len(config.feature_names)} features); this code computes version {FEATURE_VERSION} "
                f"({len(FEATURE_NAMES)}): retrain it (python -m tts.evaluation.style_classifier train)")
        self.config = config
        count = len(config.input_names)
        mean = torch.tensor(config.feature_mean or [0.0] * count, dtype=torch.float64)
        std = torch.tensor(config.feature_std or [1.0] * count, dtype=torch.float64)
        # Not saved: the normalization lives in the config (exact decimals, not fp16).
        self.register_buffer("feature_mean", mean.float(), persistent=False)
        self.register_buffer("feature_std", std.float(), persistent=False)
        width = config.hidden_size or count
        self.hidden = nn.Linear(count, config.hidden_size) if config.hidden_size else None
        self.output = nn.Linear(width, len(config.labels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, I)`` raw inputs (`StyleClassifierConfig.input_names`) -> ``(B, C)`` logits."""
        x = (features.to(self.output.weight.dtype) - self.feature_mean.to(self.output.weight.dtype)) \
            / self.feature_std.to(self.output.weight.dtype)
        if self.hidden is not None:
            x = torch.tanh(self.hidden(x))
        return self.output(x)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(B, I)`` inputs -> ``(B, C)`` label probabilities."""
        with torch.inference_mode():
            logits = self(torch.as_tensor(np.asarray(features, dtype=np.float32)))
            return torch.softmax(logits.float(), dim=-1).numpy()

    def predict_features(self, features: np.ndarray, neutral: np.ndarray | None = None) -> StylePrediction:
        """The prediction for one clip's ``(D,)`` features; a paired classifier also needs the ``(D,)`` features
        of the same voice's neutral speech (`neutral`: one clip's, or a mean over clips of other texts)."""
        if self.config.paired and neutral is None:
            raise ValueError("a paired style classifier needs the features of the voice's neutral speech (neutral=)")
        inputs = paired_features(features, neutral) if self.config.paired else plain_features(features)
        probs = self.probabilities(inputs[None])[0]
        best = int(np.argmax(probs))
        return StylePrediction(self.config.labels[best], float(probs[best]),
                               {label: float(p) for label, p in zip(self.config.labels, probs)})

    def classify(self, audio: Audio, neutral: Sequence[Audio] = ()) -> StylePrediction:
        """The style `audio` is spoken in; a paired classifier also hears `neutral`, the same voice's neutral
        speech of other texts. Raises `AudioError` for a clip too short or silent to read."""
        if self.config.paired and not neutral:
            raise ValueError("a paired style classifier needs the voice's neutral speech of other texts (neutral=)")
        baseline = np.mean([style_features(clip) for clip in neutral], axis=0) if self.config.paired else None
        return self.predict_features(style_features(audio), baseline)


_CLASSIFIERS: dict[str, StyleClassifier] = {}
_CLASSIFIERS_LOCK = threading.Lock()


def load_style_classifier(name_or_path: str = SHIPPED_NAME) -> StyleClassifier:
    """The style classifier (default: the shipped one), loaded once per process and shared (read-only)."""
    with _CLASSIFIERS_LOCK:
        if name_or_path not in _CLASSIFIERS:
            _CLASSIFIERS[name_or_path] = StyleClassifier.from_pretrained(name_or_path).float().eval()
        return _CLASSIFIERS[name_or_path]


# ---------------------------------------------------------------------------------------------------------
# Training recipe


@dataclass(frozen=True)
class StyleClip:
    """One planned clip of the recipe: a held-out voice reading a text in a style."""

    voice: str
    text: str
    style: str
    intensity: float


def classifier_texts(seed: int = TEXT_SEED) -> tuple[list[str], list[str]]:
    """(train texts, test texts): disjoint sentences of the generator's held-out split, enough for every voice."""
    from tts.data.sentences import sentence_stream

    need_train = len(TRAIN_VOICES) * TRAIN_TEXTS_PER_VOICE
    need_test = len(TEST_VOICES) * TEST_TEXTS_PER_VOICE
    texts: list[str] = []
    stream = sentence_stream(seed, "heldout", kinds=["statement", "question", "exclamation"])
    while len(texts) < need_train + need_test:
        text = next(stream).text
        if TEXT_CHARS[0] <= len(text) <= TEXT_CHARS[1]:
            texts.append(text)
    return texts[:need_train], texts[need_train:]


def plan_clips(seed: int = TEXT_SEED) -> tuple[list[StyleClip], list[StyleClip]]:
    """(train clips, test clips): every voice of a split reads its own texts in every style."""
    train_texts, test_texts = classifier_texts(seed)

    def plan(voices: Sequence[str], texts: list[str], per_voice: int, intensities: Sequence[float]) -> list[StyleClip]:
        clips = []
        for v, voice in enumerate(voices):
            for k in range(per_voice):
                text = texts[v * per_voice + k]
                for style in STYLES:
                    intensity = 0.0 if style == "neutral" else intensities[k % len(intensities)]
                    clips.append(StyleClip(voice, text, style, intensity))
        return clips

    return (plan(TRAIN_VOICES, train_texts, TRAIN_TEXTS_PER_VOICE, TRAIN_INTENSITIES),
            plan(TEST_VOICES, test_texts, TEST_TEXTS_PER_VOICE, (TEST_INTENSITY,)))


def clip_features(clips: Sequence[StyleClip], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``(B, D)`` features of the clips, rendering (and caching) each on first use."""
    from tts.evaluation.stages import heldout_clip

    rows = []
    for done, clip in enumerate(clips, start=1):
        audio = heldout_clip(clip.voice, clip.text, style=clip.style, intensity=clip.intensity).audio
        rows.append(style_features(audio))
        if progress is not None:
            progress(done, len(clips))
    return np.stack(rows)


def neutral_baselines(clips: Sequence[StyleClip], features: np.ndarray) -> np.ndarray:
    """``(B, D)``: for each clip, the mean features of its voice's neutral clips of the *other* texts (the second
    input of a paired classifier, as the harness gives it an engine's neutral outputs of other texts)."""
    rows = []
    for clip in clips:
        others = [i for i, other in enumerate(clips)
                  if other.voice == clip.voice and other.style == "neutral" and other.text != clip.text]
        if not others:
            raise ValueError(f"voice {clip.voice!r} has no neutral clip of another text to pair {clip.text!r} with")
        rows.append(features[others].mean(axis=0))
    return np.stack(rows)


def fit_classifier(features: np.ndarray, labels: np.ndarray, config: StyleClassifierConfig, seed: int = 0,
                   steps: int = 1500, learning_rate: float = 0.01, weight_decay: float = 1e-3) -> StyleClassifier:
    """A classifier trained full-batch (Adam, cross-entropy) on ``(B, I)`` inputs and ``(B,)`` label indices;
    the input normalization is taken from `features`. Deterministic in `seed`."""
    mean = features.mean(axis=0)
    std = np.maximum(features.std(axis=0), 1e-3)
    config = StyleClassifierConfig(**{**config.__dict__, "feature_mean": tuple(float(v) for v in mean),
                                      "feature_std": tuple(float(v) for v in std)})
    torch.manual_seed(seed)
    model = StyleClassifier(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.long)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return model.eval()


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], count: int) -> np.ndarray:
    """``(C, C)`` counts: row the true label, column the predicted one."""
    matrix = np.zeros((count, count), dtype=np.int64)
    for t, p in zip(truth, predicted):
        matrix[t, p] += 1
    return matrix


def accuracy_report(matrix: np.ndarray, labels: Sequence[str]) -> dict:
    """Overall and per-label accuracy (recall) of a confusion matrix, and the matrix itself as nested dicts."""
    per_label = {label: float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None
                 for i, label in enumerate(labels)}
    return {"accuracy": float(np.trace(matrix) / max(1, matrix.sum())), "clips": int(matrix.sum()),
            "per_label": per_label,
            "confusion": {label: {other: int(matrix[i, j]) for j, other in enumerate(labels)}
                          for i, label in enumerate(labels)}}


def confusion_markdown(matrix: np.ndarray, labels: Sequence[str]) -> str:
    """The confusion matrix as a markdown table (rows: true style, columns: predicted)."""
    lines = ["| true \\ predicted | " + " | ".join(labels) + " | accuracy |",
             "|---" * (len(labels) + 2) + "|"]
    for i, label in enumerate(labels):
        total = matrix[i].sum()
        accuracy = f"{matrix[i, i] / total:.2f}" if total else "-"
        lines.append(f"| {label} | " + " | ".join(str(int(v)) for v in matrix[i]) + f" | {accuracy} |")
    return "\n".join(lines)


def train(out: str | Path, seed: int = 0, hidden_size: int = 32, paired: bool = False,
          progress: Callable[[int, int], None] | None = None) -> dict:
    """The recipe: render (cached) the planned clips, train on `TRAIN_VOICES`, measure on `TEST_VOICES`, and save
    the classifier (fp16 weights, config, model card with per-label accuracy and confusion matrix) into `out`.
    With `paired`, each clip is heard against its voice's neutral clips of the other texts (`neutral_baselines`).
    Returns the test report (`accuracy_report`)."""
    started = time.time()
    train_clips, test_clips = plan_clips()
    labels = STYLES
    index = {label: i for i, label in enumerate(labels)}
    x_train = clip_features(train_clips, progress)
    x_test = clip_features(test_clips, progress)
    y_train = np.array([index[c.style] for c in train_clips])
    y_test = np.array([index[c.style] for c in test_clips])
    if paired:
        x_train = paired_features(x_train, neutral_baselines(train_clips, x_train))
        x_test = paired_features(x_test, neutral_baselines(test_clips, x_test))
    else:
        x_train, x_test = plain_features(x_train), plain_features(x_test)
    config = StyleClassifierConfig(labels=labels, hidden_size=hidden_size, paired=paired)
    model = fit_classifier(x_train, y_train, config, seed)
    # Measured as shipped: fp16 weights.
    shipped = StyleClassifier(model.config)
    shipped.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    test_pred = shipped.probabilities(x_test).argmax(axis=1)
    train_pred = shipped.probabilities(x_train).argmax(axis=1)
    matrix = confusion_matrix(y_test, test_pred, len(labels))
    report = accuracy_report(matrix, labels)
    three = [index[s] for s in ("neutral", "whisper", "angry")]
    keep = np.isin(y_test, three)
    report["neutral_whisper_angry_accuracy"] = float(np.mean(test_pred[keep] == y_test[keep]))
    report["train_accuracy"] = float(np.mean(train_pred == y_train))
    command = (f"python -m tts.evaluation.style_classifier train{' --paired' if paired else ''} --out {out} "
               f"--seed {seed} --hidden-size {hidden_size}")
    if paired:
        what = ("Paired style classifier over the 7 rendered styles of tts.data.styles: it hears a clip together with "
                "neutral speech of the same voice reading other texts (the clip's utterance-level prosody and "
                "spectral features, absolute level left out, and their differences from the neutral clips' mean; "
                f"tts.evaluation.style_features, version {FEATURE_VERSION}). Used by `timbre eval --metrics style` "
                "(style_paired_correct), with an engine's neutral outputs of other texts as the neutral speech.")
    else:
        what = ("Style classifier over the 7 rendered styles of tts.data.styles, from utterance-level prosody and "
                f"spectral features (tts.evaluation.style_features, version {FEATURE_VERSION}). Used by "
                "`timbre eval --metrics style` and by synthesize(style_ref=...).")
    shape = f"a 1-hidden-layer MLP ({hidden_size} tanh units)" if hidden_size else "logistic regression"
    card = {
        "What it is": f"{what} Model: {shape}.",
        "Recipe": {"command": command, "seed": seed, "train voices": ", ".join(TRAIN_VOICES),
                   "test voices": ", ".join(TEST_VOICES),
                   "train clips": len(train_clips), "test clips": len(test_clips),
                   "texts": f"held-out split of tts.data.sentences (seed {TEXT_SEED}), {TRAIN_TEXTS_PER_VOICE} per train "
                            f"voice, {TEST_TEXTS_PER_VOICE} per test voice, disjoint",
                   "intensities": f"train {TRAIN_INTENSITIES} (neutral 0), test {TEST_INTENSITY}",
                   "seconds": round(time.time() - started, 1)},
        "Held-out accuracy (test voices and texts, fp16 weights)": {
            "accuracy": f"{report['accuracy']:.3f} ({report['clips']} clips)",
            "neutral vs whisper vs angry": f"{report['neutral_whisper_angry_accuracy']:.3f}",
            "train accuracy": f"{report['train_accuracy']:.3f}",
            **{f"recall {label}": f"{value:.3f}" for label, value in report["per_label"].items()}},
        "Confusion matrix (test voices; rows true, columns predicted)": confusion_markdown(matrix, labels),
        "Limits": ("Paired: neutral speech of the same voice must be given (other texts; their mean is used). "
                   if paired else "") + "Trained on rendered styles (PSOLA, tilt, whisper, level of tts.data.styles) of synthesizer voices: "
                  "it recognizes those renderings, not human emotion." + (
                      " Level is read only against the neutral speech." if paired else
                      " Absolute level is a feature, so a clip far from the renderings' -26 dBFS neutral level "
                      "biases it towards sad/whisper (quiet) or angry (loud)."),
        "metrics": report,
    }
    shipped.save_pretrained(out, model_card=card, dtype=torch.float16)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tts.evaluation.style_classifier {train,classify}``."""
    parser = argparse.ArgumentParser(prog="python -m tts.evaluation.style_classifier", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("train", help="render held-out styled clips (cached), train, measure, save")
    fit.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--hidden-size", type=int, default=32, help="hidden units (0: logistic regression)")
    fit.add_argument("--paired", action="store_true",
                     help="train the paired classifier (each clip heard against its voice's neutral clips of other texts)")
    read = commands.add_parser("classify", help="print the style of audio files")
    read.add_argument("files", nargs="+")
    read.add_argument("--classifier", default=SHIPPED_NAME, help="checkpoint folder or shipped name")
    read.add_argument("--neutral", nargs="+", default=[], metavar="FILE",
                      help="for a paired classifier: neutral speech of the same voice reading other texts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "train":
        def progress(done: int, total: int) -> None:
            if done % 50 == 0 or done == total:
                print(f"  {done}/{total} clips", file=sys.stderr)

        report = train(args.out, seed=args.seed, hidden_size=args.hidden_size, paired=args.paired, progress=progress)
        print(json.dumps(report, indent=1))
        return 0
    from tts.audio import load_audio

    classifier = load_style_classifier(args.classifier)
    if classifier.config.paired and not args.neutral:
        parser.error(f"{args.classifier} is a paired classifier: give --neutral FILE ... (the same voice, other texts)")
    neutral = [load_audio(name) for name in args.neutral]
    for name in args.files:
        prediction = classifier.classify(load_audio(name), neutral=neutral)
        print(f"{name}: {prediction.label} ({prediction.confidence:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation and benchmarks: `timbre eval`, `timbre eval-stage` and `timbre bench`.

Every metric here is a CPU proxy of the field's protocol (Seed-TTS-eval: Whisper-large-v3 WER, WavLM-large
ECAPA SIM, UTMOS). Reports name each number by the model that produced it (``wer_whisper_tiny_en``,
``sim_resemblyzer``, ``dnsmos_ovrl``), never by the standard name, so a proxy result cannot be mistaken
for a figure from a paper. Optional code paths run the standard models for users who can download them.

Modules, by concern:
    wer         word error rate with Whisper's English normalizer, and its aggregation
    asr         Whisper transcription (tiny.en by default, offline)
    similarity  speaker embeddings and cosine similarity (Resemblyzer by default)
    quality     DNSMOS, PESQ-wb, STOI
    prosody     F0, energy, speaking rate, F0-contour correlation, mel-cepstral distortion
    testsets    Seed-TTS-eval meta files and the built-in sets (``heldout-en``, ``smoke``)
    engines     engine names -> synthesis functions for the harness
    harness     `evaluate`: synthesize a set, score it, write report.json / report.md / plots
    pairs       the SIM ceiling (same voice) and floor (different voices)
    bench       `timbre bench`: speed and memory, with ratios to Kokoro and Piper
    stages      `timbre eval-stage`: vocoder copy synthesis, reconstruction, conversion and the tone-color
                converter, with pass/fail against the issues' criteria
    watermark   the watermark's robustness and audibility tables (`python -m tts.evaluation.watermark`)

Nothing here loads a model at import; each model loads on first use, once per process.
"""

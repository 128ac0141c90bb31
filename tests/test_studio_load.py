"""The studio under load: several clients at once over HTTP on loopback (`gradio_client`), each speaking with its
own voice clip and seed and listing the voice library. Nobody gets an error, everybody gets their own result
(the same samples as a direct `synthesize` call with their inputs), and the server's memory stays bounded.

The engines are the tiny random `ar` and tone-color engines of the synthesis tests: the queue, the sessions and
the handlers are what is tested, not the voices.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_studio import served_studio
from tests.test_synthesis import tiny_engine
from tests.test_tone_color import tiny_tone_engine

CLIENTS = 6
"""Concurrent clients (the studio runs one model job at a time, so they queue)."""

REQUESTS_PER_CLIENT = 2
MAX_RSS_GROWTH_MB = 400
TIME_LIMIT_S = 240
TEXT = "The studio is busy today."
CLIP_TEXT = "Please call Stella and ask her to bring these things."
VOICES = ("slt", "rms", "awb", "kal16")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    from tts.data.speakers import get_speaker

    flite = get_speaker("flite")
    if flite.unavailable_reason():
        pytest.skip(flite.unavailable_reason())
    root = tmp_path_factory.mktemp("load_clips")
    paths = []
    for voice in VOICES:
        path = root / f"{voice}.wav"
        flite.synthesize(CLIP_TEXT, voice).audio.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``(url, ar engine)`` of a studio on a free loopback port with the tiny engines."""
    pytest.importorskip("gradio_client")
    engine = tiny_engine()
    with served_studio(tmp_path_factory.mktemp("load_studio"), engine_factory=lambda: engine,
                       tone_engine_factory=tiny_tone_engine) as (url, _):
        yield url, engine


def test_concurrent_clients_each_get_their_own_speech(served, clips):
    from gradio_client import Client, handle_file

    from tts.audio import load_audio
    from tts.synthesis import synthesize
    from tts.tone_color import DEFAULT_BASE
    from tts.voice import clone_voice

    url, engine = served
    results: dict[tuple[int, int], str] = {}
    errors: list[str] = []
    start_rss = _rss_mb()
    started = time.monotonic()

    def client_session(index: int) -> None:
        try:
            client = Client(url, verbose=False)
            clip = clips[index % len(clips)]
            for request in range(REQUESTS_PER_CLIENT):
                seed = 100 * index + request
                path, _, info = client.predict(
                    TEXT, "uploaded or recorded clip", None, handle_file(str(clip)), CLIP_TEXT, "neutral", 1.0, 1.0,
                    seed, "wav", "ar", DEFAULT_BASE, 0.3, "", 0.0, 1.0, 0.0, None, api_name="/speak",
                )
                assert f"seed {seed}" in info, info
                results[index, request] = path
                client.predict(api_name="/library")  # the library listing a page load asks for
        except Exception as error:  # noqa: BLE001 - collected and reported by the main thread
            errors.append(f"client {index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=client_session, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIME_LIMIT_S)
    assert not any(thread.is_alive() for thread in threads), "clients still waiting after the time limit"
    assert not errors, errors
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    growth = _rss_mb() - start_rss
    assert growth < MAX_RSS_GROWTH_MB, f"the server grew by {growth:.0f} MB"

    # Each client's audio is its own: what a direct call with its clip and seed gives.
    voices = {path: clone_voice(load_audio(path), CLIP_TEXT) for path in clips}
    for (index, request), path in results.items():
        seed = 100 * index + request
        expected = synthesize(TEXT, voices[clips[index % len(clips)]], seed=seed, models=engine)
        samples, rate = sf.read(path, dtype="float32")
        assert rate == expected.sample_rate and len(samples) == len(expected)
        np.testing.assert_allclose(samples, np.clip(expected.samples, -1, 1), atol=1 / 2**14)
    assert len({Path(p).read_bytes() for p in results.values()}) == len(results)  # no two clients share a file
    print(f"{CLIENTS} clients x {REQUESTS_PER_CLIENT} requests in {time.monotonic() - started:.1f} s, "
          f"RSS growth {growth:.0f} MB, pid {os.getpid()}")

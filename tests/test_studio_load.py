"""The studio under load: several clients at once over HTTP on loopback (`gradio_client`), each importing its own
voice into the shared voice library, speaking with its clip and then with its library voice (each with its own
seed), and listing the library. Nobody gets an error, everybody gets their own result (the same samples as a
direct `synthesize` call with their inputs), the library ends with exactly one intact voice per client, and the
server's memory stays bounded (sampled throughout, not only at the end).

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
"""Speech requests per client: the first with its clip, the others with its library voice."""
MAX_RSS_GROWTH_MB = 400
"""Bound on the peak RSS growth of the process serving the studio (and running the clients)."""
TIME_LIMIT_S = 240
TEXT = "The studio is busy today."
CLIP_TEXT = "Please call Stella and ask her to bring these things."
VOICES = ("slt", "rms", "awb", "kal16")


def _voice_name(index: int) -> str:
    return f"client {index}"


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
    """``(url, ar engine, voice library)`` of a studio on a free loopback port with the tiny engines."""
    pytest.importorskip("gradio_client")
    engine = tiny_engine()
    with served_studio(tmp_path_factory.mktemp("load_studio"), engine_factory=lambda: engine,
                       tone_engine_factory=tiny_tone_engine) as (url, library):
        yield url, engine, library


def test_concurrent_clients_each_get_their_own_speech(served, clips, tmp_path):
    from gradio_client import Client, handle_file

    from app.studio import VOICE_FROM_CLIP, VOICE_FROM_LIBRARY
    from tts.audio import load_audio
    from tts.synthesis import synthesize
    from tts.tone_color import DEFAULT_BASE
    from tts.voice import clone_voice

    url, engine, library = served
    voices = {path: clone_voice(load_audio(path), CLIP_TEXT) for path in clips}
    voice_files = [voices[clips[i % len(clips)]].save(tmp_path / f"client{i}.voice") for i in range(CLIENTS)]
    results: dict[tuple[int, int], str] = {}
    errors: list[str] = []
    calls = [0] * CLIENTS  # HTTP calls each client made (library import, speech, library listing)
    start_rss = _rss_mb()
    peak_rss = [start_rss]
    running = threading.Event()
    running.set()

    def sample_memory() -> None:
        while running.is_set():
            peak_rss[0] = max(peak_rss[0], _rss_mb())
            time.sleep(0.05)

    def client_session(index: int) -> None:
        try:
            client = Client(url, verbose=False)
            clip = clips[index % len(clips)]
            message, *_ = client.predict(handle_file(str(voice_files[index])), _voice_name(index), True, None, None,
                                         api_name="/import_voice")
            calls[index] += 1
            assert f"imported voice **{_voice_name(index)}**" in message, message
            for request in range(REQUESTS_PER_CLIENT):
                seed = 100 * index + request
                source = (VOICE_FROM_CLIP, None, handle_file(str(clip))) if request == 0 else \
                    (VOICE_FROM_LIBRARY, _voice_name(index), None)
                _, path, info, _ = client.predict(  # (streamed player, download, info, plot)
                    TEXT, *source, CLIP_TEXT, "neutral", 1.0, 1.0,
                    seed, "wav", "ar", DEFAULT_BASE, 0.3, "", 0.0, 1.0, 0.0, None, 1, api_name="/speak",
                )
                assert f"seed {seed}" in info, info
                results[index, request] = path
                rows, *_ = client.predict(api_name="/library")  # the library listing a page load asks for
                calls[index] += 2
                assert _voice_name(index) in [row[0] for row in rows["data"]], rows
        except Exception as error:  # noqa: BLE001 - collected and reported by the main thread
            errors.append(f"client {index}: {type(error).__name__}: {error}")

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    started = time.monotonic()
    threads = [threading.Thread(target=client_session, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, TIME_LIMIT_S - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    running.clear()
    sampler.join()
    assert not any(thread.is_alive() for thread in threads), "clients still waiting after the time limit"
    assert not errors, errors
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    growth, peak_growth = _rss_mb() - start_rss, peak_rss[0] - start_rss
    assert peak_growth < MAX_RSS_GROWTH_MB, f"the server grew by up to {peak_growth:.0f} MB"

    # The shared library holds each client's voice once, intact.
    assert sorted(entry.name for entry in library.list()) == sorted(_voice_name(i) for i in range(CLIENTS))
    for index in range(CLIENTS):
        stored = library.get(_voice_name(index))
        np.testing.assert_array_equal(stored.audio.samples, voices[clips[index % len(clips)]].audio.samples)
    # Each client's audio is its own: what a direct call with its clip (or its library voice) and seed gives.
    for (index, request), path in results.items():
        seed = 100 * index + request
        voice = voices[clips[index % len(clips)]] if request == 0 else library.get(_voice_name(index))
        expected = synthesize(TEXT, voice, seed=seed, models=engine)
        samples, rate = sf.read(path, dtype="float32")
        assert rate == expected.sample_rate and len(samples) == len(expected)
        np.testing.assert_allclose(samples, np.clip(expected.samples, -1, 1), atol=1 / 2**14)
    assert len({Path(p).read_bytes() for p in results.values()}) == len(results)  # no two clients share a file
    print(f"{CLIENTS} clients, {sum(calls)} requests ({len(results)} speech) in {elapsed:.1f} s; RSS growth "
          f"{growth:.0f} MB at the end, {peak_growth:.0f} MB at the peak; pid {os.getpid()}")

"""The studio serves a page on loopback that says which engines are available and why."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def studio_url():
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    process = subprocess.Popen(
        [sys.executable, "-m", "tts.cli", "studio", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if process.poll() is not None:
                pytest.fail(f"studio exited: {process.stdout.read().decode(errors='replace')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("studio did not answer within 120 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_studio_serves_page_with_engine_status(studio_url):
    with urllib.request.urlopen(studio_url, timeout=10) as response:
        html = response.read().decode()
    assert "Timbre Studio" in html
    with urllib.request.urlopen(studio_url + "/config", timeout=10) as response:
        config = json.loads(response.read().decode())
    text = json.dumps(config)
    for engine in ("`ar`", "`dit`", "`base+convert`"):
        assert engine in text
    assert "not trained yet" in text or "ready" in text


def test_engine_status_explains_missing_checkpoints(shipped_root):
    from tts.engines import engine_status

    statuses = {s.name: s for s in engine_status()}
    assert set(statuses) == {"ar", "dit", "base+convert"}
    assert not statuses["ar"].available
    assert "vocoder" in statuses["ar"].reason and "not trained yet" in statuses["ar"].reason

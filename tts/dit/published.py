"""Loading F5-TTS's published checkpoint (``SWivid/F5-TTS``, weights CC-BY-NC-4.0) into the studio's `DiT`.

The published safetensors hold the EMA copy of F5's flow-matching wrapper: keys ``ema_model.transformer.*``
(the network), plus bookkeeping (``ema_model.initted``/``initted``, ``ema_model.step``/``step``) and, in some
exports, the wrapper's mel buffers (``mel_spec.*``). `convert_published_state_dict` maps that onto `DiT`'s
own keys, naming every dropped key, and refuses anything else; the strict load then asserts every shape.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

import torch

from tts.checkpoints import resolve_checkpoint
from tts.errors import CheckpointError

logger = logging.getLogger(__name__)

HUB_ID = "SWivid/F5-TTS"
DEFAULT_WEIGHTS = "F5TTS_v1_Base/model_1250000.safetensors"
DEFAULT_VOCAB = "F5TTS_v1_Base/vocab.txt"

EMA_PREFIX = "ema_model."
NETWORK_PREFIX = "transformer."
BOOKKEEPING_KEYS = frozenset({"initted", "step"})
"""EMA bookkeeping scalars: not weights."""
MEL_BUFFER_PREFIX = "mel_spec."
"""The wrapper's mel filterbank and window: recomputed by `tts.audio.log_mel`, never loaded."""


def convert_published_state_dict(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """F5-TTS keys -> `DiT` keys: strip ``ema_model.`` then ``transformer.``; drop the bookkeeping and mel buffers.

    Accepts the raw published file (``ema_model.transformer.*``), the form after F5's own loader
    (``transformer.*``) and a bare network state (keys already `DiT`'s, e.g. the golden test weights).

    Raises:
        CheckpointError: a key that is neither network weight nor a known non-weight (nothing is dropped
            silently), or a key present twice after stripping.
    """
    converted: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    for key, value in state.items():
        name = key[len(EMA_PREFIX):] if key.startswith(EMA_PREFIX) else key
        if name in BOOKKEEPING_KEYS or name.startswith(MEL_BUFFER_PREFIX):
            dropped.append(key)
            continue
        if name.startswith(NETWORK_PREFIX):
            name = name[len(NETWORK_PREFIX):]
        elif key.startswith(EMA_PREFIX):  # an EMA entry that is not the network
            unknown.append(key)
            continue
        # Anything else is taken as a bare network key; the strict load refuses it if it does not fit.
        if name in converted:
            raise CheckpointError(f"{source}: {key!r} maps onto {name!r}, which another key already gave")
        converted[name] = value
    if unknown:
        raise CheckpointError(
            f"{source}: keys that are neither F5-TTS network weights nor known bookkeeping: {sorted(unknown)[:8]}"
        )
    if dropped:
        logger.debug("%s: dropped non-weight keys %s", source, sorted(dropped))
    return converted


def resolve_published_file(
    path_or_hub_id: str | os.PathLike, filename: str, revision: str | None = None, local_files_only: bool = False
) -> Path:
    """A local path for one file of the published checkpoint.

    `path_or_hub_id` is the file itself, a local folder holding `filename` (e.g. a ``huggingface-cli download``
    of the repo), or a hub id resolved by `tts.checkpoints.resolve_checkpoint` (honours ``HF_HUB_OFFLINE``).
    """
    path = Path(os.fspath(path_or_hub_id)).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / filename
        if not candidate.is_file() and (path / Path(filename).name).is_file():
            candidate = path / Path(filename).name  # a folder holding just the model's own files
    else:
        folder = resolve_checkpoint(
            os.fspath(path_or_hub_id), revision=revision, local_files_only=local_files_only, allow_patterns=[filename]
        )
        candidate = folder / filename
    if not candidate.is_file():
        raise CheckpointError(
            f"{candidate}: missing. Download it with `huggingface-cli download {HUB_ID} {filename} --local-dir DIR` "
            "and pass DIR (or the file itself)."
        )
    return candidate

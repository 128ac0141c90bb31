"""The one checkpoint store: folders of ``config.json`` + ``model.safetensors`` + ``MODEL_CARD.md``.

- `resolve_checkpoint` turns a local folder, the name of a shipped default in ``checkpoints/`` or a Hugging Face
  repo id into a local folder (the only place that touches the hub; honours ``HF_HUB_OFFLINE``).
- `PretrainedMixin` gives every trainable `nn.Module` ``save_pretrained`` / ``from_pretrained`` with strict
  loading: every key and shape must match, nothing is silently dropped.
- ``checkpoints/MANIFEST.json`` records the sha256 of every shipped file; a shipped file that does not match is
  refused.
- Our own weights are safetensors only. `load_foreign_torch_checkpoint` is the one door for someone else's
  ``.pth`` and uses ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import torch

from tts.errors import CheckpointError
from tts.files import atomic_write_bytes, atomic_write_text
from tts.memo import LruCache

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "MODEL_CARD.md"
MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1
HUB_ALLOW_PATTERNS = [CONFIG_NAME, "*.safetensors", MODEL_CARD_NAME, "README.md", "*.json", "*.txt"]

MAX_CONFIG_BYTES = 1 << 20
"""Largest ``config.json`` read: ours are under 1 KiB."""

BUILD_BUDGET_FACTOR = 4
BUILD_BUDGET_SLACK = 1 << 16
"""A config may describe at most this many times the values its weights file holds, plus this many (buffers
that are not saved, weight-norm's second copy), and this many times as many modules as the file has tensors,
plus 1024 (ours have at most 1.5 times as many): beyond that it belongs to other weights, and building the
model it describes could take any amount of memory and time."""

ConfigT = TypeVar("ConfigT")


def checkpoints_dir() -> Path:
    """Folder of the shipped defaults (``TIMBRE_CHECKPOINTS`` overrides the repository's ``checkpoints/``)."""
    env = os.environ.get("TIMBRE_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "checkpoints"


# ---------------------------------------------------------------------------------------------------------
# Configs: frozen dataclasses <-> JSON, strictly


def config_to_dict(config: Any) -> dict:
    """A plain JSON-able dict of a (possibly nested) config dataclass."""
    if not is_dataclass(config):
        raise TypeError(f"{type(config).__name__} is not a dataclass")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if is_dataclass(annotation) and isinstance(value, Mapping):
        return config_from_dict(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise CheckpointError(f"{where}: expected a list, got {_preview(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        return tuple(_coerce(v, a, where) for v, a in zip(value, args)) if args else tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None) and value is None:
                return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _coerce(value, arg, where)
                except (TypeError, ValueError, CheckpointError):
                    continue
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and (
        not isinstance(value, annotation) or (annotation is not bool and isinstance(value, bool))
    ):
        raise CheckpointError(f"{where}: expected {annotation.__name__}, got {_preview(value)}")
    return value


def _preview(value: Any) -> str:
    """`repr` of a config value for a message, shortened."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def config_from_dict(config_class: type[ConfigT], data: Mapping[str, Any], where: str = "config") -> ConfigT:
    """Build `config_class` from `data`, refusing unknown keys (typos must not pass silently)."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(config_class)
    known = {f.name for f in fields(config_class) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CheckpointError(f"{where}: unknown keys {unknown} for {config_class.__name__}")
    kwargs = {key: _coerce(value, hints.get(key, Any), f"{where}.{key}") for key, value in data.items()}
    try:
        return config_class(**kwargs)
    except (TypeError, ValueError, ArithmeticError) as error:  # __post_init__ checks; "heads": 0 divides by zero
        raise CheckpointError(f"{where}: {error}") from error


def save_config(config: Any, folder: Path, class_name: str) -> Path:
    """Write ``config.json`` holding `config` and the model class it belongs to (informational check only)."""
    payload = {"model_class": class_name, "config": config_to_dict(config)}
    return atomic_write_text(folder / CONFIG_NAME, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_config(config_class: type[ConfigT], folder: Path, class_name: str | None = None) -> ConfigT:
    """Read ``config.json`` from `folder` as `config_class`; refuse a folder of another model class."""
    payload = _config_payload(folder)
    stored_class = payload.get("model_class")
    if class_name is not None and stored_class != class_name:
        raise CheckpointError(f"{folder} holds a {stored_class!r} checkpoint, not a {class_name!r}")
    return config_from_dict(config_class, payload["config"], where=str(folder / CONFIG_NAME))


def stored_model_class(folder: Path) -> str | None:
    """The model class a checkpoint folder's ``config.json`` names (checked as `load_config` checks it)."""
    return _config_payload(folder).get("model_class")


def _config_payload(folder: Path) -> dict:
    """``config.json`` of `folder` as an object with a ``config`` entry, refused when missing, oversized or not
    strict JSON."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}; is this a Timbre Studio checkpoint folder?")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(
            f"{path}: {path.stat().st_size:,} bytes is too large for a config (limit {MAX_CONFIG_BYTES:,})"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_json_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        # ValueError: broken JSON, NaN/Infinity, or an integer of more than 4300 digits; RecursionError: deep nesting.
        raise CheckpointError(f"{path}: not valid JSON ({type(error).__name__}: {str(error)[:200]})") from error
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"{path}: expected an object with 'model_class' and 'config'")
    return payload


def _refuse_json_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number (a config value must be finite)")


# ---------------------------------------------------------------------------------------------------------
# Files: atomic writes, hashes, the manifest of shipped checkpoints


_HASHES = LruCache(256)
"""Hashes of files by their identity (`sha256_file`): every call that loads an engine checks the shipped files
against the manifest, and reading 60 MB each time cost ~0.17 s a `synthesize()` call."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks; remembered while the file keeps its inode, size and change
    times (any write changes its ctime, which no user call can set back)."""
    path = Path(path).resolve()
    stat = path.stat()

    def digest_file() -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    return _HASHES.get_or_make((str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns),
                               digest_file)


def _shipped_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")
    )


def write_manifest(root: Path | None = None) -> Path:
    """Record the sha256 and size of every file under `root` (the shipped checkpoints) in ``MANIFEST.json``."""
    root = root or checkpoints_dir()
    entries = {
        path.relative_to(root).as_posix(): {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        for path in _shipped_files(root)
    }
    manifest = {"version": MANIFEST_VERSION, "files": entries}
    return atomic_write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(root: Path | None = None) -> dict[str, dict]:
    """The ``files`` table of the shipped manifest (empty when there is none)."""
    root = root or checkpoints_dir()
    path = root / MANIFEST_NAME
    if not path.is_file():
        return {}
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("version") != MANIFEST_VERSION:
        raise CheckpointError(f"{path}: manifest version {manifest.get('version')} is not {MANIFEST_VERSION}")
    return manifest["files"]


def verify_shipped(folder: Path, root: Path | None = None) -> None:
    """Refuse a shipped checkpoint folder whose files are missing from, or differ from, the manifest."""
    root = (root or checkpoints_dir()).resolve()
    folder = folder.resolve()
    entries = read_manifest(root)
    problems = []
    for path in _shipped_files(folder):
        rel = path.relative_to(root).as_posix()
        entry = entries.get(rel)
        if entry is None:
            problems.append(f"{rel} is not in {MANIFEST_NAME}")
        elif path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            problems.append(f"{rel} does not match its sha256 in {MANIFEST_NAME}")
    prefix = folder.relative_to(root).as_posix() + "/"
    for rel in entries:
        if rel.startswith(prefix) and not (root / rel).is_file():
            problems.append(f"{rel} is listed in {MANIFEST_NAME} but missing")
    if problems:
        raise CheckpointError(
            f"refusing the shipped checkpoint {folder.name!r}: " + "; ".join(problems)
            + ". Restore it with `git checkout -- checkpoints/` (or, after training a replacement on purpose, "
            "run `timbre checkpoints --update-manifest`)."
        )


# ---------------------------------------------------------------------------------------------------------
# Resolution: local folder, shipped name, or hub id

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _hub_offline(local_files_only: bool) -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return local_files_only or flag in {"1", "true", "yes", "on"}


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    local_files_only: bool = False,
    allow_patterns: list[str] | None = None,
) -> Path:
    """A local folder for `name_or_path`.

    `allow_patterns` limits what a hub download fetches (default: configs, safetensors and model cards); a
    published repository holding several large models should name the files it needs.

    Order: an existing local folder (one without a config beside a shipped default of the same bare name, e.g.
    the ``vocoder`` package folder when running from the source tree, yields to the shipped default); a shipped default (``checkpoints/NAME``, verified against the manifest);
    a Hugging Face repo id ``owner/name``, downloaded with `huggingface_hub` (or taken from its cache when
    offline: ``HF_HUB_OFFLINE=1`` or ``local_files_only=True``).
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    shipped = checkpoints_dir() / text
    bare_name = bool(text) and not text.startswith((".", "/", "~")) and len(Path(text).parts) == 1
    if path.is_dir() and not (bare_name and not (path / CONFIG_NAME).is_file() and shipped.is_dir()):
        return path
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{text} is a file; a checkpoint is a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    if text and not text.startswith((".", "/")) and ".." not in Path(text).parts and shipped.is_dir():
        verify_shipped(shipped)
        return shipped
    if not _HUB_ID.match(text):
        available = ", ".join(list_shipped()) or "none"
        raise CheckpointError(
            f"no checkpoint named {text!r}: not a local folder, not a shipped default (shipped: {available}), "
            "and not a Hugging Face repo id of the form owner/name"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = _hub_offline(local_files_only)
    try:
        folder = snapshot_download(
            repo_id=text,
            revision=revision,
            allow_patterns=allow_patterns or HUB_ALLOW_PATTERNS,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"{text!r} is not in the local Hugging Face cache and the hub is offline "
            f"({'local_files_only=True' if local_files_only else 'HF_HUB_OFFLINE is set'}). On a machine with "
            f"internet run `huggingface-cli download {text} --local-dir DIR`, copy DIR here and pass its path."
        ) from error
    except Exception as error:  # noqa: BLE001 - network, auth, missing repo: all need the same advice
        raise CheckpointError(
            f"could not download {text!r} from the Hugging Face hub ({type(error).__name__}: {error}). "
            "Check the id and your connection, or download it elsewhere and pass the local folder."
        ) from error
    return Path(folder)


def list_shipped() -> list[str]:
    """Names of the shipped default checkpoints (folders under ``checkpoints/`` holding a config)."""
    root = checkpoints_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob(CONFIG_NAME))


# ---------------------------------------------------------------------------------------------------------
# Weights


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, with a clear error for anything that is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: missing weights file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a valid safetensors file ({error})") from error


def load_foreign_torch_checkpoint(path: Path) -> dict[str, Any]:
    """Someone else's ``.pth``/``.pt`` (e.g. the published OpenVoice converter): tensors only, never code."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means we refuse the file
        raise CheckpointError(f"{path}: refused to load ({error}). Only plain tensor checkpoints are accepted.") from error


def check_state_dict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a `CheckpointError` unless `state` has exactly the module's keys with the same shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{key}: {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:8]}")
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(parts))


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise `CheckpointError` when a floating-point tensor of `state` holds NaN or infinity (a damaged file:
    safetensors carries no checksum, and a flipped exponent bit loads without complaint)."""
    bad = [key for key, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"{source}: {', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''} hold NaN or infinite "
                              "values; the file is damaged. Download or copy it again.")


@contextlib.contextmanager
def _build_budget(max_values: int, max_modules: int, source: str):
    """Raise `CheckpointError` from inside a model's constructor once its parameters and buffers (on this
    thread) pass `max_values` values or its submodules pass `max_modules`, so that a config asking for a
    billion layers (of any width, zero included) fails at the first few."""
    from torch.nn.modules.module import (
        register_module_buffer_registration_hook,
        register_module_module_registration_hook,
        register_module_parameter_registration_hook,
    )

    owner, values, modules = threading.get_ident(), 0, 0

    def refuse(what: str) -> CheckpointError:
        return CheckpointError(
            f"{source}: the config describes a model of more than {what}, far more than the weights file "
            "holds; the config does not belong to these weights"
        )

    def count_values(module: torch.nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        nonlocal values
        if tensor is not None and threading.get_ident() == owner:
            values += tensor.numel()
            if values > max_values:
                raise refuse(f"{max_values:,} values")

    def count_modules(module: torch.nn.Module, name: str, submodule: torch.nn.Module | None) -> None:
        nonlocal modules
        if submodule is not None and threading.get_ident() == owner:
            modules += 1
            if modules > max_modules:
                raise refuse(f"{max_modules:,} modules")

    handles = [
        register_module_parameter_registration_hook(count_values),
        register_module_buffer_registration_hook(count_values),
        register_module_module_registration_hook(count_modules),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def build_for_state(model_class: type, config: Any, state: Mapping[str, torch.Tensor], source: str) -> torch.nn.Module:
    """``model_class(config)``, built for real only once a build on the meta device (shapes, no memory) fits `state`.

    A config that does not fit its weights (``"dim": 60000`` beside a 1 MB file, ``"heads": 0``) is refused with
    a `CheckpointError` before it can allocate anything or run for long.
    """
    max_values = BUILD_BUDGET_FACTOR * sum(tensor.numel() for tensor in state.values()) + BUILD_BUDGET_SLACK
    max_modules = BUILD_BUDGET_FACTOR * len(state) + 1024
    try:
        with _build_budget(max_values, max_modules, source), torch.device("meta"):
            skeleton = model_class(config)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever a constructor raises, the config it was given is bad
        reason = (str(error).splitlines() or [""])[0][:200]  # torch's messages can carry a C++ stack trace
        raise CheckpointError(
            f"{source}: its config does not build a {model_class.__name__} ({type(error).__name__}: {reason})"
        ) from error
    check_state_dict(skeleton, state, source)
    return model_class(config)


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `module` after `check_state_dict`, casting to each parameter's dtype."""
    check_state_dict(module, state, source)
    reference = module.state_dict()
    module.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()}, strict=True)


# ---------------------------------------------------------------------------------------------------------
# Model cards


def write_model_card(folder: Path, title: str, sections: Mapping[str, Any]) -> Path:
    """Write ``MODEL_CARD.md``: a title, then one section per entry (strings as text, dicts as tables).

    A machine-readable copy of every section goes into a trailing JSON block, so tools can read the metrics.
    """
    lines = [f"# {title}", ""]
    for heading, body in sections.items():
        lines += [f"## {heading}", ""]
        if isinstance(body, Mapping):
            lines += ["| key | value |", "| --- | --- |"]
            lines += [f"| {key} | {value} |" for key, value in body.items()]
        else:
            lines.append(str(body))
        lines.append("")
    lines += ["## Machine-readable", "", "```json", json.dumps(sections, indent=2, default=str), "```", ""]
    return atomic_write_text(folder / MODEL_CARD_NAME, "\n".join(lines))


def read_model_card_data(folder: Path) -> dict:
    """The JSON block of a model card written by `write_model_card` ({} when absent)."""
    path = folder / MODEL_CARD_NAME
    if not path.is_file():
        return {}
    match = re.search(r"## Machine-readable\s+```json\n(.*?)\n```", path.read_text(encoding="utf-8"), re.S)
    return json.loads(match.group(1)) if match else {}


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for an `nn.Module` built from one config dataclass.

    Subclasses set ``config_class`` and take the config as the first constructor argument; constructors never
    read files (the classmethod does).
    """

    config_class: ClassVar[type]
    config: Any

    def save_pretrained(
        self,
        folder: str | os.PathLike,
        model_card: Mapping[str, Any] | None = None,
        dtype: torch.dtype | None = None,
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` (cast to `dtype`, e.g. float16 to ship) and a model card."""
        from safetensors.torch import save

        assert isinstance(self, torch.nn.Module)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            key: (value.to(dtype) if dtype is not None and value.is_floating_point() else value).detach().cpu().contiguous()
            for key, value in self.state_dict().items()
        }
        atomic_write_bytes(folder / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
        save_config(self.config, folder, type(self).__name__)
        if model_card is not None:
            write_model_card(folder, f"{type(self).__name__} checkpoint", model_card)
        return folder

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        revision: str | None = None,
        local_files_only: bool = False,
        device: torch.device | str | None = None,
    ):
        """Load strictly from a local folder, a shipped default name, or a hub id (see `resolve_checkpoint`)."""
        folder = resolve_checkpoint(name_or_path, revision=revision, local_files_only=local_files_only)
        config = load_config(cls.config_class, folder, cls.__name__)
        state = load_safetensors(folder / WEIGHTS_NAME)
        check_finite(state, str(folder / WEIGHTS_NAME))
        model = build_for_state(cls, config, state, str(folder / WEIGHTS_NAME))
        load_state_strict(model, state, str(folder / WEIGHTS_NAME))
        model.eval()
        return model.to(device) if device is not None else model


# ---------------------------------------------------------------------------------------------------------
# CLI: `timbre checkpoints`


def register(subparsers) -> None:
    """Add ``timbre checkpoints`` (list, verify, update the manifest)."""
    parser = subparsers.add_parser("checkpoints", help="list and verify the shipped checkpoints")
    parser.add_argument("--update-manifest", action="store_true", help="rewrite checkpoints/MANIFEST.json after training")
    parser.set_defaults(func=_run_checkpoints)


def _run_checkpoints(args) -> int:
    root = checkpoints_dir()
    if args.update_manifest:
        print(f"wrote {write_manifest(root)}")
    status = 0
    for name in list_shipped():
        try:
            verify_shipped(root / name)
            size = sum(p.stat().st_size for p in (root / name).rglob("*") if p.is_file())
            print(f"ok        {name}  ({size / 2**20:.1f} MiB)")
        except CheckpointError as error:
            print(f"REFUSED   {name}: {error}")
            status = 1
    if not list_shipped():
        print(f"no shipped checkpoints under {root}")
    return status

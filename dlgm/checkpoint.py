"""Checkpoints: weights in safetensors, config and metadata as JSON in its header.

A checkpoint is one ``.safetensors`` file whose header metadata holds ``{"format": "dlgm",
"version": "1", "config": <DLGMConfig JSON>, "metadata": <JSON>}``; ``dlgm.save(model, DIR)``
writes ``DIR/model.safetensors`` and a readable copy of the JSON as ``DIR/card.json``. Loading never
unpickles: pickles and PyTorch ``.pt`` files are refused, and every problem (truncated file,
bad JSON, unknown version, shapes that do not match the config, non-finite weights) raises
``CheckpointError`` with a message that says what is wrong. Files are written atomically.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from ._io import atomic_write_bytes
from .errors import CheckpointError
from .model import DLGM, DLGMConfig, parameter_shapes

FORMAT = "dlgm"
VERSION = 1
MODEL_FILE = "model.safetensors"
CARD_FILE = "card.json"
MAX_BYTES = 512 * 1024 * 1024
_MAX_HEADER = 16 * 1024 * 1024


def _sniff(data: bytes) -> None:
    """Refuse pickles and zip archives (``torch.save``) before anything parses them."""
    if len(data) >= 9:
        (n,) = struct.unpack("<Q", data[:8])
        if n <= _MAX_HEADER and 8 + n <= len(data) and data[8:9] == b"{":
            return  # a well-formed safetensors header (its length may start with any byte)
    if data[:1] == b"\x80" or data[:2] in (b"(d", b"(l", b"}q", b"]q"):
        raise CheckpointError(
            "this is a Python pickle, not a DLGM Lab checkpoint; pickles are "
            "never loaded (they can run code). Save models with "
            "dlgm.save(model, path)."
        )
    if data[:4] == b"PK\x03\x04":
        raise CheckpointError(
            "this is a zip archive (a PyTorch .pt/.pth file?), not a DLGM Lab "
            "checkpoint; .pt files are pickles and are never loaded. "
            "Save models with dlgm.save(model, path) to get a .safetensors file."
        )
    if len(data) < 8:
        raise CheckpointError(f"file is {len(data)} bytes: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise CheckpointError(
            f"header length {n} does not fit a {len(data)}-byte file: the file "
            "is truncated or not a safetensors checkpoint"
        )


def encode_tensors(tensors: dict, meta: dict) -> bytes:
    """Serialise tensors and a JSON-able ``meta`` dict (stored under header metadata)."""
    from safetensors.torch import save

    header = {"format": FORMAT, "version": str(VERSION)}
    header.update({k: json.dumps(v, allow_nan=False) for k, v in meta.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return save(tensors, metadata=header)


def decode_tensors(data: bytes) -> tuple[dict, dict]:
    """Parse bytes written by ``encode_tensors``; returns (tensors, meta). Never unpickles."""
    from safetensors.torch import load

    _sniff(data)
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types on malformed files
        raise CheckpointError(f"not a valid safetensors file: {e}") from None
    raw = header.get("__metadata__") or {}
    if raw.get("format") != FORMAT:
        raise CheckpointError(
            "safetensors file without DLGM Lab metadata (format != 'dlgm'): "
            "it was not written by dlgm.save()"
        )
    try:
        version = int(raw.get("version", "?"))
    except ValueError:
        raise CheckpointError(f"unreadable checkpoint version {raw.get('version')!r}") from None
    if version > VERSION:
        raise CheckpointError(
            f"checkpoint version {version} is newer than this dlgm "
            f"(reads up to {VERSION}); upgrade dlgm"
        )
    try:
        meta = {k: json.loads(v) for k, v in raw.items() if k not in ("format", "version")}
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint metadata is not valid JSON: {e}") from None
    return tensors, meta


def read_bytes(path, max_bytes: int = MAX_BYTES) -> bytes:
    """Read a checkpoint file (or ``DIR/model.safetensors``) with a size limit."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"{path} is {size} bytes, over the limit of {max_bytes}")
    return path.read_bytes()


def _model_bytes(model, metadata: dict | None = None) -> bytes:
    meta = {"config": model.config.to_dict(), "metadata": {**model.metadata, **(metadata or {})}}
    return encode_tensors(model.state_dict(), meta)


def to_bytes(model, metadata: dict | None = None) -> bytes:
    """The checkpoint of ``model`` as bytes (e.g. for a download button)."""
    return _model_bytes(model, metadata)


def save(model, path, metadata: dict | None = None) -> Path:
    """Save ``model`` to a directory (``DIR/model.safetensors`` + ``DIR/card.json``) or, when
    ``path`` ends in ``.safetensors``, to that single file; ``dlgm.load`` reads it back.

    Parameters
    ----------
    model : DLGM
    path : str or Path
        A directory, or a file name ending in ``.safetensors``.
    metadata : dict, optional
        JSON-serialisable facts merged into ``model.metadata`` first (e.g. ``test_nll``).

    Returns
    -------
    Path
        The weights' file.
    """
    model.metadata.update(metadata or {})
    path = Path(path)
    data = _model_bytes(model)
    if path.suffix == ".safetensors":
        atomic_write_bytes(path, data)
        return path
    atomic_write_bytes(path / MODEL_FILE, data)
    card = {"config": model.config.to_dict(), **model.metadata}
    atomic_write_bytes(path / CARD_FILE, json.dumps(card, indent=2, allow_nan=False).encode())
    return path / MODEL_FILE


def from_bytes(data: bytes, *, device="cpu"):
    """Rebuild a model from checkpoint bytes, validating everything; raises CheckpointError."""
    tensors, meta = decode_tensors(data)
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError("checkpoint has no model config")
    try:
        config = DLGMConfig.from_dict(meta["config"])
    except (ValueError, TypeError, OverflowError) as e:  # ConfigError is a ValueError
        raise CheckpointError(f"invalid model config in checkpoint: {e}") from None
    metadata = meta.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise CheckpointError("checkpoint metadata must be a JSON object")
    expected = parameter_shapes(config)  # from the config: nothing allocated yet
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise CheckpointError(
                f"weight {name} has shape {tuple(t.shape)}, but the config needs {shape}"
            )
        if not t.is_floating_point():
            raise CheckpointError(f"weight {name} has dtype {t.dtype}; expected floats")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"weight {name} contains NaN or infinite values")
    # The weights fit the config, so building it allocates no more than the file holds.
    model = DLGM(config, metadata=metadata)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()


def load(path, *, device="cpu", max_bytes: int = MAX_BYTES):
    """Load a model saved by ``dlgm.save`` (a directory or a ``.safetensors`` file).

    Raises
    ------
    CheckpointError
        If the file is missing, too large, a pickle, truncated, malformed or mismatched.
    """
    return from_bytes(read_bytes(path, max_bytes), device=device)

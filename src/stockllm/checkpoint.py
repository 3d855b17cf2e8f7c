"""Checkpoint folders: ``stockllm.json`` (resolved config and metadata) plus safetensors weights. Never pickles."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .errors import StockLLMError
from .outputs import atomic_folder, folder_target

META_FILE = "stockllm.json"
# Sub-folders a new checkpoint carries over from the one it replaces (training state), with the pattern of the
# entries a training run writes in them.
KEPT = {"state": r"\.?(?:tmp-)?step-\d+"}


def check_target(target: str | os.PathLike) -> Path:
    """Refuse a checkpoint destination that would lose data or cannot be written, before any training.

    An existing folder is only replaced when its manifest lists everything in it, at every depth (its training
    state, ``state/``, is carried over into the new one); otherwise the error names the first foreign file. A
    symlink is refused unless ``--follow_symlinks`` (then the folder it names is replaced and the link stays).
    Returns the real path.
    """
    return folder_target(target, "--save_dir", KEPT)


@contextmanager
def atomic_dir(target: str | os.PathLike):
    """Yield a temporary folder beside ``target``; on success it replaces ``target``, on failure it is removed.

    A crash mid-save therefore never leaves a half-written checkpoint, and an old checkpoint survives until the
    new one is complete. See :func:`stockllm.outputs.atomic_folder`.
    """
    with atomic_folder(target, flag="--save_dir", keep=KEPT) as tmp:
        yield tmp


def read_safetensors(path: str | os.PathLike) -> dict:
    """All tensors of a safetensors file, with one clear error line for a missing, truncated or corrupt file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise StockLLMError(f"{path} is missing: the checkpoint is incomplete; train again")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise StockLLMError(f"{path} is truncated or not a safetensors file ({str(exc).splitlines()[0]}): the "
                            "checkpoint is damaged; copy it again or train again") from None
    check_tensors(tensors, path)
    return tensors


def check_tensors(tensors: dict, path) -> None:
    """Refuse weights that are not floating point or hold NaN or infinity (stockllm writes only finite floats)."""
    import torch

    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise StockLLMError(f"{path} holds {name} as {str(tensor.dtype).replace('torch.', '')}, not floating "
                                "point: the checkpoint was not written by stockllm or was edited; train again")
        if not bool(torch.isfinite(tensor).all()):
            raise StockLLMError(f"{path} holds NaN or infinite values in {name}: the checkpoint is damaged (or "
                                "training diverged); train again, e.g. with a lower --learning_rate")


def write_meta(directory: Path, meta: dict) -> None:
    """Write ``stockllm.json`` with the package version added."""
    meta = {"stockllm_version": __version__, **meta}
    (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")


def read_meta(directory: str | os.PathLike) -> dict:
    """Read ``stockllm.json`` from a checkpoint folder, with a clear error when it is not one."""
    path = Path(directory) / META_FILE
    if not Path(directory).is_dir():
        raise StockLLMError(f"checkpoint folder {directory} does not exist: pass the --save_dir of a training run")
    if not path.is_file():
        raise StockLLMError(f"{directory} is not a stockllm checkpoint (no {META_FILE}): pass the --save_dir of a "
                            "training run")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StockLLMError(f"unreadable {path}: {exc}; train again to rebuild the checkpoint") from None
    except OSError as exc:
        raise StockLLMError(f"cannot read {path} ({(exc.strerror or str(exc)).lower()}): check its "
                            "permissions") from None
    if not isinstance(meta, dict):
        raise StockLLMError(f"{path} holds a JSON {type(meta).__name__}, not an object: the checkpoint is damaged "
                            "or was edited; train again")
    return meta

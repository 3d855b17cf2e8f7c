"""Checkpoint folders: ``stockllm.json`` (resolved config and metadata) plus safetensors weights. Never pickles."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .errors import StockLLMError

META_FILE = "stockllm.json"
KEPT = ("state",)  # sub-folders a new checkpoint carries over from the one it replaces (training state)


def check_target(target: str | os.PathLike) -> Path:
    """Refuse a checkpoint destination that would lose data or cannot be written, before any training.

    An existing folder is only replaced when it is empty or already a stockllm checkpoint (its training state,
    ``state/``, is carried over into the new one).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise StockLLMError(f"--save_dir {target} is a file: pass a folder name")
    # Ours: a checkpoint, or only the training state a run saved before its first checkpoint.
    if target.is_dir() and not ((target / META_FILE).is_file() or {p.name for p in target.iterdir()} <= set(KEPT)):
        raise StockLLMError(f"--save_dir {target} exists and is not a stockllm checkpoint: choose a new or empty "
                            "folder (it would be replaced)")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise StockLLMError(f"cannot create --save_dir {target}: {parent} is not a writable folder")
    return target


@contextmanager
def atomic_dir(target: str | os.PathLike):
    """Yield a temporary folder beside ``target``; on success it replaces ``target``, on failure it is removed.

    A crash mid-save therefore never leaves a half-written checkpoint, and an old checkpoint survives until the
    new one is complete.
    """
    target = check_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as exc:
        raise StockLLMError(f"cannot write checkpoint {target}: {exc.strerror or exc}") from None
    try:
        yield tmp
        for name in KEPT:
            if (target / name).is_dir():
                # Hard links: the training state moves with the checkpoint without copying its bytes.
                shutil.copytree(target / name, tmp / name, copy_function=_link_or_copy,
                                ignore=shutil.ignore_patterns(".*"))
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def read_safetensors(path: str | os.PathLike) -> dict:
    """All tensors of a safetensors file, with one clear error line for a missing, truncated or corrupt file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise StockLLMError(f"{path} is missing: the checkpoint is incomplete; train again")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise StockLLMError(f"{path} is truncated or not a safetensors file ({str(exc).splitlines()[0]}): the "
                            "checkpoint is damaged; copy it again or train again") from None


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
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StockLLMError(f"unreadable {path}: {exc}; train again to rebuild the checkpoint") from None

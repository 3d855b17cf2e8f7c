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


@contextmanager
def atomic_dir(target: str | os.PathLike):
    """Yield a temporary folder beside ``target``; on success it replaces ``target``, on failure it is removed.

    A crash mid-save therefore never leaves a half-written checkpoint, and an old checkpoint survives until the
    new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
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
        raise StockLLMError(f"{directory} is not a stockllm checkpoint (no {META_FILE}): pass the --save_dir of a training run")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StockLLMError(f"unreadable {path}: {exc}; train again to rebuild the checkpoint") from None

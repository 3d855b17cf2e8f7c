"""Writing outputs that cannot hurt: files and folders are written whole under a temporary name, then renamed.

- :func:`write_atomic` writes one regular file (CSV, HTML, PNG). A target that exists and is not a regular file
  (a device, FIFO, socket or folder) is refused. ``-`` and ``/dev/stdout`` are standard output, written as a
  stream (nothing renamed, so ``>> log.txt`` appends).
- :func:`atomic_folder` writes a whole folder (a checkpoint, an evaluation's output set) into a fresh temporary
  folder beside it and swaps it in. A folder that already exists is replaced only when its manifest
  (:data:`MANIFEST`, written by the previous swap) lists everything in it, at every depth.
- An output path that is a symlink is refused unless :func:`following_symlinks` is on (``--follow_symlinks``):
  as root, a link to ``/etc/passwd`` would otherwise replace it. :func:`check_not_inputs` refuses an output that
  is one of the run's inputs (a data file, the ledger, a checkpoint being read) before any work.
- Temporary names carry the writer's process id (``.NAME.tmp-PID-…``, ``.NAME.old-PID``), so leftovers of a
  killed run are removed by the next writer once that process is gone (:func:`clean_stale`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import StockLLMError

MANIFEST = ".stockllm-files.json"  # inside a folder stockllm wrote: the relative paths of what it wrote there
STDOUT = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")  # output names that mean standard output
_follow = {"on": False}  # following_symlinks(): write through a symlinked output instead of refusing it


@contextmanager
def following_symlinks(on: bool = True):
    """Within the block, an output path that is a symlink is written through (the file or folder it names is
    replaced and the link stays) instead of refused; ``--follow_symlinks`` turns this on for a command."""
    before, _follow["on"] = _follow["on"], bool(on)
    try:
        yield
    finally:
        _follow["on"] = before


def is_stdout(path) -> bool:
    """Whether an output path names standard output (``-``, ``/dev/stdout``), which is written as a stream."""
    return path is not None and str(path).strip() in STDOUT


def refuse_symlink(path, flag: str) -> None:
    """Refuse an output path that is a symlink, naming the link and its target, unless following_symlinks is on."""
    if _follow["on"] or not os.path.islink(path):
        return
    raise StockLLMError(f"{flag} {path} is a symlink to {os.path.realpath(path)}: writing it would replace that "
                        "file; name a regular path, or pass --follow_symlinks to write through the link")


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def write_failure(exc: BaseException) -> str | None:
    """Why a write failed, in words, when ``exc`` is an OSError or a library's wrapping of one (torch and
    safetensors report a full disk in their own exception types); None for any other error."""
    if isinstance(exc, StockLLMError):
        return None
    if isinstance(exc, OSError):
        return _reason(exc)
    text = str(exc).lower()
    for needle, reason in (("no space left", "no space left on device"), ("os error 28", "no space left on device"),
                           ("storagefull", "no space left on device"), ("quota", "disk quota exceeded"),
                           ("file write failed", "the file could not be written"),
                           ("permission denied", "permission denied"), ("read-only file system",
                                                                        "read-only file system")):
        if needle in text:
            return reason
    return None


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "device"),
                       (stat.S_ISBLK, "device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "special file"


def file_target(path, flag: str = "output") -> Path:
    """The regular file that writing ``path`` will replace or create: symlinks resolved, special files refused.

    Raises StockLLMError when the name is empty, when it is a symlink (see :func:`refuse_symlink`), or when the
    target exists and is a folder, FIFO, device or socket. Standard output (:func:`is_stdout`) is returned as
    given. Checks only; creates nothing.
    """
    if str(path).strip() == "":
        raise StockLLMError(f"{flag} is empty: name a file, e.g. {flag} predictions.csv")
    if is_stdout(path):
        return Path(str(path).strip())
    refuse_symlink(path, flag)
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows symlinks: the file a link names is the one replaced
    except (FileNotFoundError, NotADirectoryError):  # not there yet (creating its folder may still fail)
        mode = None
    except OSError as exc:
        raise StockLLMError(f"cannot use {flag} {path} ({_reason(exc)}): choose another path") from None
    kind = None if mode is None else _kind(mode)
    if kind is not None:
        raise StockLLMError(f"{flag} {path} is a {kind}, not a regular file: name a file to write, e.g. "
                            f"{'a file inside the folder' if kind == 'folder' else 'results.csv'}")
    return Path(os.path.realpath(path))


def check_not_inputs(inputs, files=(), folders=()) -> None:
    """Refuse, before any work, an output that is one of the run's inputs, so that nothing read is lost.

    ``inputs``, ``files`` (outputs written as one file) and ``folders`` (outputs replaced whole) are
    ``(flag, path)`` pairs; None paths, standard output and inputs that do not exist are skipped, and a flag is
    never compared with itself (the ledger is read and appended). A file output may not be the same file as an
    input (``os.path.samefile``: symlinks and hard links too) nor lie inside an input folder (a checkpoint being
    read); a folder output may not be, or hold, an input.
    """
    inputs = [(flag, Path(p)) for flag, p in inputs if p is not None and os.path.exists(p)]
    for out_flag, out in files:
        if out is None or is_stdout(out):
            continue
        real = Path(os.path.realpath(out))
        for in_flag, path in inputs:
            if in_flag == out_flag:
                continue
            if path.is_dir() and real.is_relative_to(os.path.realpath(path)):
                raise StockLLMError(f"{out_flag} {out} lies inside {in_flag} {path}, which this run reads: choose "
                                    f"a {out_flag} path outside it")
            if real.exists() and os.path.samefile(real, path):
                raise StockLLMError(f"{out_flag} {out} is the same file as {in_flag} {path}: writing it would "
                                    f"replace that input; choose another {out_flag} path")
    for out_flag, out in folders:
        if out is None:
            continue
        real = Path(os.path.realpath(out))
        for in_flag, path in inputs:
            if in_flag != out_flag and Path(os.path.realpath(path)).is_relative_to(real):
                raise StockLLMError(f"{out_flag} {out} holds {in_flag} {path}, which this run reads, and the folder "
                                    f"would be replaced: choose another {out_flag} folder")


def write_atomic(path, write, *, binary: bool = False, flag: str = "output") -> Path:
    """Call ``write(handle)`` on a new file beside ``path`` (UTF-8 text, or bytes with ``binary``), then rename it
    over ``path``; returns the path written.

    A failure (an exception, a full disk, a signal turned into an exception) leaves neither a half-written file
    nor a changed old one. Creates parent folders. Raises StockLLMError for a target that is not a regular file
    (see :func:`file_target`) or a folder or file that cannot be written. Standard output is written as a stream.
    """
    target = file_target(path, flag)
    if is_stdout(target):
        import sys

        write(sys.stdout.buffer if binary else sys.stdout)
        sys.stdout.flush()
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StockLLMError(f"cannot create folder {target.parent} ({_reason(exc)}): choose another output "
                            "path") from None
    clean_stale(target)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(temporary, "xb" if binary else "x", **({} if binary else {"newline": "", "encoding": "utf-8"})) \
                as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        _remove(temporary)
        raise StockLLMError(f"cannot write {path} ({_reason(exc)}): check the folder's permissions and free "
                            "space") from None
    except BaseException:
        _remove(temporary)
        raise
    return target


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) sends CTRL_C_EVENT there: never probe, never clean
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove ``.NAME.tmp-PID-*`` and ``.NAME.old-PID`` siblings of ``target`` whose process is gone; returns
    them. Leftovers of live processes (another run writing now) are kept."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)(?:-.*)?")
    removed = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        match = pattern.fullmatch(sibling.name)
        if match is None or int(match[1]) == os.getpid() or _pid_alive(int(match[1])):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            _remove(sibling)
        removed.append(sibling)
    return removed


def check_finite(table, where: str) -> None:
    """Refuse to write forecasts that are not finite numbers.

    Point columns (``predicted``, ``predicted_close``) must be finite; quantile columns (``q0.1``, ...) may be
    all empty in a row (a model without a distribution) but never infinite or partly empty.
    """
    import numpy as np

    from .quantiles import level_of

    point = [c for c in ("predicted", "predicted_close") if c in table.columns]
    levels = [c for c in table.columns if level_of(str(c)) is not None]
    bad = np.zeros(len(table), dtype=bool)
    for c in point:
        bad |= ~np.isfinite(np.asarray(table[c], dtype=float))
    if levels:
        q = np.asarray(table[levels], dtype=float)
        empty = np.isnan(q).all(axis=1)
        bad |= ~empty & ~np.isfinite(q).all(axis=1)
    if not bad.any():
        return
    row = table.iloc[int(np.flatnonzero(bad)[0])]
    which = ", ".join(f"{k} {row[k]}" for k in ("series", "model", "date", "target_date", "horizon")
                      if k in table.columns)
    raise StockLLMError(f"non-finite forecast ({which}): nothing written to {where}; the model or the "
                        "data hold values out of range (check the checkpoint, and the data's largest prices and "
                        "volumes)")


# --------------------------------------------------------------------------------------------------
# Folders


def read_manifest(folder: Path) -> set[str] | None:
    """The relative paths stockllm recorded as written in ``folder`` (None when it has no readable manifest)."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return {str(f) for f in files} if isinstance(files, list) else None


def _write_manifest(folder: Path, keep: dict) -> None:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if not p.is_dir() and p.relative_to(folder).parts[0] not in keep)
    (folder / MANIFEST).write_text(json.dumps({"written_by": "stockllm", "files": files}, indent=1) + "\n",
                                   encoding="utf-8")


def foreign_entries(folder: Path, keep: dict | None = None) -> list[str]:
    """Relative paths in ``folder`` that stockllm did not write there, in sorted order.

    Ours: the files in the folder's manifest (and the folders that hold them), at every depth; and, for each
    ``keep`` entry ``{name: regex}``, the sub-folder ``name`` whose top-level entries match ``regex`` (training
    states that a run writes there by itself). A folder without a manifest holds nothing else of ours. Only
    folders that are ours are looked into, so a wrong ``--output_dir ~`` answers at once instead of walking the
    whole home folder.
    """
    keep = keep or {}
    manifest = read_manifest(folder) or set()
    parents = {"/".join(Path(f).parts[:i]) for f in manifest for i in range(1, len(Path(f).parts))}
    foreign, pending = [], [folder]
    while pending:
        for path in sorted(pending.pop().iterdir()):
            parts = path.relative_to(folder).parts
            rel = "/".join(parts)
            is_dir = path.is_dir() and not path.is_symlink()
            if parts[0] in keep:
                ours = is_dir if len(parts) == 1 else bool(re.fullmatch(keep[parts[0]], parts[1]))
                descend = False  # a training state's own files are the training loop's business
            elif is_dir:
                ours = descend = rel in parents
            else:
                ours, descend = rel in manifest or rel == MANIFEST, False
            if not ours:
                foreign.append(rel)
            elif descend or (is_dir and len(parts) == 1 and parts[0] in keep):
                pending.append(path)
    return sorted(foreign)


def folder_target(target, flag: str, keep: dict | None = None) -> Path:
    """The real folder that :func:`atomic_folder` would replace or create (symlinks resolved), after refusing a
    target that is not a folder, holds files stockllm did not write, or whose parent cannot be written.
    Creates nothing."""
    if str(target).strip() == "":
        raise StockLLMError(f"{flag} is empty: name a folder")
    refuse_symlink(target, flag)
    path = Path(target)
    real = Path(os.path.realpath(path))
    if real.exists():
        kind = _kind(os.stat(real).st_mode)
        if kind != "folder":
            raise StockLLMError(f"{flag} {path} is a {kind or 'file'}: pass a folder name")
        foreign = foreign_entries(real, keep)
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            unlisted = (f"has no manifest ({MANIFEST}) listing what stockllm wrote there, and holds" if
                        read_manifest(real) is None else "holds")
            raise StockLLMError(f"{flag} {path} {unlisted} {foreign[0]}{more}, which stockllm did not write, and the "
                                "folder would be replaced: choose a new or empty folder, or move that file out")
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise StockLLMError(f"cannot create {flag} {path}: {parent} is not a writable folder")
    return real


@contextmanager
def _lock(real: Path, flag: str, shown):
    """Hold an exclusive lock on ``.NAME.lock`` beside ``real``; a second writer is refused, not kept waiting.
    (Without fcntl, on Windows, nothing is locked.)"""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_path = real.with_name(f".{real.name}.lock")
    busy = StockLLMError(f"another stockllm run is writing {flag} {shown} now: wait for it to finish, or choose "
                         "another folder")
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise busy from None
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(handle.fileno()).st_ino:  # removed by a run that held it: refuse rather than race
            raise busy
        yield
        _remove(lock_path)  # the lock file goes with its holder; see the inode check above
    finally:
        handle.close()


@contextmanager
def atomic_folder(target, *, flag: str, keep: dict | None = None, lock: bool = False):
    """Yield a fresh temporary folder beside ``target``; on success it replaces ``target`` whole.

    The new folder gets a manifest of what was written into it. ``keep`` sub-folders of the old folder (a
    checkpoint's training state) are carried into the new one by hard links. The old folder must pass
    :func:`folder_target`. A failure, or SIGINT/SIGTERM raised as an exception, removes the temporary folder and
    leaves the old one whole; the swap itself runs with those signals blocked. ``lock``: refuse a second writer of
    the same folder while this one writes.
    """
    keep = keep or {}
    real = folder_target(target, flag, keep)
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StockLLMError(f"cannot create {flag} {target} ({_reason(exc)}): choose a folder you can write "
                            "to") from None
    with _lock(real, flag, target) if lock else _nothing():
        real = folder_target(target, flag, keep)  # again: the folder may have changed while we waited
        clean_stale(real)
        tmp = real.with_name(f".{real.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir()
        except OSError as exc:
            raise StockLLMError(f"cannot write {flag} {target} ({_reason(exc)}): choose a folder you can write "
                                "to") from None
        try:
            yield tmp
            usual_modes(tmp)
            _write_manifest(tmp, keep)
            for name in keep:
                if (real / name).is_dir():
                    # Hard links: the training state moves with the checkpoint without copying its bytes.
                    shutil.copytree(real / name, tmp / name, copy_function=_link_or_copy,
                                    ignore=shutil.ignore_patterns(".*"))
            _swap(tmp, real)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            reason = write_failure(exc) if isinstance(exc, Exception) and not isinstance(exc, StockLLMError) else None
            if reason is None:
                raise
            raise StockLLMError(f"cannot write {flag} {target} ({reason}): check the free space and "
                                "permissions; the previous contents are unchanged") from None


def usual_modes(folder: Path) -> None:
    """Give every file under ``folder`` the mode a plain ``open`` gives under the user's umask (safetensors, and so
    PEFT and accelerate, write their files 0600, unlike every other file of a checkpoint)."""
    umask = _umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (setting it, even for an instant, would
    race with a thread that creates a file meanwhile, e.g. under ``serve``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _nothing():
    yield


def _swap(tmp: Path, real: Path) -> None:
    """Rename ``tmp`` to ``real``, moving an old ``real`` aside first; signals wait until both renames are done."""
    mask = getattr(signal, "pthread_sigmask", None)  # POSIX only
    previous = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if mask else None
    try:
        if real.exists():
            old = real.with_name(f".{real.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(real, old)
            os.replace(tmp, real)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, real)
    finally:
        if mask:
            mask(signal.SIG_SETMASK, previous)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass

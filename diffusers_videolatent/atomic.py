# Copyright 2026 The diffusers-videolatent authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
Atomic writes: every file or folder we write goes to a temporary sibling first and is moved into place once complete.

A temporary sibling of `path` is named `.{name}.videolatent-{kind}-{pid}-{random}` (`kind` is `tmp` for what is being
written and `old` for a folder set aside while it is replaced). After a kill at any moment the destination holds either
its previous content, nothing, or the complete result; the next write to the same destination removes the siblings
left by dead processes (and only those of that destination), and puts back a folder that was set aside but not yet
replaced.
"""

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path


try:  # POSIX; elsewhere writers are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


TEMPORARY_MARK = ".videolatent-"
LOCK_SUFFIX = ".videolatent-lock"
# how long a writer waits for another one to finish moving its result into the same destination
COMMIT_LOCK_TIMEOUT = 60.0
_HELD_LOCKS: dict[str, list] = {}  # lock path -> [file descriptor, depth]: a process never waits for itself


def _sibling_pattern(name_pattern: str) -> re.Pattern:
    return re.compile(rf"^\.(?P<name>{name_pattern}){re.escape(TEMPORARY_MARK)}(?P<kind>tmp|old)-(?P<pid>\d+)-[^/]+$")


def inside_temporary(path: str | os.PathLike) -> bool:
    r"""Whether `path` is, or is inside, a temporary sibling of ours (whose own move into place already protects it)."""
    pattern = _sibling_pattern(".+")
    return any(pattern.match(part) for part in Path(os.path.abspath(os.fspath(path))).parts)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _current_umask() -> int:
    # read by setting it, so read once per save: the process-wide umask is 0 until it is restored
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_permissions(path: str, is_folder: bool, umask: int | None = None) -> None:
    r"""Gives a file or folder made by `tempfile` (private) the permissions a plain `open`/`mkdir` would give."""
    umask = _current_umask() if umask is None else umask
    os.chmod(path, (0o777 if is_folder else 0o666) & ~umask)


def default_permissions_tree(folder: str) -> None:
    r"""
    Gives `folder` and everything in it the permissions a plain `open`/`mkdir` would give: for what a writer put into a
    temporary folder of ours, before anything of the user's is carried over. Writers that go through a private
    temporary of their own (safetensors since 0.8 saves its files with mode 0600) would otherwise leave weights only
    their owner can read, beside a `config.json` that everyone can.
    """
    umask = _current_umask()
    default_permissions(folder, is_folder=True, umask=umask)
    for parent, folders, files in os.walk(folder):
        for name in folders:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                default_permissions(path, is_folder=True, umask=umask)
        for name in files:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                default_permissions(path, is_folder=False, umask=umask)


def remove_stale_temporaries(path: str | os.PathLike, name_pattern: str | None = None) -> list[str]:
    r"""
    Removes the temporary siblings of `path` left by processes that no longer run; returns what it removed.

    A folder set aside while it was being replaced (`old`) is moved back to its destination when the destination itself
    is missing, so an interrupted replacement never loses the previous content.

    Args:
        path (`str` or `os.PathLike`):
            The destination whose siblings to clean; siblings of other destinations are left alone.
        name_pattern (`str`, *optional*):
            A regular expression: `path` is then the folder, and the siblings of every destination in it whose name
            matches are cleaned (e.g. `checkpoint-\\d+`).
    """
    path = os.path.abspath(os.fspath(path))
    if name_pattern is None:
        parent, name = os.path.split(path)
        name_pattern = re.escape(name)
    else:
        parent = path
    if not os.path.isdir(parent):
        return []
    pattern = _sibling_pattern(name_pattern)
    removed = []
    for entry in sorted(os.listdir(parent)):
        match = pattern.match(entry)
        if match is None or _process_alive(int(match.group("pid"))):
            continue
        sibling, destination = os.path.join(parent, entry), os.path.join(parent, match.group("name"))
        if match.group("kind") == "old" and not os.path.lexists(destination):
            os.rename(sibling, destination)
            continue
        _remove(sibling)
        removed.append(sibling)
    return removed


class DestinationInUseError(RuntimeError):
    r"""Another live process holds the lock of a destination (see [`destination_lock`]); `pid` names it."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


def lock_path(path: str | os.PathLike) -> str:
    r"""The lock file of destination `path`: a sibling `.{name}.videolatent-lock` that holds the owner's pid and host."""
    parent, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(parent, f".{name}{LOCK_SUFFIX}")


def lock_owner(path: str | os.PathLike) -> tuple[int, str] | None:
    r"""The `(pid, host)` written in the lock file of destination `path`, or `None` when there is none to read."""
    try:
        with open(lock_path(path)) as file:
            pid, host = file.read().split(maxsplit=1)
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def _try_lock(lock_file: str) -> int | None:
    # the classic flock dance: the file may be unlinked by its previous owner between our open and our lock
    while True:
        handle = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return None
        try:
            same = os.path.samestat(os.fstat(handle), os.stat(lock_file))
        except FileNotFoundError:
            same = False
        if same:
            return handle
        os.close(handle)


@contextlib.contextmanager
def destination_lock(path: str | os.PathLike, timeout: float = 0.0, what: str = "write") -> Iterator[None]:
    r"""
    Holds an exclusive lock on destination `path` for this process (re-entrant within it).

    The lock is an `flock` on a sibling file that names the holder's pid: the system releases it when the holder dies,
    so the lock of a killed process is taken over without any cleanup, and the file is removed when the lock is
    released. Where `fcntl` does not exist (Windows), nothing is locked.

    Args:
        path (`str` or `os.PathLike`):
            The destination (file or folder, existing or not); its parent folder must exist.
        timeout (`float`, *optional*, defaults to 0):
            Seconds to wait for another holder to release it; 0 refuses at once.
        what (`str`, *optional*, defaults to `"write"`):
            What the lock is for, for the error message.

    Raises:
        [`DestinationInUseError`]: Another live process still holds it after `timeout`, named by its pid.
    """
    if fcntl is None:
        yield
        return
    lock_file = lock_path(path)
    held = _HELD_LOCKS.get(lock_file)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    deadline = time.monotonic() + timeout
    while (handle := _try_lock(lock_file)) is None:
        if time.monotonic() >= deadline:
            owner = lock_owner(path)
            who = f"process {owner[0]} on {owner[1]}" if owner else "another process"
            raise DestinationInUseError(
                f"Cannot {what} {os.path.abspath(os.fspath(path))}: it is in use by {who} (lock {lock_file}). Wait "
                "for it to finish, stop it, or choose another destination.",
                owner[0] if owner else None,
            )
        time.sleep(0.05)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError:
        pass  # a full disk must not keep a writer from saying why its own write failed
    _HELD_LOCKS[lock_file] = [handle, 1]
    try:
        yield
    finally:
        del _HELD_LOCKS[lock_file]
        with contextlib.suppress(OSError):
            os.remove(lock_file)  # before the unlock: a waiter that opened it finds it unlinked and opens anew
        os.close(handle)


@contextlib.contextmanager
def commit_lock(path: str | os.PathLike, timeout: float = COMMIT_LOCK_TIMEOUT) -> Iterator[None]:
    r"""
    Held while a writer moves its complete result to `path`: an `flock` on the parent folder itself (no file is
    created, so a writer killed while holding it leaves nothing behind), re-entrant within a process. Writers of the
    same folder take turns only for these moves, which take milliseconds.
    """
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    key = parent + os.sep
    if fcntl is None or key in _HELD_LOCKS:
        yield
        return
    handle = os.open(parent, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DestinationInUseError(
                        f"Cannot write {path}: another process kept its folder locked for {timeout:g} s.", None
                    ) from None
                time.sleep(0.01)
        _HELD_LOCKS[key] = [handle, 1]
        try:
            yield
        finally:
            del _HELD_LOCKS[key]
    finally:
        os.close(handle)


# the errors of a write that did not fit: the disk (or quota) is full, or a file exceeds `ulimit -f`
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_OS_ERROR_CODE = re.compile(r"os error (\d+)|\[Errno (\d+)\]")


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _largest_file(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    sizes = [os.path.getsize(os.path.join(parent, name)) for parent, _, names in os.walk(path) for name in names]
    return max(sizes, default=0)


def write_failure_reason(error: BaseException, temporary: str | None = None) -> tuple[int, str] | None:
    r"""
    `(errno, reason)` when `error` (raised while writing `temporary`) is a write that did not fit (no space left, a
    disk quota, a file-size limit), else `None`. Writers wrap such errors differently (`OSError`, safetensors'
    `SafetensorError("... os error 27")`, torch's `RuntimeError("unexpected pos ...")`), so the error's code is read
    from the exception or its message, and else the file-size limit and the free space are looked at.
    """
    code = error.errno if isinstance(error, OSError) else None
    if code is None:
        match = _OS_ERROR_CODE.search(str(error))
        code = int(next(group for group in match.groups() if group)) if match else None
    limit = _file_size_limit()
    if code is None and temporary is not None and os.path.lexists(temporary):
        if limit is not None and _largest_file(temporary) >= limit:
            code = errno.EFBIG
        elif shutil.disk_usage(os.path.dirname(temporary)).free < 1 << 20:
            code = errno.ENOSPC
    if code == errno.EFBIG:
        shown = f"{limit} bytes" if limit is not None else "the limit"
        return code, f"a file would exceed the file-size limit (`ulimit -f`: {shown})"
    if code in _NO_SPACE:
        return code, f"{os.strerror(code).lower()} (the disk or the quota is full)"
    return None


def write_failure_error(
    error: BaseException,
    path: str,
    temporary: str | None,
    subject: str | None = None,
    outcome: str = "Its previous content (if any) is unchanged and no partial file is left; make room and run again",
) -> OSError | None:
    r"""
    The `OSError` to raise in place of `error` when it is a write to `path` (through `temporary`) that did not fit
    (see [`write_failure_reason`]): it names `subject` (`path` by default), the reason and `outcome`. `None` otherwise.
    """
    reason = write_failure_reason(error, temporary)
    if reason is None:
        return None
    code, text = reason
    return OSError(code, f"Could not write {path if subject is None else subject}: {text}. {outcome}", path)


def _reraise_write_failure(error: BaseException, path: str, temporary: str | None) -> None:
    failure = write_failure_error(error, path, temporary)
    if failure is not None:
        raise failure from error


class StopRequested(KeyboardInterrupt):
    r"""
    Raised by [`stop_on_signals`] when SIGTERM (or another stop signal) arrives: a `KeyboardInterrupt`, so that it
    unwinds through every `finally` (the atomic writers remove their temporaries) like Ctrl-C does. `exit_code` is
    128 + the signal's number, as a shell reports a process that the signal ended.
    """

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_name = signal.Signals(signal_number).name
        self.exit_code = 128 + signal_number


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGTERM,)) -> Iterator[None]:
    r"""
    While active (in the main thread), the `signals` raise [`StopRequested`] instead of ending the process at once: a
    command stopped by a scheduler then leaves its destination as it was, and no temporary behind.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_stop(number, frame):
        raise StopRequested(number)

    previous = {number: signal.signal(number, raise_stop) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def temporary_sibling(path: str | os.PathLike, kind: str = "tmp", folder: bool = False) -> str:
    r"""Creates (empty) and returns a temporary sibling of `path` that keeps its extension, for writers that read it."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    prefix = f".{name}{TEMPORARY_MARK}{kind}-{os.getpid()}-"
    if folder:
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    handle, temporary = tempfile.mkstemp(prefix=prefix, suffix=Path(name).suffix, dir=parent)
    os.close(handle)
    return temporary


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    r"""
    Yields a temporary file next to `path` (with the same extension) to write; moves it to `path` on success.

    Args:
        path (`str` or `os.PathLike`):
            The destination file.
        overwrite (`bool`, *optional*, defaults to `False`):
            Whether an existing file at `path` may be replaced. A folder is never replaced.
    """
    path = os.path.abspath(os.fspath(path))
    remove_stale_temporaries(path)
    if os.path.isdir(path):
        raise FileExistsError(f"{path} is a folder, not a file")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} exists")
    temporary = temporary_sibling(path)
    try:
        try:
            yield temporary
        except Exception as error:
            _reraise_write_failure(error, path, temporary)
            raise
        default_permissions(temporary, is_folder=False)
        with commit_lock(path):
            if os.path.lexists(path) and not overwrite:
                raise FileExistsError(f"{path} was written by another process meanwhile")
            os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _carry_over(previous: str, new: str, keep) -> None:
    # the entries of the previous folder that the new one does not have, hard-linked (no data is copied)
    for entry in os.listdir(previous):
        source, destination = os.path.join(previous, entry), os.path.join(new, entry)
        if os.path.isdir(source) and not os.path.islink(source):
            if os.path.isdir(destination):
                _carry_over(source, destination, keep)
            elif not os.path.lexists(destination):
                shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
        elif not os.path.lexists(destination) and keep(os.path.relpath(source, previous), new):
            if os.path.islink(source):
                os.symlink(os.readlink(source), destination)
            else:
                _link_or_copy(source, destination)


# weight files of diffusers and transformers saves (single, sharded, with a variant), and their shard indexes
_WEIGHTS_FILE = re.compile(
    r"^(?P<stem>diffusion_pytorch_model|model|pytorch_model|diffusion_flax_model|flax_model)"
    r"(?:\.(?P<variant>[\w]+?))?(?:-\d{5}-of-\d{5})?\.(?:safetensors|bin|msgpack)(?:\.index(?:\.(?P<index_variant>\w+))?\.json)?$"
)


def _weights_variant(filename: str) -> tuple[str, str | None] | None:
    match = _WEIGHTS_FILE.match(filename)
    if match is None:
        return None
    return match.group("stem"), match.group("variant") or match.group("index_variant")


def keep_unless_superseded_weights(relative_path: str, new_folder: str) -> bool:
    r"""
    For [`atomic_folder`]'s `keep`: keeps every previous file except weight files (and shard indexes) of a variant
    that the new save wrote again in the same folder, as diffusers' own `save_pretrained` removes stale shards.
    """
    directory, filename = os.path.split(relative_path)
    variant = _weights_variant(filename)
    if variant is None:
        return True
    new_directory = os.path.join(new_folder, directory)
    written = {_weights_variant(name) for name in os.listdir(new_directory)} if os.path.isdir(new_directory) else set()
    return variant not in written


@contextlib.contextmanager
def atomic_folder(
    path: str | os.PathLike, overwrite: bool = False, keep_existing: bool = False, keep=None
) -> Iterator[str]:
    r"""
    Yields a temporary folder next to `path` to fill; moves it to `path` on success.

    Args:
        path (`str` or `os.PathLike`):
            The destination folder.
        overwrite (`bool`, *optional*, defaults to `False`):
            Whether an existing non-empty folder may be replaced (an empty one always may). A file is never replaced.
        keep_existing (`bool`, *optional*, defaults to `False`):
            Whether the files of an existing folder that the new content does not have are kept (hard-linked into the
            result), as a save into an existing folder keeps the files it does not write.
        keep (`Callable[[str, str], bool]`, *optional*):
            With `keep_existing`: called with a kept file's path relative to the folder and the new folder's path;
            returning `False` drops that file (e.g. weight shards of an older save).
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path} exists and is not a folder")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty")
    temporary = temporary_sibling(path, folder=True)
    try:
        try:
            yield temporary
        except Exception as error:
            _reraise_write_failure(error, path, temporary)
            raise
        default_permissions_tree(temporary)
        # two writers of one destination: one moves its complete result in at a time, never a mix of both
        with commit_lock(path):
            if os.path.isdir(path) and os.listdir(path) and not overwrite:
                raise FileExistsError(f"{path} was written by another process meanwhile")
            try:
                if keep_existing and os.path.isdir(path):
                    _carry_over(path, temporary, keep or (lambda relative, new: True))
            except Exception as error:
                _reraise_write_failure(error, path, temporary)
                raise
            move_into_place(temporary, path)
    finally:
        if os.path.lexists(temporary):
            _remove(temporary)


def move_into_place(temporary: str, path: str | os.PathLike) -> None:
    r"""
    Moves the complete folder `temporary` (a sibling made by [`temporary_sibling`]) to `path`, replacing a folder there.

    A folder being replaced is first renamed to an `old` sibling; if the process is killed before the new folder takes
    its place, the next write to `path` (see [`remove_stale_temporaries`]) moves it back.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        os.rename(temporary, path)
        return
    previous = temporary_sibling(path, kind="old", folder=True)
    os.rmdir(previous)
    os.rename(path, previous)
    os.rename(temporary, path)
    _remove(previous)

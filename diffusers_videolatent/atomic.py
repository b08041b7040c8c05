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
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


TEMPORARY_MARK = ".videolatent-"


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
        yield temporary
        default_permissions(temporary, is_folder=False)
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
        yield temporary
        default_permissions_tree(temporary)
        if keep_existing and os.path.isdir(path):
            _carry_over(path, temporary, keep or (lambda relative, new: True))
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

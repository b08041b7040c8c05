"""kill -9 of `videolatent generate` while it writes its output, then a rerun of the same command.

The command runs in a child process that sends itself SIGKILL at a chosen point of the write (inside a third-party
call it makes: imageio's frame writer, PIL's `save`, `os.replace`, `os.rename`), so each point is reached every time.
After the kill the output holds nothing or a complete result; the rerun cleans what the killed run left and only that.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import PIL.Image

from diffusers_videolatent import cli
from diffusers_videolatent.atomic import TEMPORARY_MARK

from .testing_utils import REPOSITORY


SMALL = ["--num_frames", "5", "--height", "32", "--width", "32", "--steps", "2", "--seed", "0"]

CHILD = r"""
import os
import signal
import sys

import imageio
import PIL.Image

from diffusers_videolatent import cli

point, output, argv = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3:]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if point == "mp4-after-two-frames":
    get_writer = imageio.get_writer

    def get_dying_writer(*args, **kwargs):
        writer = get_writer(*args, **kwargs)
        append_data, written = writer.append_data, []

        def append_and_die(frame, *more, **options):
            append_data(frame, *more, **options)
            written.append(frame)
            if len(written) == 2:
                die()

        writer.append_data = append_and_die
        return writer

    imageio.get_writer = get_dying_writer
elif point == "png-after-two-frames":
    save, saved = PIL.Image.Image.save, []

    def save_and_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        saved.append(args)
        if len(saved) == 2:
            die()

    PIL.Image.Image.save = save_and_die
elif point in ("before-replace", "after-replace"):
    replace = os.replace

    def replace_and_die(source, destination):
        if os.path.abspath(destination) == output and point == "before-replace":
            die()
        replace(source, destination)
        if os.path.abspath(destination) == output:
            die()

    os.replace = replace_and_die
elif point == "folder-set-aside":
    rename = os.rename

    def rename_and_die(source, destination):
        rename(source, destination)
        if os.path.abspath(source) == output:
            die()

    os.rename = rename_and_die
else:
    raise SystemExit(f"unknown kill point {point}")

sys.exit(cli.main(argv))
"""


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if TEMPORARY_MARK in path.name)


def wait_for_orphaned_writers(folder: Path, timeout: float = 60) -> None:
    # ffmpeg, started by the killed process, finishes on its own once its input closes; wait for it to exit
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for process in Path("/proc").iterdir():
            try:
                busy = busy or str(folder) in (process / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.2)
    raise AssertionError(f"a writer in {folder} is still running after {timeout} s")


def generate_and_kill(point: str, output: Path, argv: list[str]) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop(cli.DEBUG_ENVIRONMENT_VARIABLE, None)
    command = [sys.executable, "-c", CHILD, point, str(output), *argv]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPOSITORY, timeout=300)
    assert result.returncode == -9, f"not killed at {point} (exit {result.returncode}): {result.stderr}"
    wait_for_orphaned_writers(output.parent)


def test_kill_during_an_mp4_write_then_rerun(model_dir, tmp_path, capsys):
    output = tmp_path / "clip.mp4"
    argv = ["generate", "a cat", "--model", str(model_dir), "--output", str(output), *SMALL]

    generate_and_kill("mp4-after-two-frames", output, argv)
    # killed mid-write: no output, only the killed run's temporary sibling
    assert not output.exists()
    assert len(leftovers(tmp_path)) == 1

    assert cli.main(argv) == 0, capsys.readouterr().err
    assert len(imageio.mimread(output, memtest=False)) == 5
    assert leftovers(tmp_path) == []


def test_kill_before_and_after_the_gif_is_moved_into_place(model_dir, tmp_path, capsys):
    output = tmp_path / "clip.gif"
    argv = ["generate", "a cat", "--model", str(model_dir), "--output", str(output), *SMALL]

    generate_and_kill("before-replace", output, argv)
    assert not output.exists() and len(leftovers(tmp_path)) == 1
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert len(imageio.mimread(output)) == 5 and leftovers(tmp_path) == []

    output.unlink()
    generate_and_kill("after-replace", output, argv)
    # killed after the move: the complete result, nothing else
    assert len(imageio.mimread(output)) == 5 and leftovers(tmp_path) == []
    complete = output.read_bytes()
    # the rerun refuses to replace it (without --overwrite) and leaves it as it is
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert output.read_bytes() == complete and leftovers(tmp_path) == []


def test_kill_during_a_png_folder_write_then_rerun(model_dir, tmp_path, capsys):
    output = tmp_path / "frames"
    argv = ["generate", "a cat", "--model", str(model_dir), "--output", str(output), *SMALL]

    generate_and_kill("png-after-two-frames", output, argv)
    assert not output.exists()
    (sibling,) = leftovers(tmp_path)
    assert len(list((tmp_path / sibling).iterdir())) == 2

    assert cli.main(argv) == 0, capsys.readouterr().err
    assert sorted(path.name for path in output.iterdir()) == [f"frame_{index:04d}.png" for index in range(5)]
    assert leftovers(tmp_path) == []


def test_kill_while_an_overwritten_folder_is_set_aside_loses_no_user_file(model_dir, tmp_path, capsys):
    output = tmp_path / "shots"
    output.mkdir()
    (output / "notes.txt").write_text("my own notes")
    for index in range(7):
        (output / f"frame_{index:04d}.png").write_bytes(b"frame of an earlier run")
    # another destination's stale sibling in the same folder: not ours to clean
    foreign = tmp_path / f".other{TEMPORARY_MARK}tmp-999999999-abc"
    foreign.write_text("someone else's")
    argv = ["generate", "a cat", "--model", str(model_dir), "--output", str(output), "--overwrite", *SMALL]

    generate_and_kill("folder-set-aside", output, argv)
    # killed between the two renames: the previous folder waits, whole, in the set-aside sibling
    assert not output.exists()
    set_aside = [name for name in leftovers(tmp_path) if name.startswith(".shots")]
    assert len(set_aside) == 2
    old = [name for name in set_aside if f"{TEMPORARY_MARK}old-" in name]
    assert (tmp_path / old[0] / "notes.txt").read_text() == "my own notes"

    assert cli.main(argv) == 0, capsys.readouterr().err
    names = sorted(path.name for path in output.iterdir())
    assert names == [f"frame_{index:04d}.png" for index in range(5)] + ["notes.txt"]
    assert (output / "notes.txt").read_text() == "my own notes"
    assert PIL.Image.open(output / "frame_0000.png").size == (32, 32)
    assert leftovers(tmp_path) == [foreign.name]

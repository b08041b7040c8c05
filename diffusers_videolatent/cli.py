"""The `videolatent` command (also `python -m diffusers_videolatent`).

    videolatent generate "a red panda climbing a tree" --output panda.mp4

Only parsing, reading and writing files, and printing live here; everything about models is the pipeline's, and the
settings a model recommends (frames, size, fps, steps, guidance) are the pipeline's defaults: the command passes on
only the options given.

Errors come out as one line on stderr (`--debug`, or `VIDEOLATENT_DEBUG=1`, adds the traceback) with exit code

- 2 for a usage error: a bad flag or value, a path that cannot be read or written, an output that exists (without
  `--overwrite`), and every `ValueError`/`TypeError` of the pipeline's (or the Hub upload's) input checks, which
  reject a value the command passed on;
- 1 for a failure at run time: a model that does not load, an error while generating, decoded frames that are not
  finite, a write that fails.

Everything that needs no model is checked before the model loads. The output is written through
[`~diffusers_videolatent.atomic`]: a temporary sibling moved into place once complete, so that a kill at any moment
leaves either nothing or a complete result, and the next run removes what a killed run left. An existing output is
only replaced with `--overwrite`; in a folder of PNGs, only the `frame_NNNN.png` files are replaced or removed.
"""

import argparse
import contextlib
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .atomic import StopRequested, atomic_file, atomic_folder, remove_stale_temporaries, stop_on_signals


DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"
VIDEO_EXTENSIONS = (".mp4", ".gif")
FRAME_FILE_NAME = "frame_{index:04d}.png"
FRAME_FILE_PATTERN = re.compile(r"frame_\d{4,}\.png")
DEBUG_ENVIRONMENT_VARIABLE = "VIDEOLATENT_DEBUG"
EXIT_RUNTIME_ERROR = 1
EXIT_USAGE_ERROR = 2
MAX_SEED = 2**64 - 1

# short names for `--scheduler`; any diffusers scheduler class name is accepted too
SCHEDULER_ALIASES = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpm++-2m": "DPMSolverMultistepScheduler",
    "dpm++-single": "DPMSolverSinglestepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "deis": "DEISMultistepScheduler",
    "kdpm2": "KDPM2DiscreteScheduler",
    "kdpm2-a": "KDPM2AncestralDiscreteScheduler",
    "lcm": "LCMScheduler",
    "tcd": "TCDScheduler",
    "edm-euler": "EDMEulerScheduler",
    "flow-euler": "FlowMatchEulerDiscreteScheduler",
}

# the flag that sets each argument of the pipeline call, to name it in the pipeline's errors
PIPELINE_ARGUMENT_FLAGS = {
    "prompt": "PROMPT",
    "negative_prompt": "--negative_prompt",
    "num_frames": "--num_frames",
    "height": "--height",
    "width": "--width",
    "fps": "--fps",
    "num_inference_steps": "--steps",
    "guidance_scale": "--guidance_scale",
    "strength": "--strength",
    "image": "--image",
    "video": "--video",
    "context_length": "--context_length",
    "context_stride": "--context_stride",
    "weighting_scheme": "--weighting_scheme",
    "context_scope": "--context_scope",
}
# diffusers' FreeNoise defaults (`enable_free_noise`); the stride is capped at the window
DEFAULT_CONTEXT_STRIDE = 4
WEIGHTING_SCHEMES = ("flat", "pyramid", "delayed_reverse_sawtooth")
CONTEXT_SCOPES = ("attention", "unet")


class CommandError(Exception):
    r"""A failure at run time, reported to the user as one line (exit code 1)."""

    exit_code = EXIT_RUNTIME_ERROR


class UsageError(CommandError):
    r"""A wrong flag, value or path, reported to the user as one line (exit code 2)."""

    exit_code = EXIT_USAGE_ERROR


class _ArgumentParser(argparse.ArgumentParser):
    # argparse prints the whole usage before its error; keep errors to one line (`--help` shows the usage)
    def error(self, message: str):
        self.exit(EXIT_USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _number_type(convert: Callable[[str], float], allowed: Callable[[float], bool], description: str):
    r"""An argparse `type`: `convert(text)`, refused (argparse names the flag) unless `allowed` accepts the value."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not allowed(value):
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


# NaN fails every comparison, so the ranges below refuse it too
_positive_int = _number_type(int, lambda value: value >= 1, "a positive integer")
_seed = _number_type(int, lambda value: 0 <= value <= MAX_SEED, "an integer in [0, 2**64 - 1]")
_finite_float = _number_type(float, math.isfinite, "a finite number")
_positive_float = _number_type(float, lambda value: 0 < value < math.inf, "a positive finite number")
_unit_interval = _number_type(float, lambda value: 0 <= value <= 1, "a finite number in [0, 1]")


def _travel_key(text: str) -> tuple[int, str]:
    # an argparse `type` for `--prompt_travel`: "FRAME:PROMPT", the frame a positive integer
    frame, separator, prompt = text.partition(":")
    if not separator or not frame.strip().isdigit() or int(frame) < 1 or not prompt.strip():
        raise argparse.ArgumentTypeError(f"expected FRAME:PROMPT with FRAME an integer >= 1, got {text!r}")
    return int(frame), prompt.strip()


def _spellings(name: str) -> list[str]:
    # `--num_frames` and `--num-frames`, as users type both
    flag = f"--{name}"
    return [flag, flag.replace("_", "-")] if "_" in name else [flag]


def build_parser() -> argparse.ArgumentParser:
    r"""The `videolatent` command's parser; building it imports nothing heavy, so `--help` answers at once."""
    # `--debug` is accepted before and after the command; SUPPRESS keeps the command's parser from resetting it
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"show the full traceback of an error (or set {DEBUG_ENVIRONMENT_VARIABLE}=1)",
    )
    parser = _ArgumentParser(
        prog="videolatent",
        description="Text-to-video latent diffusion with Diffusers.",
        epilog="Exit codes: 0 success, 1 failure at run time, 2 usage error (bad flag, value or path).",
        parents=[debug],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    generate = commands.add_parser("generate", help="generate a video from a prompt", parents=[debug])
    option = generate.add_argument
    option("prompt", help="what the video shows (from frame 0, with --prompt_travel)")
    option(
        "--output",
        required=True,
        help="output file: .mp4, .gif, or a path without extension for a folder of PNGs (frame_0000.png, ...)",
    )
    option(
        "--overwrite",
        action="store_true",
        help="replace an existing output; in a folder, only its frame_NNNN.png files are replaced or removed",
    )
    option("--model", default=None, help="model folder or Hub id (default: the shipped default model)")
    option(*_spellings("negative_prompt"), default=None, help="what the video should not show")
    option(
        *_spellings("num_frames"),
        type=_positive_int,
        default=None,
        help="frames to generate (default: the model's; with --video, the video's length, or its first N frames)",
    )
    option("--height", type=_positive_int, default=None, help="height in pixels (default: the model's)")
    option("--width", type=_positive_int, default=None, help="width in pixels (default: the model's)")
    option(
        "--fps",
        type=_positive_float,
        default=None,
        help="frames per second (default: the model's, else 8)",
    )
    option("--steps", type=_positive_int, default=None, help="denoising steps (default: the model's)")
    option(
        *_spellings("guidance_scale"),
        type=_finite_float,
        default=None,
        help="classifier-free guidance (default: the model's)",
    )
    option("--scheduler", default=None, help=f"diffusers scheduler class or alias: {', '.join(SCHEDULER_ALIASES)}")
    option("--seed", type=_seed, default=None, help="random seed in [0, 2**64 - 1]")
    option("--image", default=None, help="image file to start from (image-to-video)")
    option("--video", default=None, help="video file to transform (video-to-video)")
    option("--strength", type=_unit_interval, default=None, help="video-to-video strength in [0, 1] (default: 0.8)")
    option("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    option(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "float16", "bfloat16"),
        help="weights dtype (default: float16 on GPU, float32 on CPU)",
    )
    option(
        "--offload",
        default="none",
        choices=("none", "model", "sequential"),
        help="CPU offloading through diffusers (needs an accelerator)",
    )
    long_videos = generate.add_argument_group(
        "long videos (FreeNoise windows, as diffusers' enable_free_noise)",
        "--context_length turns windowing on: each temporal attention sees windows of that many latent frames, so"
        " --num_frames is no longer capped by the model's frame-position table. Example: videolatent generate"
        ' "a red circle moving right" --prompt_travel "60:a blue circle moving right" --num_frames 121'
        " --context_length 16 --output long.mp4. --fifo denoises a queue of frames instead (FIFO-Diffusion).",
    )
    long_option = long_videos.add_argument
    long_option(
        *_spellings("context_length"),
        type=_positive_int,
        default=None,
        help="latent frames per window (at most the model's frame-position table); turns windowing on",
    )
    long_option(
        *_spellings("context_stride"),
        type=_positive_int,
        default=None,
        help=f"latent frames between window starts (default: {DEFAULT_CONTEXT_STRIDE}, at most --context_length)",
    )
    long_option(
        *_spellings("weighting_scheme"),
        default="pyramid",
        choices=WEIGHTING_SCHEMES,
        help="how overlapping windows are blended (default: pyramid)",
    )
    long_option(
        *_spellings("context_scope"),
        default=None,
        choices=CONTEXT_SCOPES,
        help="what sees one window at a time: each temporal attention (attention, the default: diffusers'"
        " FreeNoise) or the whole U-Net, called once per window (unet: memory flat in the number of frames)",
    )
    long_option(
        *_spellings("fifo"),
        action="store_true",
        help="diagonal denoising (FIFO-Diffusion) instead of FreeNoise: a queue of frames at increasing noise, each"
        " U-Net call on windows of --context_length latent frames (default: the model's frame-position table), whatever"
        " the number of frames; the queue holds --steps frames",
    )
    long_option(
        *_spellings("split_inference"),
        action="store_true",
        help="run the U-Net's layers in slices of frames and pixels, bounding what each layer adds",
    )
    long_option(
        *_spellings("prompt_travel"),
        nargs="+",
        type=_travel_key,
        default=None,
        metavar="FRAME:PROMPT",
        help="later prompts from the given frames on, interpolated from PROMPT (frame 0), e.g. '60:a blue circle'",
    )

    push = commands.add_parser(
        "push", help="upload a saved pipeline or model folder to the Hub, with its model card", parents=[debug]
    )
    push.add_argument("folder", help="a folder written by save_pretrained or a conversion script")
    push.add_argument("repo_id", help="Hub repository, 'org/name'")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    push.add_argument(*_spellings("create_pr"), action="store_true", help="open a pull request instead of committing")
    return parser


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_output(output: Path, overwrite: bool) -> None:
    r"""Refuses, before any model loads, an output that cannot be written or that exists (without `overwrite`)."""
    if output.name in ("", ".", ".."):
        raise UsageError(f"--output {output}: give a file name (.mp4, .gif) or a folder name")
    suffix = output.suffix.lower()
    if suffix and suffix not in VIDEO_EXTENSIONS:
        raise UsageError(
            f"--output {output} has extension {output.suffix!r}; use .mp4, .gif or no extension (a folder of PNGs)"
        )
    parent = output.absolute().parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--output {output}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise UsageError(f"--output {output}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--output {output}: folder {parent} is not writable")
    # what a killed earlier run left next to this output (and only there)
    remove_stale_temporaries(output)
    if suffix:
        if output.is_dir():
            raise UsageError(f"--output {output} is a folder; a {suffix} output is a file")
        if output.exists() and not overwrite:
            raise UsageError(f"--output {output} exists; pass --overwrite to replace it")
    elif output.exists():
        if not output.is_dir():
            raise UsageError(f"--output {output} is a file; an output without extension is a folder of PNGs")
        if any(output.iterdir()) and not overwrite:
            raise UsageError(
                f"--output {output} is a folder that is not empty; pass --overwrite to replace its frame_NNNN.png"
                " files (its other files are kept)"
            )


def _resolve_model(model: str | None) -> str:
    if model is None:
        if not (DEFAULT_MODEL / "model_index.json").is_file():
            raise UsageError(
                f"the default model is not installed (no folder {DEFAULT_MODEL}); pass --model with a model folder"
                " or a Hugging Face Hub id"
            )
        return str(DEFAULT_MODEL)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise UsageError(f"--model {model} has no model_index.json; pass a folder written by save_pretrained")
        return str(path)
    if path.exists():
        raise UsageError(f"--model {model} is a file; pass a model folder or a Hugging Face Hub id")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    message = f"--model {model}: no such folder, and not a Hub id ('org/name')"
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise UsageError(message)
    try:
        validate_repo_id(model)
    except HFValidationError as error:
        raise UsageError(message) from error
    return model


def _resolve_scheduler_class(name: str):
    import diffusers

    class_name = SCHEDULER_ALIASES.get(name.lower(), name)
    scheduler_class = getattr(diffusers, class_name, None)
    if scheduler_class is None or not class_name.endswith("Scheduler"):
        raise UsageError(
            f"--scheduler {name!r} is not a diffusers scheduler; use a class name such as DDIMScheduler or one of:"
            f" {', '.join(SCHEDULER_ALIASES)}"
        )
    return scheduler_class


def _check_readable(flag: str, path: str) -> None:
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path}: no such file")
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path} is not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{flag} {path}: the file is not readable")


def _read_image(path: str):
    from diffusers.utils import load_image

    _check_readable("--image", path)
    try:
        return load_image(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"--image {path}: cannot read it as an image ({_first_line(error)})") from error


def _read_video(path: str, num_frames: int | None) -> list:
    import imageio.v2 as imageio
    import PIL.Image

    _check_readable("--video", path)
    try:
        frames = imageio.mimread(path, memtest=False)
    except Exception as error:  # imageio raises many kinds of errors for unreadable files
        raise UsageError(
            f"--video {path}: cannot read it as a video ({type(error).__name__}: {_first_line(error)})"
        ) from error
    if len(frames) == 0:
        raise UsageError(f"--video {path}: the file holds no frames")
    if num_frames is not None:
        if num_frames > len(frames):
            raise UsageError(
                f"--num_frames {num_frames} is more than the {len(frames)} frames of --video {path}; pass at most"
                f" {len(frames)}, or leave --num_frames out to use the whole video"
            )
        frames = frames[:num_frames]
    return [PIL.Image.fromarray(frame).convert("RGB") for frame in frames]


def _resolve_device(device: str | None, dtype_name: str):
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device_type = torch.device(device).type
    except RuntimeError as error:
        raise UsageError(f"--device {device!r} is not a torch device ({_first_line(error)})") from error
    if device_type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available")
    if dtype_name == "auto":
        dtype = torch.float16 if device_type != "cpu" else torch.float32
    else:
        dtype = getattr(torch, dtype_name)
    return device, dtype


@contextlib.contextmanager
def _quiet_libraries(debug: bool):
    r"""Keeps diffusers' and transformers' warnings (and, off a terminal, their loading bars) out of the output."""
    if debug:
        yield
        return
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    previous = []
    for library in (diffusers_logging, transformers_logging):
        previous.append((library, library.get_verbosity(), library.is_progress_bar_enabled()))
        library.set_verbosity_error()
        if not sys.stderr.isatty():
            library.disable_progress_bar()
    try:
        yield
    finally:
        for library, verbosity, progress_bar in previous:
            library.set_verbosity(verbosity)
            if progress_bar:
                library.enable_progress_bar()


def _load_pipeline(model: str, dtype):
    from .pipelines import VideoLatentPipeline

    try:
        return VideoLatentPipeline.from_pretrained(model, dtype=dtype)
    except Exception as error:  # from_pretrained raises OSError, ValueError, EnvironmentError and more
        raise CommandError(
            f"--model {model}: cannot load the pipeline ({type(error).__name__}: {_first_line(error)})"
        ) from error


def _words_outside(prompt: str, vocabulary: list[str]) -> list[str]:
    known = {word.lower() for word in vocabulary}
    return [word for word in re.findall(r"[\w']+", prompt.lower()) if word not in known]


def _pipeline_usage_error(error: Exception, video_frames: int | None, num_frames: int | None) -> UsageError:
    # the pipeline's input checks name the argument in backquotes; name the flag that set it
    message = _first_line(error)
    # the pipeline's advice for longer videos, in the command's terms
    message = re.sub(r"`pipe\.enable_free_noise\(context_length=(\d+)\)`", r"pass --context_length \1", message)
    message = message.replace("`pipe.enable_fifo_denoising()`", "--fifo")
    for name in re.findall(r"`(\w+)`", message):
        flag = PIPELINE_ARGUMENT_FLAGS.get(name)
        if flag is None:
            continue
        if name == "num_frames" and num_frames is None and video_frames is not None:
            flag = f"--num_frames (the {video_frames} frames of --video; pass --num_frames to use fewer)"
        return UsageError(f"{flag}: {message}")
    return UsageError(message)


def _travelling_prompt(prompt: str, travel: list[tuple[int, str]] | None) -> str | dict[int, str]:
    # PROMPT from frame 0, then each --prompt_travel FRAME:PROMPT from its frame on
    if not travel:
        return prompt
    frames = [frame for frame, _ in travel]
    repeated = sorted({frame for frame in frames if frames.count(frame) > 1})
    if repeated:
        raise UsageError(f"--prompt_travel gives frame {repeated[0]} more than once; give each frame one prompt")
    return {0: prompt, **dict(travel)}


def _free_noise_settings(args: argparse.Namespace) -> dict | None:
    # the `enable_free_noise` arguments of --context_length, --context_stride and --weighting_scheme
    if args.fifo:  # FIFO's own windows: none of FreeNoise's settings apply
        for flag, given in (
            ("--context_stride", args.context_stride is not None),
            ("--weighting_scheme", args.weighting_scheme != "pyramid"),
            ("--context_scope", args.context_scope is not None),
            ("--split_inference", args.split_inference),
        ):
            if given:
                raise UsageError(f"{flag} applies to FreeNoise windows, not to --fifo; leave it out")
        return None
    if args.context_length is None:
        for flag, given in (
            ("--context_stride", args.context_stride is not None),
            ("--split_inference", args.split_inference),
            ("--context_scope", args.context_scope is not None),
        ):
            if given:
                raise UsageError(f"{flag} applies to windowed generation; pass --context_length too")
        return None
    stride = (
        args.context_stride if args.context_stride is not None else min(DEFAULT_CONTEXT_STRIDE, args.context_length)
    )
    if stride > args.context_length:
        raise UsageError(
            f"--context_stride {stride} is more than --context_length {args.context_length}; windows would leave"
            " frames out"
        )
    return {
        "context_length": args.context_length,
        "context_stride": stride,
        "weighting_scheme": args.weighting_scheme,
        "context_scope": args.context_scope or "attention",
    }


def _write_mp4(frames: list, path: str, fps: float) -> None:
    import imageio
    import numpy as np

    # diffusers' `export_to_video` cannot quiet ffmpeg, which would write to the terminal; its settings otherwise.
    # macro_block_size=1 keeps the exact size (the pipeline's sizes are multiples of 8).
    with imageio.get_writer(
        path, format="FFMPEG", fps=fps, quality=5.0, macro_block_size=1, ffmpeg_log_level="quiet"
    ) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame))


def _keep_unless_frame(relative_path: str, new_folder: str) -> bool:
    # in an overwritten folder of PNGs, the frames of an earlier run go; the user's own files stay
    return FRAME_FILE_PATTERN.fullmatch(relative_path) is None


def _write_frames(frames: list, output: Path, fps: float, overwrite: bool) -> None:
    r"""
    Writes PIL frames to `output` through a temporary sibling, so that a failure or a kill leaves nothing. An output
    that another process wrote while this one generated is kept (a usage error, as when it existed at the start).
    """
    from diffusers.utils import export_to_gif

    suffix = output.suffix.lower()
    try:
        if suffix:
            with atomic_file(output, overwrite=overwrite) as temporary:
                if suffix == ".gif":
                    export_to_gif(frames, temporary, fps=fps)
                else:
                    _write_mp4(frames, temporary, fps)
            return
        with atomic_folder(output, overwrite=overwrite, keep_existing=True, keep=_keep_unless_frame) as temporary:
            for index, frame in enumerate(frames):
                frame.save(os.path.join(temporary, FRAME_FILE_NAME.format(index=index)))
    except FileExistsError as error:
        if overwrite or not os.path.lexists(output):
            raise
        raise UsageError(
            f"--output {output} was written by another process while this one generated; it is kept. Pass "
            "--overwrite to replace it, or choose another --output"
        ) from error


def generate(args: argparse.Namespace) -> str:
    r"""Runs `videolatent generate`; returns the line printed on success."""
    start = time.perf_counter()

    # 1. check everything that needs no model
    output = Path(args.output)
    _check_output(output, args.overwrite)
    model = _resolve_model(args.model)
    if args.image is not None and args.video is not None:
        raise UsageError("pass only one of --image (image-to-video) and --video (video-to-video)")
    if args.strength is not None and args.video is None:
        raise UsageError(f"--strength {args.strength} applies only to video-to-video; pass --video too")
    image = _read_image(args.image) if args.image is not None else None
    video = _read_video(args.video, args.num_frames) if args.video is not None else None
    scheduler_class = _resolve_scheduler_class(args.scheduler) if args.scheduler is not None else None
    device, dtype = _resolve_device(args.device, args.dtype)
    prompt = _travelling_prompt(args.prompt, args.prompt_travel)
    free_noise = _free_noise_settings(args)

    # 2. load the pipeline
    with _quiet_libraries(args.debug):
        pipe = _load_pipeline(model, dtype)
    if scheduler_class is not None:
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    if args.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif args.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=not sys.stderr.isatty())
    try:
        if free_noise is not None:
            pipe.enable_free_noise(**free_noise)
        if args.fifo:
            pipe.enable_fifo_denoising(context_length=args.context_length)
        if args.split_inference:
            pipe.enable_free_noise_split_inference()
    except (ValueError, TypeError) as error:
        raise _pipeline_usage_error(error, None, args.num_frames) from error
    vocabulary = (pipe.config.get("generation_defaults") or {}).get("vocabulary")
    prompts = prompt.values() if isinstance(prompt, dict) else [prompt]
    unknown_words = [word for text in prompts for word in _words_outside(text, vocabulary)] if vocabulary else []
    if unknown_words:
        print(
            f"videolatent: warning: {', '.join(repr(word) for word in unknown_words)} not in the model's vocabulary "
            f"({' '.join(vocabulary)}); the video may not follow the prompt",
            file=sys.stderr,
        )

    # 3. generate, passing on only the options given: the pipeline's defaults are the model's recommended settings
    import torch

    call_kwargs = {"negative_prompt": args.negative_prompt, "image": image}
    for name, value in (
        ("height", args.height),
        ("width", args.width),
        ("fps", args.fps),
        ("num_inference_steps", args.steps),
        ("guidance_scale", args.guidance_scale),
    ):
        if value is not None:
            call_kwargs[name] = value
    if video is not None:
        call_kwargs.update(video=video, num_frames=len(video))
        if args.strength is not None:
            call_kwargs["strength"] = args.strength
    elif args.num_frames is not None:
        call_kwargs["num_frames"] = args.num_frames
    if args.seed is not None:
        call_kwargs["generator"] = torch.Generator("cpu").manual_seed(args.seed)
    try:
        with _quiet_libraries(args.debug):
            frames = pipe(prompt, output_type="np", **call_kwargs).frames[0]
    except (ValueError, TypeError) as error:
        if isinstance(prompt, dict) and "`prompt`" in str(error):
            raise UsageError(f"--prompt_travel: {_first_line(error)}") from error
        video_frames = len(video) if video is not None else None
        raise _pipeline_usage_error(error, video_frames, args.num_frames) from error

    # 4. check and write
    import numpy as np
    from diffusers.utils import numpy_to_pil

    if not np.isfinite(frames).all():
        raise CommandError(
            "the decoded frames hold NaN or infinite values (often from a too large --guidance_scale); nothing was"
            " written"
        )
    fps = pipe.resolve_generation_settings(fps=args.fps)["fps"]
    _write_frames(numpy_to_pil(frames), output, fps, args.overwrite)
    seconds = time.perf_counter() - start
    kind = "folder of PNGs" if not output.suffix else output.suffix[1:]
    return f"Wrote {len(frames)} frames ({kind}) to {output} in {seconds:.1f} s"


def push(args: argparse.Namespace) -> str:
    r"""Runs `videolatent push`; returns the line printed on success."""
    from .hub import push_folder_to_hub

    if not Path(args.folder).is_dir():
        raise UsageError(f"FOLDER {args.folder} is not a folder")
    try:
        commit = push_folder_to_hub(
            args.folder, args.repo_id, private=args.private or None, revision=args.revision, create_pr=args.create_pr
        )
    except (ValueError, TypeError) as error:
        raise UsageError(_first_line(error)) from error
    return f"Uploaded {args.folder} to {getattr(commit, 'commit_url', args.repo_id)}"


def main(argv: list[str] | None = None) -> int:
    r"""
    Runs the `videolatent` command.

    Args:
        argv (`list[str]`, *optional*):
            The arguments without the program name; `sys.argv[1:]` when not given.

    Returns:
        `int`: The exit code: 0 on success (and for `--help`, `--version`), 1 for a failure at run time, 2 for a usage
        error; an error is reported as one line on stderr, with its traceback before it under `--debug`.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:
        # argparse exits after `--help`, `--version` and usage errors; return the code as for any other outcome
        if exit_request.code is None:
            return 0
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE_ERROR
    args.debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "") not in ("", "0")
    try:
        with stop_on_signals():  # SIGTERM unwinds like Ctrl-C: the output is complete or absent, no temporary left
            message = generate(args) if args.command == "generate" else push(args)
    except StopRequested as stop:
        print(f"videolatent: stopped by {stop.signal_name}; nothing half-written is left", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("videolatent: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        if isinstance(error, CommandError):
            print(f"videolatent: error: {error}", file=sys.stderr)
            return error.exit_code
        print(f"videolatent: error: {type(error).__name__}: {_first_line(error)}", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    print(message)
    return 0

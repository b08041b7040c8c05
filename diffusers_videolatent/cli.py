"""The `videolatent` command (also `python -m diffusers_videolatent`).

    videolatent generate "a red panda climbing a tree" --output panda.mp4

Only parsing, reading and writing files, and printing live here; everything about models is the pipeline's.
Errors come out as one line on stderr with exit code 2, and nothing is left half-written: the output is written to a
temporary file (or folder) next to its destination and moved into place once complete.
"""

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path


DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"
VIDEO_EXTENSIONS = (".mp4", ".gif")

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


class CommandError(Exception):
    """An error reported to the user as one line, without a traceback."""


class _ArgumentParser(argparse.ArgumentParser):
    # argparse prints the whole usage before its error; keep errors to one line (`--help` shows the usage)
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="videolatent", description="Text-to-video latent diffusion with Diffusers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    generate = commands.add_parser("generate", help="generate a video from a prompt")
    generate.add_argument("prompt", help="what the video shows")
    generate.add_argument(
        "--output", required=True, help="output file: .mp4, .gif, or a path without extension for a folder of PNGs"
    )
    generate.add_argument("--model", default=None, help="model folder or Hub id (default: the shipped default model)")
    generate.add_argument("--negative_prompt", default=None, help="what the video should not show")
    generate.add_argument("--num_frames", type=int, default=None, help="frames to generate (default: the pipeline's)")
    generate.add_argument("--height", type=int, default=None, help="height in pixels")
    generate.add_argument("--width", type=int, default=None, help="width in pixels")
    generate.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frames per second (default: the model's recommended setting, else 8)",
    )
    generate.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps (default: the model's recommended setting, else 50)",
    )
    generate.add_argument(
        "--guidance_scale",
        type=float,
        default=None,
        help="classifier-free guidance (default: the model's recommended setting, else 7.5)",
    )
    generate.add_argument(
        "--scheduler", default=None, help=f"diffusers scheduler class or alias: {', '.join(SCHEDULER_ALIASES)}"
    )
    generate.add_argument("--seed", type=int, default=None, help="random seed")
    generate.add_argument("--image", default=None, help="image file to start from (image-to-video)")
    generate.add_argument("--video", default=None, help="video file to transform (video-to-video)")
    generate.add_argument("--strength", type=float, default=0.8, help="video-to-video strength in [0, 1]")
    generate.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    generate.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "float16", "bfloat16"),
        help="weights dtype (default: float16 on GPU, float32 on CPU)",
    )
    generate.add_argument(
        "--offload",
        default="none",
        choices=("none", "model", "sequential"),
        help="CPU offloading through diffusers (needs an accelerator)",
    )

    push = commands.add_parser("push", help="upload a saved pipeline or model folder to the Hub, with its model card")
    push.add_argument("folder", help="a folder written by save_pretrained or a conversion script")
    push.add_argument("repo_id", help="Hub repository, 'org/name'")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    push.add_argument("--create_pr", action="store_true", help="open a pull request instead of committing")
    return parser


def _check_output(output: Path) -> None:
    if output.suffix and output.suffix.lower() not in VIDEO_EXTENSIONS:
        raise CommandError(
            f"--output {output} has extension {output.suffix!r}; use .mp4, .gif or no extension (a folder of PNGs)"
        )
    if not output.parent.is_dir():
        raise CommandError(f"--output {output}: folder {output.parent} does not exist")


def _resolve_model(model: str | None) -> str:
    if model is not None:
        return model
    if not DEFAULT_MODEL.is_dir():
        raise CommandError(
            f"the default model is not installed (no folder {DEFAULT_MODEL}); pass --model with a model folder or a"
            " Hugging Face Hub id"
        )
    return str(DEFAULT_MODEL)


def _words_outside(prompt: str, vocabulary: list[str]) -> list[str]:
    known = {word.lower() for word in vocabulary}
    return [word for word in re.findall(r"[\w']+", prompt.lower()) if word not in known]


def _resolve_scheduler_class(name: str):
    import diffusers

    class_name = SCHEDULER_ALIASES.get(name.lower(), name)
    scheduler_class = getattr(diffusers, class_name, None)
    if scheduler_class is None or not class_name.endswith("Scheduler"):
        raise CommandError(
            f"--scheduler {name!r} is not a diffusers scheduler; use a class name such as DDIMScheduler or one of:"
            f" {', '.join(SCHEDULER_ALIASES)}"
        )
    return scheduler_class


def _read_image(path: str):
    import PIL.Image

    try:
        with PIL.Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise CommandError(f"--image {path}: cannot read it as an image ({error})") from None


def _read_video(path: str) -> list:
    import imageio.v2 as imageio
    import PIL.Image

    try:
        frames = imageio.mimread(path, memtest=False)
    except Exception as error:  # imageio raises many kinds of errors for unreadable files
        raise CommandError(f"--video {path}: cannot read it as a video ({type(error).__name__}: {error})") from None
    if len(frames) == 0:
        raise CommandError(f"--video {path}: the file holds no frames")
    return [PIL.Image.fromarray(frame).convert("RGB") for frame in frames]


def _default_permissions(path: str, mode: int) -> None:
    # `tempfile` creates private files and folders; the result should get the permissions of any new file
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _write_frames(frames: list, output: Path, fps: float) -> None:
    """Writes PIL frames to `output` through a temporary sibling, so that a failure leaves nothing behind."""
    from diffusers.utils import export_to_gif, export_to_video

    suffix = output.suffix.lower()
    if suffix:
        handle, temporary = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=suffix, dir=output.parent)
        os.close(handle)
        try:
            if suffix == ".gif":
                export_to_gif(frames, temporary, fps=max(1, round(fps)))
            else:
                # macro_block_size=1: keep the exact size (the pipeline's sizes are multiples of 8 anyway)
                export_to_video(frames, temporary, fps=max(1, round(fps)), macro_block_size=1)
            _default_permissions(temporary, 0o666)
            os.replace(temporary, output)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return

    temporary_folder = tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent)
    try:
        for index, frame in enumerate(frames):
            frame.save(os.path.join(temporary_folder, f"frame_{index:04d}.png"))
        if output.is_dir():
            shutil.rmtree(output)
        elif output.exists():
            raise CommandError(f"--output {output} exists and is not a folder")
        _default_permissions(temporary_folder, 0o777)
        os.replace(temporary_folder, output)
    finally:
        if os.path.exists(temporary_folder):
            shutil.rmtree(temporary_folder)


def generate(args: argparse.Namespace) -> str:
    import torch

    from .pipelines import VideoLatentPipeline

    start = time.perf_counter()
    output = Path(args.output)
    _check_output(output)
    model = _resolve_model(args.model)
    if args.image is not None and args.video is not None:
        raise CommandError("pass only one of --image (image-to-video) and --video (video-to-video)")
    image = _read_image(args.image) if args.image is not None else None
    video = _read_video(args.video) if args.video is not None else None
    scheduler_class = _resolve_scheduler_class(args.scheduler) if args.scheduler is not None else None

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.dtype == "auto":
        dtype = torch.float16 if torch.device(device).type != "cpu" else torch.float32
    else:
        dtype = getattr(torch, args.dtype)

    pipe = VideoLatentPipeline.from_pretrained(model, dtype=dtype)
    if scheduler_class is not None:
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    if args.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif args.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)

    # options not given take the model's recommended settings (`generation_defaults` of its `model_index.json`)
    vocabulary = (pipe.config.get("generation_defaults") or {}).get("vocabulary")
    unknown_words = _words_outside(args.prompt, vocabulary) if vocabulary else []
    if unknown_words:
        print(
            f"videolatent: warning: {', '.join(repr(word) for word in unknown_words)} not in the model's vocabulary "
            f"({' '.join(vocabulary)}); the video may not follow the prompt",
            file=sys.stderr,
        )
    call_settings = pipe.resolve_generation_settings(
        num_frames=args.num_frames,
        height=args.height,
        width=args.width,
        fps=args.fps,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
    )
    if video is not None and args.num_frames is None:
        call_settings["num_frames"] = len(video)

    generator = torch.Generator("cpu").manual_seed(args.seed) if args.seed is not None else None
    call_kwargs = {}
    if video is not None:
        call_kwargs.update(video=video, strength=args.strength)
    frames = pipe(
        args.prompt,
        negative_prompt=args.negative_prompt,
        image=image,
        generator=generator,
        output_type="pil",
        **call_settings,
        **call_kwargs,
    ).frames[0]

    _write_frames(frames, output, call_settings["fps"])
    seconds = time.perf_counter() - start
    kind = "folder of PNGs" if not output.suffix else output.suffix[1:]
    return f"Wrote {len(frames)} frames ({kind}) to {output} in {seconds:.1f} s"


def push(args: argparse.Namespace) -> str:
    from .hub import push_folder_to_hub

    if not Path(args.folder).is_dir():
        raise CommandError(f"FOLDER {args.folder} is not a folder")
    commit = push_folder_to_hub(
        args.folder, args.repo_id, private=args.private or None, revision=args.revision, create_pr=args.create_pr
    )
    return f"Uploaded {args.folder} to {getattr(commit, 'commit_url', args.repo_id)}"


def main(argv: list[str] | None = None) -> int:
    r"""
    Runs the `videolatent` command.

    Args:
        argv (`list[str]`, *optional*):
            The arguments without the program name; `sys.argv[1:]` when not given.

    Returns:
        `int`: The exit code: 0 on success, 2 on any error (reported as one line on stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        message = generate(args) if args.command == "generate" else push(args)
    except CommandError as error:
        print(f"videolatent: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        # the pipeline's input checks name the argument; loading errors name the file or the model
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else ""
        print(f"videolatent: error: {type(error).__name__}: {first_line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("videolatent: interrupted", file=sys.stderr)
        return 130
    print(message)
    return 0

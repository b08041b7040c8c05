"""Model cards for saved `VideoLatentPipeline` folders and for our single models.

The card is rendered from one Jinja template shipped inside the package (`templates/model_card.md`; the top-level
`model_cards/template.md` of a source checkout is a link to it) with `huggingface_hub.ModelCard.from_template`. Every
number in it (latent channels, compression ratios, the frame rule, the size multiple) is read from the configs saved in
the folder, never typed by hand.

`library_name` is `diffusers-videolatent`, not `diffusers`: the Hub shows a `DiffusionPipeline.from_pretrained(...)`
snippet without `trust_remote_code=True` for `library_name: diffusers`, and our folders load through diffusers only with
it (see `remote_code.py`). The tag `diffusers` keeps the repository findable next to diffusers models, and the card
shows the snippets that work.
"""

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData, hf_hub_download

from . import __version__
from .atomic import atomic_file
from .generation_defaults import GENERATION_SETTING_KEYS, resolve_generation_settings
from .geometry import (
    check_num_frames,
    largest_num_frames,
    num_latent_frames,
    num_pixel_frames,
    size_multiple,
    unet_downsample_factor,
    unet_max_latent_frames,
    vae_compression_ratios_from_config,
)
from .remote_code import plain_config


LIBRARY_NAME = "diffusers-videolatent"
PACKAGE_NAME = "diffusers_videolatent"
PIPELINE_CLASS_NAME = "VideoLatentPipeline"
MODEL_CLASS_NAMES = ("UNetSpatioTemporalModel", "AutoencoderKLVideo")
DEFAULT_TAGS = ("diffusers-videolatent", "diffusers", "text-to-video", "video-latent-diffusion")
DEFAULT_PROMPT = "a red circle moving right"
DEFAULT_INSTALL_HINT = "from a checkout of its repository: `pip install .`"
TEMPLATE_RESOURCE = ("templates", "model_card.md")


@dataclass
class ConversionProvenance:
    r"""
    Where a converted checkpoint came from and how closely it was checked.

    Args:
        script (`str`):
            The conversion script's file name, e.g. `conversion_scripts/convert_text_to_video_sd.py`.
        sources (`list[tuple[str, str]]`):
            `(role, path or Hub id)` pairs, e.g. `("Base pipeline", "ali-vilab/text-to-video-ms-1.7b")`.
        tolerance (`float` or `str`, *optional*):
            The largest absolute difference the verification accepted.
        max_abs_diff (`float`, *optional*):
            The largest absolute difference measured; `None` when the conversion was not verified.
        verification (`str`, defaults to `""`):
            What was compared, in a few words (model, steps, seed, output type).
        command (`str`, *optional*):
            The command line that produced the checkpoint.
        source_licenses (`dict[str, str]`, *optional*):
            License of each source, by source id, as read from the source's own card.
    """

    script: str
    sources: list[tuple[str, str]]
    tolerance: float | str | None = None
    max_abs_diff: float | None = None
    verification: str = ""
    command: str | None = None
    source_licenses: dict[str, str] = field(default_factory=dict)


def template_path() -> Path:
    """Path of the card template shipped inside the installed package (works from a source checkout too)."""
    resource = resources.files(PACKAGE_NAME).joinpath(*TEMPLATE_RESOURCE)
    return Path(str(resource))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"`{path}` is not valid JSON ({error}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"`{path}` should hold a JSON object, got {type(data).__name__}.")
    return data


def folder_kind(folder: str | os.PathLike) -> str:
    r"""
    Tell which of our saved formats a folder holds, or raise.

    Args:
        folder (`str` or `os.PathLike`):
            A folder written by `save_pretrained` of `VideoLatentPipeline`, `UNetSpatioTemporalModel` or
            `AutoencoderKLVideo`.

    Returns:
        `str`: `"pipeline"` (a `model_index.json` naming `VideoLatentPipeline`, every listed component present) or the
        model's class name (a `config.json` naming one of our models).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"`folder` should be an existing directory, got {str(folder)!r}.")
    model_index = folder / "model_index.json"
    config = folder / "config.json"
    if model_index.is_file():
        index = plain_config(_read_json(model_index))
        class_name = index.get("_class_name")
        if class_name != PIPELINE_CLASS_NAME:
            raise ValueError(
                f"`{model_index}` has `_class_name` {class_name!r}; expected {PIPELINE_CLASS_NAME!r} (this is not a "
                "VideoLatentPipeline folder)."
            )
        missing = [
            name
            for name, entry in index.items()
            if not name.startswith("_")
            and isinstance(entry, list)
            and entry[0] is not None
            and not (folder / name).is_dir()
        ]
        if missing:
            raise ValueError(f"`{folder}` lacks the component sub-folder(s) {missing} listed in model_index.json.")
        return "pipeline"
    if config.is_file():
        class_name = _read_json(config).get("_class_name")
        if class_name not in MODEL_CLASS_NAMES:
            raise ValueError(
                f"`{config}` has `_class_name` {class_name!r}; expected one of {list(MODEL_CLASS_NAMES)} or a "
                f"pipeline folder with a model_index.json naming {PIPELINE_CLASS_NAME!r}."
            )
        return class_name
    raise ValueError(
        f"`{folder}` holds neither model_index.json nor config.json; expected a folder written by `save_pretrained`."
    )


def _vae_ratios(config: dict[str, Any]) -> tuple[int | None, int | None]:
    try:
        spatial, temporal, _ = vae_compression_ratios_from_config(config)
    except ValueError:
        return None, None
    return spatial, temporal


def _unet_downsample_factor(config: dict[str, Any]) -> int | None:
    return unet_downsample_factor(config) if "block_out_channels" in config else None


def frame_rule(temporal_ratio: int) -> str:
    """The sentence that tells which `num_frames` a VAE with this temporal compression ratio accepts."""
    if temporal_ratio == 1:
        return (
            "Any number of frames works: the VAE encodes every frame on its own (temporal ratio 1), so "
            "`F_lat = F` and memory and time grow with the number of frames."
        )
    examples = ", ".join(str(num_pixel_frames(count, temporal_ratio)) for count in range(1, 6))
    return (
        f"The VAE is causal and encodes the first frame on its own, so `num_frames` must be `1 + k * "
        f"{temporal_ratio}` ({examples}, ...), and a video of `F` frames becomes `F_lat = (F - 1) // "
        f"{temporal_ratio} + 1` latent frames. An image is a 1-frame video."
    )


def _describe_folder(folder: Path, kind: str) -> dict[str, Any]:
    """Read the saved configs: components, VAE ratios, latent channels, U-Net facts, tokenizer length."""
    facts: dict[str, Any] = {"components": [], "vae": None, "unet": None, "max_length": None}
    if kind == "pipeline":
        index = plain_config(_read_json(folder / "model_index.json"))
        for name, entry in index.items():
            if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
                continue
            facts["components"].append((name, entry[0], entry[1]))
        entries = {name: (library, class_name) for name, library, class_name in facts["components"]}
        if "vae" in entries and (folder / "vae" / "config.json").is_file():
            facts["vae"] = (entries["vae"][1], _read_json(folder / "vae" / "config.json"))
        if "unet" in entries and (folder / "unet" / "config.json").is_file():
            facts["unet"] = (entries["unet"][1], _read_json(folder / "unet" / "config.json"))
        tokenizer_config = folder / "tokenizer" / "tokenizer_config.json"
        if tokenizer_config.is_file():
            facts["max_length"] = _read_json(tokenizer_config).get("model_max_length")
        facts["generation_defaults"] = index.get("generation_defaults") or {}
    else:
        config = _read_json(folder / "config.json")
        model = (kind, config)
        facts["vae" if kind == "AutoencoderKLVideo" else "unet"] = model
    return facts


def _recommended_settings(
    facts: dict[str, Any], spatial: int | None, temporal: int | None, recommended: dict[str, Any] | None
) -> dict[str, Any]:
    recommended = dict(recommended or {})
    unknown = sorted(set(recommended) - set(GENERATION_SETTING_KEYS))
    if unknown:
        raise ValueError(f"`recommended` has unknown key(s) {unknown}; allowed: {list(GENERATION_SETTING_KEYS)}.")
    # what a plain call of the saved pipeline uses, given the caller's recommendations
    unet_config = facts["unet"][1] if facts["unet"] is not None else None
    settings = resolve_generation_settings(recommended, facts.get("generation_defaults"), unet_config, spatial)
    num_frames = settings.get("num_frames")
    if num_frames is not None and temporal is not None:
        check_num_frames(num_frames, temporal, name="recommended['num_frames']")
    return {key: settings[key] for key in GENERATION_SETTING_KEYS if key in settings}


def _format_float(value: float) -> str:
    return f"{value:.3g}" if value != 0 else "0"


def _pipeline_snippet(repo_id: str, settings: dict[str, Any], prompt: str, uses_fps: bool) -> str:
    call_arguments = [f"    {json.dumps(prompt)},"]
    for key in ("num_frames", "height", "width", "num_inference_steps", "guidance_scale"):
        if key in settings:
            call_arguments.append(f"    {key}={settings[key]!r},")
    if uses_fps and "fps" in settings:
        call_arguments.append(f"    fps={settings['fps']!r},")
    call_arguments.append("    generator=torch.Generator().manual_seed(0),")
    lines = [
        "import torch",
        "from diffusers.utils import export_to_video",
        "",
        "from diffusers_videolatent import VideoLatentPipeline",
        "",
        'device = "cuda" if torch.cuda.is_available() else "cpu"',
        'dtype = torch.float16 if device == "cuda" else torch.float32',
        f"pipe = VideoLatentPipeline.from_pretrained({json.dumps(repo_id)}, torch_dtype=dtype).to(device)",
        "frames = pipe(",
        *call_arguments,
        ").frames[0]",
        f'export_to_video(frames, "video.mp4", fps={settings.get("fps", 8)!r})',
    ]
    return "\n".join(lines)


def _unet_snippet(repo_id: str, config: dict[str, Any], downsample_factor: int | None) -> str:
    size = config.get("sample_size") if isinstance(config.get("sample_size"), int) else 4 * (downsample_factor or 8)
    channels = config["in_channels"]
    extra = []
    if config.get("conditioning_channels"):
        extra.append(f"    conditioning_latents=torch.randn(1, {config['conditioning_channels']}, 5, {size}, {size}),")
    if config.get("use_fps_conditioning"):
        extra.append("    fps=8,")
    lines = [
        "import torch",
        "",
        "from diffusers_videolatent import UNetSpatioTemporalModel",
        "",
        f"unet = UNetSpatioTemporalModel.from_pretrained({json.dumps(repo_id)})",
        f"sample = torch.randn(1, {channels}, 5, {size}, {size})  # [B, C, F_lat, H_lat, W_lat]",
        f"encoder_hidden_states = torch.randn(1, 77, {config['cross_attention_dim']})  # once per video",
        "noise_pred = unet(",
        "    sample,",
        "    torch.tensor([999]),",
        "    encoder_hidden_states,",
        *extra,
        ").sample",
    ]
    return "\n".join(lines)


def _vae_snippet(repo_id: str, spatial: int | None, temporal: int | None) -> str:
    num_frames = 1 + 2 * (temporal or 1)
    size = 8 * (spatial or 8)
    lines = [
        "import torch",
        "",
        "from diffusers_videolatent import AutoencoderKLVideo",
        "",
        f"vae = AutoencoderKLVideo.from_pretrained({json.dumps(repo_id)})",
        f"video = torch.rand(1, 3, {num_frames}, {size}, {size}) * 2 - 1  # [B, 3, F, H, W] in [-1, 1]",
        "latents = vae.encode(video).latent_dist.sample()",
        "reconstruction = vae.decode(latents).sample",
    ]
    return "\n".join(lines)


def create_model_card(
    folder: str | os.PathLike,
    repo_id: str | None = None,
    *,
    description: str | None = None,
    base_model: str | list[str] | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    recommended: dict[str, Any] | None = None,
    conversion: ConversionProvenance | None = None,
    limitations: list[str] | None = None,
    prompt: str = DEFAULT_PROMPT,
    install_hint: str = DEFAULT_INSTALL_HINT,
) -> ModelCard:
    r"""
    Render the model card of a saved `VideoLatentPipeline`, `UNetSpatioTemporalModel` or `AutoencoderKLVideo` folder.

    Args:
        folder (`str` or `os.PathLike`):
            The folder written by `save_pretrained`; its configs supply the latent layout and ratios.
        repo_id (`str`, *optional*):
            The Hub id (or path) the usage snippet loads; defaults to `folder` as given.
        description (`str`, *optional*):
            One paragraph under the title.
        base_model (`str` or `list[str]`, *optional*):
            Hub id(s) of the model(s) this one was converted or fine-tuned from (YAML `base_model`).
        license (`str`, *optional*):
            Hub license identifier (e.g. `"apache-2.0"`), carried over from the source for a conversion.
        tags (`list[str]`, *optional*):
            Extra tags, added after the package's own.
        recommended (`dict`, *optional*):
            Recommended `num_frames`, `height`, `width`, `fps`, `num_inference_steps`, `guidance_scale`; missing ones
            default to what a plain call of the saved pipeline uses: its `generation_defaults` (in
            `model_index.json`), else the pipeline's fallbacks and the U-Net's `sample_size` times the VAE's spatial
            ratio.
        conversion (`ConversionProvenance`, *optional*):
            Source ids, script, command and verified tolerance of a conversion.
        limitations (`list[str]`, *optional*):
            Extra limitations, listed after the general ones.
        prompt (`str`, defaults to `"a red circle moving right"`):
            The prompt of the usage snippet.
        install_hint (`str`, *optional*):
            How to install the package, in a few words.

    Returns:
        `huggingface_hub.ModelCard`: the card; `card.save(path)` writes it.
    """
    kind = folder_kind(folder)
    folder_path = Path(folder)
    repo_id = repo_id if repo_id is not None else str(folder)
    facts = _describe_folder(folder_path, kind)

    # 1. latent layout from the VAE config
    spatial = temporal = None
    latent = None
    if facts["vae"] is not None:
        vae_class, vae_config = facts["vae"]
        spatial, temporal = _vae_ratios(vae_config)
    downsample_factor = max_latent_frames = None
    if facts["unet"] is not None:
        downsample_factor = _unet_downsample_factor(facts["unet"][1])
        max_latent_frames = unet_max_latent_frames(facts["unet"][1])

    # 2. recommended settings and the usage snippet
    settings = _recommended_settings(facts, spatial, temporal, recommended) if kind == "pipeline" else {}
    if kind == "pipeline":
        uses_fps = bool(facts["unet"] and facts["unet"][1].get("use_fps_conditioning"))
        snippet = _pipeline_snippet(repo_id, settings, prompt, uses_fps)
    elif kind == "UNetSpatioTemporalModel":
        snippet = _unet_snippet(repo_id, facts["unet"][1], downsample_factor)
    else:
        snippet = _vae_snippet(repo_id, spatial, temporal)

    if facts["vae"] is not None and spatial is not None and temporal is not None:
        vae_class, vae_config = facts["vae"]
        latent = {
            "vae_class": vae_class,
            "latent_channels": vae_config.get("latent_channels"),
            "spatial_ratio": spatial,
            "temporal_ratio": temporal,
            "scaling_factor": vae_config.get("scaling_factor"),
            "shift_factor": vae_config.get("shift_factor"),
            "unet_downsample_factor": downsample_factor,
            "size_multiple": size_multiple(spatial, downsample_factor) if downsample_factor else None,
            "max_latent_frames": max_latent_frames,
            "max_num_frames": largest_num_frames(max_latent_frames, temporal) if max_latent_frames else None,
            "frame_rule": frame_rule(temporal),
        }
        if {"num_frames", "height", "width"} <= set(settings):
            latent.update(
                example_frames=settings["num_frames"],
                example_height=settings["height"],
                example_width=settings["width"],
                example_shape=[
                    1,
                    vae_config.get("latent_channels"),
                    num_latent_frames(settings["num_frames"], temporal),
                    settings["height"] // spatial,
                    settings["width"] // spatial,
                ],
            )

    # 3. limitations: general ones first, then what the configs reveal, then the caller's
    lines = [
        "Generated videos can be inaccurate, biased or offensive: the model inherits the biases and gaps of its "
        "training data" + (" and of the source checkpoints." if conversion else "."),
        "Not intended for realistic depictions of real people or events, or for generating misinformation.",
    ]
    if temporal == 1:
        lines.append(
            "The VAE compresses no time (temporal ratio 1): every frame is its own latent frame, so long videos cost "
            "memory and time in proportion to their length."
        )
    if facts["max_length"]:
        lines.append(f"Prompts longer than {facts['max_length']} tokens are truncated by the tokenizer.")
    if conversion is not None:
        lines.append(
            "A conversion reproduces the source model's outputs (within the tolerance above); it does not improve "
            "their quality, length or resolution."
        )
    lines.extend(limitations or [])

    # 4. metadata
    all_tags = list(dict.fromkeys([*DEFAULT_TAGS, *(tags or [])]))
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=None if kind == "AutoencoderKLVideo" else "text-to-video",
        tags=all_tags,
        base_model=base_model or None,
        license=license,
    )
    conversion_context = None
    if conversion is not None:
        sources = [
            {"role": role, "id": source, "license": conversion.source_licenses.get(source)}
            for role, source in conversion.sources
        ]
        conversion_context = {
            "sources": sources,
            "script": conversion.script,
            "command": conversion.command,
            "verified": conversion.max_abs_diff is not None,
            "verification": conversion.verification,
            "max_abs_diff_text": None if conversion.max_abs_diff is None else _format_float(conversion.max_abs_diff),
            "tolerance": conversion.tolerance,
            "package_version": __version__,
        }
    model_name = repo_id.rstrip("/").split("/")[-1] if repo_id else folder_path.name
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_name=model_name,
        description=description or _default_description(kind),
        kind="pipeline" if kind == "pipeline" else "model",
        class_name=kind,
        components=facts["components"],
        usage_snippet=snippet,
        install_hint=install_hint,
        latent=latent,
        recommended=list(settings.items()),
        conversion=conversion_context,
        limitations=lines,
    )


def _default_description(kind: str) -> str:
    if kind == "pipeline":
        return "A text-to-video latent diffusion pipeline: type a prompt, get a short video."
    if kind == "UNetSpatioTemporalModel":
        return "A spatio-temporal U-Net that denoises video latents `[B, C, F, H, W]`, conditioned on text."
    return "A causal video VAE that compresses videos `[B, 3, F, H, W]` in space and time into video latents."


def save_model_card(folder: str | os.PathLike, repo_id: str | None = None, **kwargs) -> Path:
    r"""
    Render the card of a saved folder (see [`create_model_card`]) and write it as `folder/README.md`.

    Args:
        folder (`str` or `os.PathLike`):
            The folder written by `save_pretrained`.
        repo_id (`str`, *optional*):
            The Hub id the usage snippet loads; defaults to `folder` as given.
        kwargs:
            Passed on to [`create_model_card`].

    Returns:
        `pathlib.Path`: the path of the written `README.md`.
    """
    card = create_model_card(folder, repo_id, **kwargs)
    path = Path(folder) / "README.md"
    with atomic_file(path, overwrite=True) as temporary:
        card.save(temporary)
    return path


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(path_or_repo_id: str) -> bool:
    """Whether a string names a Hub repository (`org/name`) rather than an existing local path."""
    return not os.path.exists(path_or_repo_id) and bool(_HUB_ID.match(path_or_repo_id))


def load_source_card_data(
    path_or_repo_id: str,
    revision: str | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> ModelCardData | None:
    r"""
    The metadata of a source checkpoint's own card (its license in particular), or `None` when it has none.

    Args:
        path_or_repo_id (`str`):
            A local folder or a Hub id.
        revision (`str`, *optional*):
            Hub revision of the card.
        local_files_only (`bool`, defaults to `False`):
            Only look in the local Hub cache.
        token (`str` or `bool`, *optional*):
            Hub token.
    """
    if os.path.isdir(path_or_repo_id):
        path = os.path.join(path_or_repo_id, "README.md")
        if not os.path.isfile(path):
            return None
    elif is_hub_id(path_or_repo_id):
        try:
            path = hf_hub_download(
                path_or_repo_id, "README.md", revision=revision, local_files_only=local_files_only, token=token
            )
        except Exception:  # no card, offline, gated: a card is optional provenance, not a reason to stop
            return None
    else:
        return None
    return ModelCard.load(path, ignore_metadata_errors=True).data


def combine_licenses(licenses: list[str | None]) -> str | None:
    """One license for a model built from several sources: theirs when they agree, `"other"` when they differ."""
    known = sorted({license for license in licenses if license})
    if not known:
        return None
    return known[0] if len(known) == 1 else "other"

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
Saved folders that diffusers' own loaders open: `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` and
`AutoModel.from_pretrained(folder, subfolder="unet", trust_remote_code=True)`.

diffusers resolves a class it does not ship through its remote-code mechanism: a Python file in the folder, named by
the configs. [`write_remote_code`] lays a folder out for it, and is the only place that does:

- `videolatent_loader.py` in the folder and in each model sub-folder (one with a `config.json`); it imports the
  installed package and re-exports its classes, so no model code travels with the weights;
- `model_index.json`: `_class_name` `["videolatent_loader", "VideoLatentPipeline"]` (the pipeline class, found by
  `_resolve_custom_pipeline_and_cls`), our components as `["videolatent_loader", ClassName]` (a file the component
  folder holds, as `get_class_obj_and_candidates` and the Hub download's `_get_custom_components_and_folders` expect),
  and `auto_map` `{"AutoModel": "videolatent_loader.VideoLatentAutoModel"}` (`AutoModel` reads it for a `subfolder`);
- each of our models' `config.json`: `auto_map` `{"AutoModel": "videolatent_loader.<ClassName>"}`.

Our own classes read both this layout and the older one (components as `["diffusers_videolatent.models.<module>",
ClassName]`) without running the folder's file: [`plain_config`] maps the entries back to the installed modules.
"""

import importlib
import json
import os
from pathlib import Path
from typing import Any

from diffusers import ConfigMixin

from .atomic import atomic_file


REMOTE_MODULE = "videolatent_loader"
REMOTE_MODULE_FILE = f"{REMOTE_MODULE}.py"
PACKAGE_NAME = "diffusers_videolatent"
PIPELINE_CLASS_NAME = "VideoLatentPipeline"
AUTO_MODEL_CLASS_NAME = "VideoLatentAutoModel"

# the module that defines each of our component classes, as diffusers' `save_pretrained` records it
MODEL_MODULES = {
    "UNetSpatioTemporalModel": "diffusers_videolatent.models.unet_spatio_temporal",
    "AutoencoderKLVideo": "diffusers_videolatent.models.autoencoder_kl_video",
}

REMOTE_MODULE_SOURCE = '''\
"""
Entry point for diffusers' `trust_remote_code=True` loaders, written by diffusers-videolatent's `save_pretrained`.

It holds no model code: it imports the installed `diffusers-videolatent` package and re-exports its classes.
"""

try:
    from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
    from diffusers_videolatent.remote_code import VideoLatentAutoModel
except ImportError as error:
    raise ImportError(
        "This folder was saved by diffusers-videolatent; install it to load it: `pip install diffusers-videolatent`."
    ) from error


__all__ = ["AutoencoderKLVideo", "UNetSpatioTemporalModel", "VideoLatentAutoModel", "VideoLatentPipeline"]
'''


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _write_json(path: Path, content: dict) -> None:
    # the same text diffusers' `ConfigMixin.to_json_string` writes
    with atomic_file(path, overwrite=True) as temporary:
        Path(temporary).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_module(folder: Path) -> None:
    path = folder / REMOTE_MODULE_FILE
    if path.is_file() and path.read_text(encoding="utf-8") == REMOTE_MODULE_SOURCE:
        return
    with atomic_file(path, overwrite=True) as temporary:
        Path(temporary).write_text(REMOTE_MODULE_SOURCE, encoding="utf-8")


def _is_our_component(entry: Any) -> bool:
    return (
        isinstance(entry, (list, tuple))
        and len(entry) == 2
        and isinstance(entry[1], str)
        and entry[1] in MODEL_MODULES
        and (entry[0] == REMOTE_MODULE or str(entry[0]).split(".")[0] == PACKAGE_NAME)
    )


def _write_model_files(folder: Path) -> bool:
    config_path = folder / "config.json"
    if not config_path.is_file():
        return False
    config = _read_json(config_path)
    class_name = config.get("_class_name")
    if class_name not in MODEL_MODULES:
        return False
    auto_map = {"AutoModel": f"{REMOTE_MODULE}.{class_name}"}
    if config.get("auto_map") != auto_map:
        config["auto_map"] = auto_map
        _write_json(config_path, config)
    _write_module(folder)
    return True


def write_remote_code(folder: str | os.PathLike) -> str:
    r"""
    Lays a saved folder out for diffusers' `trust_remote_code=True` loaders (see the module docstring); idempotent.

    Called by `save_pretrained` and before each upload of our pipeline and models; run it on a folder saved by an
    older release to make it loadable with `DiffusionPipeline.from_pretrained` too.

    Args:
        folder (`str` or `os.PathLike`):
            A folder written by `save_pretrained` of [`VideoLatentPipeline`], [`UNetSpatioTemporalModel`] or
            [`AutoencoderKLVideo`].

    Returns:
        `str`: `"pipeline"`, or the class name of the model the folder holds.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"`folder` should be an existing directory, got {str(folder)!r}.")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        if not _write_model_files(folder):
            raise ValueError(
                f"`folder` {str(folder)!r} holds neither a model_index.json nor a config.json of one of our models "
                f"({', '.join(MODEL_MODULES)})."
            )
        return _read_json(folder / "config.json")["_class_name"]

    index = _read_json(index_path)
    class_name = index.get("_class_name")
    if isinstance(class_name, (list, tuple)):
        class_name = class_name[-1]
    if class_name != PIPELINE_CLASS_NAME:
        raise ValueError(
            f"`folder` {str(folder)!r} holds a model_index.json for {class_name!r}, not {PIPELINE_CLASS_NAME!r}."
        )
    # 1. the component folders first: the index only names files that exist. `AutoModel` looks for the file named by
    # the index's `auto_map` in whichever model sub-folder it loads, ours or not.
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or not (folder / name / "config.json").is_file():
            continue
        if _is_our_component(entry) and _write_model_files(folder / name):
            index[name] = [REMOTE_MODULE, entry[1]]
        else:
            _write_module(folder / name)
    # 2. the pipeline's own file, then the index that names it
    _write_module(folder)
    index["_class_name"] = [REMOTE_MODULE, PIPELINE_CLASS_NAME]
    index["auto_map"] = {"AutoModel": f"{REMOTE_MODULE}.{AUTO_MODEL_CLASS_NAME}"}
    _write_json(index_path, index)
    return "pipeline"


def plain_config(config: dict, components: bool = True) -> dict:
    r"""
    Maps a config of the remote-code layout back to the names our own classes load without running the folder's file.

    Args:
        config (`dict`):
            A `model_index.json` or `config.json` as read; changed in place.
        components (`bool`, *optional*, defaults to `True`):
            Whether to map our component entries to the installed modules as well as `_class_name`. The Hub download
            wants them as they are (it checks each names a file in the repository); loading wants them mapped.

    Returns:
        `dict`: `config`, with `_class_name` a plain class name and without `auto_map`.
    """
    class_name = config.get("_class_name")
    if isinstance(class_name, (list, tuple)) and len(class_name) == 2 and class_name[0] == REMOTE_MODULE:
        config["_class_name"] = class_name[1]
    if not components:
        return config
    config.pop("auto_map", None)
    for name, entry in config.items():
        if _is_our_component(entry):
            config[name] = [MODEL_MODULES[entry[1]], entry[1]]
    return config


class _ModelIndex(ConfigMixin):
    config_name = "model_index.json"


class _ModelConfig(ConfigMixin):
    config_name = "config.json"


class VideoLatentAutoModel:
    r"""
    What a pipeline folder's `auto_map["AutoModel"]` names: diffusers' `AutoModel.from_pretrained(folder,
    subfolder=..., trust_remote_code=True)` reads one class for every sub-folder from `model_index.json`, so this one
    loads the class the sub-folder's entry names: one of our models, or a diffusers or transformers model.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        r"""
        Loads the model in `subfolder` of a pipeline folder or Hub repository (or a model folder without `subfolder`).

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                A folder written by [`VideoLatentPipeline.save_pretrained`], or its Hub id.
            kwargs (*optional*):
                Passed on to the model class's `from_pretrained` (`subfolder`, `revision`, `torch_dtype`, ...).
        """
        hub_kwargs = {
            name: kwargs[name]
            for name in ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "token")
            if name in kwargs
        }
        subfolder = kwargs.get("subfolder")
        entry = None
        if subfolder:
            try:
                entry = _ModelIndex.load_config(pretrained_model_name_or_path, **hub_kwargs).get(subfolder)
            except EnvironmentError:
                entry = None
        if entry is None:
            model_config = _ModelConfig.load_config(pretrained_model_name_or_path, subfolder=subfolder, **hub_kwargs)
            entry = [PACKAGE_NAME, model_config.get("_class_name")]

        library, class_name = entry
        if _is_our_component(entry) or (library == PACKAGE_NAME and class_name in MODEL_MODULES):
            model_class = getattr(importlib.import_module(MODEL_MODULES[class_name]), class_name)
        elif library in ("diffusers", "transformers"):
            model_class = getattr(importlib.import_module(library), class_name)
        else:
            raise ValueError(
                f"`subfolder` {subfolder!r} of {pretrained_model_name_or_path!r} holds {entry!r}, which is neither one "
                f"of our models ({', '.join(MODEL_MODULES)}) nor a diffusers or transformers model."
            )
        return model_class.from_pretrained(pretrained_model_name_or_path, **kwargs)

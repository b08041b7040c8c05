"""Publishing saved folders to the Hugging Face Hub with our model card.

`push_folder_to_hub` backs `videolatent push FOLDER REPO_ID`: it checks the folder is one of ours, writes the card when
the folder has none, then hands the folder to `huggingface_hub.create_repo` and `huggingface_hub.upload_folder`
unchanged. `ModelCardHubMixin` makes diffusers' own `push_to_hub` upload our card instead of diffusers' generic one.
"""

import logging
import os
from pathlib import Path

from huggingface_hub import create_repo, upload_folder

from .atomic import atomic_file, atomic_folder, inside_temporary, keep_unless_superseded_weights
from .compat import dtype_argument
from .model_card import create_model_card, folder_kind, save_model_card
from .remote_code import plain_config, write_remote_code


logger = logging.getLogger(__name__)

# diffusers' `load_or_create_model_card` writes this sentence into the card it generates for a repository that has none.
_GENERIC_DIFFUSERS_CARD = "has been pushed on the Hub. This model card has been automatically generated."


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    card_kwargs: dict | None = None,
):
    r"""
    Upload a saved `VideoLatentPipeline`, `UNetSpatioTemporalModel` or `AutoencoderKLVideo` folder to the Hub.

    Args:
        folder (`str` or `os.PathLike`):
            A folder written by `save_pretrained` (or by one of the conversion scripts).
        repo_id (`str`):
            The Hub repository, `"org/name"` or `"name"` (your namespace); created when it does not exist.
        token (`str`, *optional*):
            Hub token; defaults to the stored one (`hf auth login`).
        private (`bool`, *optional*):
            Make a newly created repository private; ignored when it exists.
        revision (`str`, *optional*):
            The branch to commit to; defaults to `main`.
        commit_message (`str`, *optional*):
            Defaults to `"Upload <kind> with diffusers-videolatent"`.
        create_pr (`bool`, defaults to `False`):
            Open a pull request instead of committing to the branch.
        card_kwargs (`dict`, *optional*):
            Passed to [`~diffusers_videolatent.model_card.save_model_card`] when the folder has no `README.md`.

    Returns:
        What `huggingface_hub.upload_folder` returns (a `CommitInfo` with the commit URL).
    """
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"`repo_id` should be a non-empty string such as 'org/name', got {repo_id!r}.")

    # 1. the folder must be one of ours, complete
    kind = folder_kind(folder)

    # 2. the files diffusers' `trust_remote_code=True` loaders read (a folder saved by an older release gains them),
    # then the card, before anything reaches the Hub (a hand-written README.md is never replaced)
    write_remote_code(folder)
    card_path = Path(folder) / "README.md"
    card = None if card_path.is_file() else create_model_card(folder, repo_id, **(card_kwargs or {}))

    # 3. create the repository; the id it returns carries the namespace the card's snippet should name
    created_repo_id = create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type="model").repo_id
    if card is not None:
        if created_repo_id != repo_id:
            card = create_model_card(folder, created_repo_id, **(card_kwargs or {}))
        with atomic_file(card_path) as temporary:
            card.save(temporary)
        logger.info(f"Wrote the model card {card_path}.")

    # 4. upload, unchanged
    return upload_folder(
        repo_id=created_repo_id,
        folder_path=str(folder),
        repo_type="model",
        token=token,
        revision=revision,
        commit_message=commit_message or f"Upload {kind} with diffusers-videolatent",
        create_pr=create_pr,
    )


class ModelCardHubMixin:
    """
    Mixin for our pipeline and models (put it before diffusers' base class).

    - `save_pretrained` is atomic: diffusers' save writes into a temporary sibling of `save_directory`, which is then
      moved into place. An existing folder keeps the files the save does not write (stale weight shards of the same
      variant excepted, as diffusers removes them), and a kill at any moment leaves either the previous folder or the
      complete new one.
    - diffusers' `push_to_hub` stays unchanged, but the folder it uploads carries our model card instead of diffusers'
      generic one. A card that already exists in the Hub repository (which diffusers downloads first) is kept.
    - every save also writes the files of [`~diffusers_videolatent.remote_code`], so that
      `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` and `AutoModel.from_pretrained(...,
      trust_remote_code=True)` load the folder; our own `from_pretrained` reads that layout, and the older one,
      without running the folder's file.
    - `from_pretrained` takes the dtype as `dtype` or `torch_dtype` on every diffusers release we support (see
      [`~diffusers_videolatent.compat`]).
    """

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return super().from_pretrained(*args, **dtype_argument(kwargs))

    def save_config(self, save_directory: str | os.PathLike, *args, **kwargs):
        # `save_pretrained` writes the config through this (into the temporary folder of the atomic save): a model's
        # before its weights, a pipeline's after its components
        super().save_config(save_directory, *args, **kwargs)
        write_remote_code(save_directory)

    @classmethod
    def _dict_from_json_file(cls, *args, **kwargs):
        # `DiffusionPipeline.download` reads the index through this too, and wants the component entries as they are
        return plain_config(super()._dict_from_json_file(*args, **kwargs), components=False)

    @classmethod
    def extract_init_dict(cls, config_dict: dict, **kwargs):
        return super().extract_init_dict(plain_config(dict(config_dict)), **kwargs)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        is_main_process: bool = True,
        **kwargs,
    ):
        r"""
        Saves like diffusers' `save_pretrained` (same arguments), atomically: see the class docstring.

        The arguments are spelled out because diffusers' pipeline passes `safe_serialization`, `variant` and
        `max_shard_size` on to a component only when its `save_pretrained` signature names them.
        """
        save_kwargs = {"safe_serialization": safe_serialization, "variant": variant, **kwargs}
        if max_shard_size is not None:
            save_kwargs["max_shard_size"] = max_shard_size
        if not is_main_process:
            # the other processes of a distributed save write nothing of their own
            return super().save_pretrained(save_directory, is_main_process=False, **save_kwargs)
        if inside_temporary(save_directory) and not push_to_hub:
            # a component of a pipeline being saved atomically, or a conversion's temporary folder
            return super().save_pretrained(save_directory, **save_kwargs)
        push_kwargs = {
            name: save_kwargs.pop(name)
            for name in ("commit_message", "private", "create_pr", "token", "repo_id")
            if name in save_kwargs
        }
        save_directory = os.fspath(save_directory)
        with atomic_folder(
            save_directory, overwrite=True, keep_existing=True, keep=keep_unless_superseded_weights
        ) as temporary_directory:
            super().save_pretrained(temporary_directory, **save_kwargs)
        if push_to_hub:
            # uploaded from its final place, as diffusers does, so a failed upload still leaves the saved folder
            repo_id = push_kwargs.get("repo_id", os.path.basename(os.path.abspath(save_directory)))
            token = push_kwargs.get("token")
            repo_id = create_repo(repo_id, exist_ok=True, private=push_kwargs.get("private"), token=token).repo_id
            self._upload_folder(
                save_directory,
                repo_id,
                token=token,
                commit_message=push_kwargs.get("commit_message"),
                create_pr=push_kwargs.get("create_pr", False),
            )

    def _upload_folder(
        self,
        working_dir: str | os.PathLike,
        repo_id: str,
        token: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
        subfolder: str | None = None,
    ):
        write_remote_code(working_dir)
        card_path = Path(working_dir) / "README.md"
        if not subfolder and (not card_path.is_file() or _GENERIC_DIFFUSERS_CARD in card_path.read_text("utf-8")):
            save_model_card(working_dir, repo_id)
        return super()._upload_folder(
            working_dir, repo_id, token=token, commit_message=commit_message, create_pr=create_pr, subfolder=subfolder
        )

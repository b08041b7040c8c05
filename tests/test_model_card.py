"""Model cards: metadata round trip, numbers read from the saved configs, and usage snippets that run."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard, ModelCardData

import diffusers_videolatent
from diffusers_videolatent.model_card import (
    ConversionProvenance,
    combine_licenses,
    create_model_card,
    folder_kind,
    frame_rule,
    is_hub_id,
    load_source_card_data,
    save_model_card,
    template_path,
)

from .testing_utils import REPOSITORY, TOKENIZER_MAX_LENGTH


def python_block(card: ModelCard) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.DOTALL)
    assert len(blocks) == 1, blocks
    return blocks[0]


def test_template_ships_inside_the_package():
    path = template_path()
    assert path.is_file()
    assert path.parent.parent == Path(diffusers_videolatent.__file__).parent
    # The top-level `model_cards/template.md` of a checkout is the same file, not a copy.
    top_level = REPOSITORY / "model_cards" / "template.md"
    if top_level.exists():
        assert top_level.resolve() == path.resolve()


def test_metadata_round_trip_offline(vae_folder):
    card = create_model_card(
        vae_folder, "me/tiny-vae", license="apache-2.0", base_model="org/image-vae", tags=["custom", "diffusers"]
    )
    expected = {
        "base_model": "org/image-vae",
        "library_name": "diffusers-videolatent",
        "license": "apache-2.0",
        "tags": ["diffusers-videolatent", "diffusers", "text-to-video", "video-latent-diffusion", "custom"],
    }
    assert card.data.to_dict() == expected
    # The YAML block parses back to the same metadata, through ModelCard and through ModelCardData.
    reparsed = ModelCard(str(card))
    assert reparsed.data.to_dict() == expected
    front_matter = yaml.safe_load(str(card).split("---")[1])
    assert front_matter == expected
    assert ModelCardData(**front_matter).to_dict() == expected


def test_vae_card_reads_ratios_from_config(vae_folder):
    card = create_model_card(vae_folder, "me/tiny-vae")
    assert folder_kind(vae_folder) == "AutoencoderKLVideo"
    assert card.data.pipeline_tag is None  # no Hub task fits a VAE on its own
    assert (
        "Spatial compression ratio: **2x**; temporal compression ratio: **2x**; latent channels: **4**." in card.text
    )
    assert "`num_frames` must be `1 + k * 2` (1, 3, 5, 7, 9, ...)" in card.text
    assert "`[B, 4, F_lat, H / 2, W / 2]`" in card.text


def test_vae_snippet_runs(vae_folder, tmp_path, monkeypatch):
    card = create_model_card(vae_folder, str(vae_folder))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(python_block(card), namespace)
    assert namespace["latents"].shape == (1, 4, 3, 8, 8)  # 5 frames at ratio 2 -> 3 latent frames, 16x16 / 2
    assert namespace["reconstruction"].shape == (1, 3, 5, 16, 16)


def test_unet_snippet_runs(unet_folder, tmp_path, monkeypatch):
    card = create_model_card(unet_folder, str(unet_folder))
    assert card.data.pipeline_tag == "text-to-video"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(python_block(card), namespace)
    assert namespace["noise_pred"].shape == (1, 4, 5, 8, 8)


def test_conversion_provenance_and_license(vae_folder):
    provenance = ConversionProvenance(
        script="conversion_scripts/convert_image_vae.py",
        sources=[("Image VAE", "org/image-vae")],
        tolerance=1e-4,
        max_abs_diff=2.5e-7,
        verification="encode and decode of a random 5-frame video",
        command="python conversion_scripts/convert_image_vae.py --vae_path org/image-vae --output_path out",
        source_licenses={"org/image-vae": "mit"},
    )
    card = create_model_card(vae_folder, "me/tiny-vae", license="mit", conversion=provenance)
    assert "- Image VAE: `org/image-vae` (license `mit`)" in card.text
    assert "the largest absolute difference was 2.5e-07, within the stated tolerance of 0.0001." in card.text
    assert provenance.command in card.text
    assert "A conversion reproduces the source model's outputs" in card.text

    unverified = create_model_card(vae_folder, "me/tiny-vae", conversion=ConversionProvenance("s.py", [("A", "b")]))
    assert "Not verified" in unverified.text


def test_save_model_card_writes_readme(vae_folder):
    path = save_model_card(vae_folder, "me/tiny-vae", license="apache-2.0")
    assert path == vae_folder / "README.md"
    assert ModelCard.load(path).data.license == "apache-2.0"


def test_frame_rule_text():
    assert "Any number of frames works" in frame_rule(1)
    assert "(1, 5, 9, 13, 17, ...)" in frame_rule(4)
    assert "`F_lat = (F - 1) // 4 + 1`" in frame_rule(4)


def test_source_card_data_and_license_helpers(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    assert load_source_card_data(str(source)) is None
    (source / "README.md").write_text("---\nlicense: cc-by-nc-4.0\ntags:\n- text-to-video\n---\n# Source\n")
    assert load_source_card_data(str(source)).license == "cc-by-nc-4.0"
    assert combine_licenses([None, "mit", "mit"]) == "mit"
    assert combine_licenses(["mit", "creativeml-openrail-m"]) == "other"
    assert combine_licenses([None]) is None
    assert is_hub_id("org/name") and not is_hub_id(str(source)) and not is_hub_id("not a/hub id")


def test_pipeline_card_and_snippet_run(pipeline_folder, tmp_path, monkeypatch):
    card = create_model_card(
        pipeline_folder,
        str(pipeline_folder),
        recommended={"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2, "fps": 4},
        license="apache-2.0",
    )
    assert card.data.pipeline_tag == "text-to-video"
    assert "| `unet` | `UNetSpatioTemporalModel` | `diffusers_videolatent` |" in card.text
    assert "| `vae` | `AutoencoderKLVideo` | `diffusers_videolatent` |" in card.text
    assert "| `text_encoder` | `CLIPTextModel` | `transformers` |" in card.text
    assert "must be multiples of 4" in card.text  # VAE 2x times U-Net 2x
    assert "5 frames of 16x16 become a latent of shape `[1, 4, 3, 8, 8]`" in card.text
    assert f"Prompts longer than {TOKENIZER_MAX_LENGTH} tokens are truncated" in card.text
    snippet = python_block(card)
    assert f"VideoLatentPipeline.from_pretrained({json.dumps(str(pipeline_folder))}" in snippet

    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(snippet, namespace)
    assert os.path.getsize(tmp_path / "video.mp4") > 0
    assert len(namespace["frames"]) == 5


def test_bad_inputs(tmp_path, vae_folder, pipeline_folder):
    with pytest.raises(ValueError, match="`folder` should be an existing directory"):
        create_model_card(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither model_index.json nor config.json"):
        create_model_card(tmp_path)
    config = json.loads((vae_folder / "config.json").read_text())
    config["_class_name"] = "AutoencoderKL"
    (vae_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has `_class_name` 'AutoencoderKL'"):
        create_model_card(vae_folder)

    with pytest.raises(ValueError, match=r"unknown key\(s\) \['steps'\]"):
        create_model_card(pipeline_folder, recommended={"steps": 2})
    with pytest.raises(ValueError, match="is 4, which breaks the frame rule"):
        create_model_card(pipeline_folder, recommended={"num_frames": 4})
    index = json.loads((pipeline_folder / "model_index.json").read_text())
    (pipeline_folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "TextToVideoSDPipeline"}))
    with pytest.raises(ValueError, match="expected 'VideoLatentPipeline'"):
        create_model_card(pipeline_folder)
    (pipeline_folder / "model_index.json").write_text(json.dumps(index))
    os.rename(pipeline_folder / "unet", tmp_path / "unet-moved")
    with pytest.raises(ValueError, match=r"lacks the component sub-folder\(s\) \['unet'\]"):
        create_model_card(pipeline_folder)

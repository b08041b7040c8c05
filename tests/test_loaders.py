"""LoRA on `VideoLatentPipeline` through diffusers' PEFT integration (`diffusers_videolatent/loaders.py`).

LoRAs are made here with peft on tiny real models (random, non-zero A and B) and written in diffusers' file format.
Weighted adapters and LoRA scales are checked against an independent reference: the same pipeline with the LoRA
deltas `weight * B @ A` added to the base weights by hand. AnimateDiff motion LoRAs are made on diffusers'
`UNetMotionModel`, saved by `AnimateDiffPipeline.save_lora_weights` and compared with `AnimateDiffPipeline`.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file
from transformers.integrations.peft import MIN_PEFT_VERSION
from transformers.utils import is_peft_available
from transformers.utils.peft_utils import check_peft_version

from diffusers_videolatent import UNetSpatioTemporalModel, VideoLatentPipeline

from .testing_utils import (
    build_image_vae,
    build_motion_adapter,
    build_pipeline_components,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_unet2d,
    build_video_vae,
)


pytestmark = pytest.mark.usefixtures("no_grad")
PROMPT = "a red circle moving right"
CALL = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2, "output_type": "np"}
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def transformers_peft_integration_available() -> bool:
    try:
        check_peft_version(min_version=MIN_PEFT_VERSION)
    except ValueError:
        return False
    return is_peft_available()


def make_pipeline() -> VideoLatentPipeline:
    components = build_pipeline_components(vae=build_video_vae(), unet=build_unet(identity_init=False))
    pipe = VideoLatentPipeline(**components)
    # Loading a LoRA freezes the base weights (peft), and on CPU torch picks another matmul kernel for frozen weights
    # (about 1e-7 apart); freezing first makes "unloading restores the output" an exact comparison.
    for component in (pipe.unet, pipe.text_encoder):
        component.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kwargs) -> np.ndarray:
    return pipe(PROMPT, generator=torch.manual_seed(0), **CALL, **kwargs).frames


def write_unet_lora(folder: Path, seed: int, target_modules=UNET_TARGETS) -> Path:
    """A LoRA of our U-Net, made with peft (random A and B) and saved in diffusers' format."""
    unet = build_unet(identity_init=False)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=target_modules, init_lora_weights=False))
    VideoLatentPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder


def merge_by_hand_(model: torch.nn.Module, lora_file: Path, prefix: str, weight: float) -> int:
    """Adds `weight * B @ A` of every LoRA pair in `lora_file` (rank = alpha, so no extra scale) to the weights of
    `model`; returns how many layers changed."""
    state_dict = load_file(lora_file)
    merged = 0
    for key, down in state_dict.items():
        if key.startswith(f"{prefix}.") and key.endswith(".lora_A.weight"):
            up = state_dict[key.replace(".lora_A.", ".lora_B.")]
            module = model.get_submodule(key.removeprefix(f"{prefix}.").removesuffix(".lora_A.weight"))
            module.weight += weight * up @ down
            merged += 1
    return merged


def test_load_changes_the_video_and_unload_restores_it_exactly(tmp_path):
    folder = write_unet_lora(tmp_path / "lora", seed=1)
    assert os.listdir(folder) == [WEIGHT_NAME]
    keys = load_file(folder / WEIGHT_NAME).keys()
    assert all(key.startswith("unet.") and (".lora_A." in key or ".lora_B." in key) for key in keys)

    pipe = make_pipeline()
    base_weights = {name: value.clone() for name, value in pipe.unet.state_dict().items()}
    base = run(pipe)
    pipe.load_lora_weights(folder, adapter_name="style")
    assert pipe.get_list_adapters() == {"unet": ["style"]}
    # every attention of the U-Net (spatial and temporal, 22 of them) carries the LoRA on q, k, v and out
    assert sum(isinstance(module, LoraLayer) for module in pipe.unet.modules()) == 4 * 22
    with_lora = run(pipe)
    assert np.abs(with_lora - base).max() > 1e-3

    pipe.unload_lora_weights()
    assert not any(isinstance(module, LoraLayer) for module in pipe.unet.modules())
    assert pipe.unet.state_dict().keys() == base_weights.keys()
    assert all(torch.equal(value, base_weights[name]) for name, value in pipe.unet.state_dict().items())
    assert np.array_equal(run(pipe), base)


def test_two_adapters_with_weights_equal_the_weighted_deltas_merged_by_hand(tmp_path):
    first, second = write_unet_lora(tmp_path / "first", seed=1), write_unet_lora(tmp_path / "second", seed=2)
    pipe = make_pipeline()
    pipe.load_lora_weights(first, adapter_name="first")
    pipe.load_lora_weights(second, adapter_name="second")
    pipe.set_adapters(["first", "second"], adapter_weights=[0.5, 1.5])
    assert pipe.get_active_adapters() == ["first", "second"]
    combined = run(pipe)

    reference = make_pipeline()
    assert merge_by_hand_(reference.unet, first / WEIGHT_NAME, "unet", 0.5) == 4 * 22
    merge_by_hand_(reference.unet, second / WEIGHT_NAME, "unet", 1.5)
    expected = run(reference)
    assert np.abs(expected - run(make_pipeline())).max() > 1e-3
    np.testing.assert_allclose(combined, expected, atol=1e-5, rtol=0)

    pipe.set_adapters("second")
    reference = make_pipeline()
    merge_by_hand_(reference.unet, second / WEIGHT_NAME, "unet", 1.0)
    np.testing.assert_allclose(run(pipe), run(reference), atol=1e-5, rtol=0)


def test_lora_scale_from_cross_attention_kwargs(tmp_path):
    folder = write_unet_lora(tmp_path / "lora", seed=1)
    pipe = make_pipeline()
    base = run(pipe)
    pipe.load_lora_weights(folder)
    reference = make_pipeline()
    merge_by_hand_(reference.unet, folder / WEIGHT_NAME, "unet", 0.3)
    np.testing.assert_allclose(run(pipe, cross_attention_kwargs={"scale": 0.3}), run(reference), atol=1e-5, rtol=0)
    np.testing.assert_allclose(run(pipe, cross_attention_kwargs={"scale": 0.0}), base, atol=1e-6, rtol=0)
    # the scale is undone after the call
    assert all(module.scaling["default_0"] == 1.0 for module in pipe.unet.modules() if isinstance(module, LoraLayer))


def test_fuse_lora_equals_unfused(tmp_path):
    folder = write_unet_lora(tmp_path / "lora", seed=1)
    pipe = make_pipeline()
    base = run(pipe)
    pipe.load_lora_weights(folder, adapter_name="style")
    unfused = run(pipe)
    to_q = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    weight = to_q.base_layer.weight.clone()

    pipe.fuse_lora(components=["unet"], lora_scale=1.0)
    assert to_q.merged and not torch.equal(to_q.base_layer.weight, weight)
    fused = run(pipe)
    np.testing.assert_allclose(fused, unfused, atol=1e-5, rtol=0)

    pipe.unfuse_lora(components=["unet"])
    assert not to_q.merged
    torch.testing.assert_close(to_q.base_layer.weight, weight, atol=1e-6, rtol=0)
    np.testing.assert_allclose(run(pipe), unfused, atol=1e-5, rtol=0)
    pipe.unload_lora_weights()  # the base weights went through W + BA - BA: equal up to rounding
    np.testing.assert_allclose(run(pipe), base, atol=1e-5, rtol=0)


def test_save_lora_weights_round_trip_and_atomic_write(tmp_path):
    pipe = make_pipeline()
    pipe.load_lora_weights(write_unet_lora(tmp_path / "lora", seed=1), adapter_name="style")
    expected = run(pipe)

    saved = tmp_path / "saved"
    layers = get_peft_model_state_dict(pipe.unet, adapter_name="style")
    pipe.save_lora_weights(saved, unet_lora_layers=layers)
    assert os.listdir(saved) == [WEIGHT_NAME]  # no temporary sibling is left
    reloaded = make_pipeline()
    reloaded.load_lora_weights(saved)
    np.testing.assert_allclose(run(reloaded), expected, atol=1e-6, rtol=0)

    # a save that fails half-way leaves the previous file as it was, and nothing else
    before = (saved / WEIGHT_NAME).read_bytes()

    def failing_save(state_dict, path):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        pipe.save_lora_weights(saved, unet_lora_layers=layers, save_function=failing_save)
    assert os.listdir(saved) == [WEIGHT_NAME] and (saved / WEIGHT_NAME).read_bytes() == before

    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="`save_directory` must be a folder"):
        pipe.save_lora_weights(tmp_path / "a_file", unet_lora_layers=layers)
    with pytest.raises(ValueError, match="at least one of `unet_lora_layers`"):
        pipe.save_lora_weights(tmp_path / "empty")


def test_a_failed_text_encoder_load_leaves_the_unet_unchanged(tmp_path):
    unet_layers = load_file(write_unet_lora(tmp_path / "unet", seed=1) / WEIGHT_NAME)
    # a text-encoder part that cannot load (transformers refuses peft < 0.22; with a newer peft, no such module)
    broken = {**unet_layers, "text_encoder.no_such_layer.lora_A.weight": torch.zeros(2, 16)}
    broken["text_encoder.no_such_layer.lora_B.weight"] = torch.zeros(16, 2)
    pipe = make_pipeline()
    pipe.load_lora_weights(tmp_path / "unet", adapter_name="kept")
    with_kept = run(pipe)
    with pytest.raises(ValueError):
        pipe.load_lora_weights(broken, adapter_name="broken")
    assert pipe.get_list_adapters() == {"unet": ["kept"]}
    assert np.array_equal(run(pipe), with_kept)

    fresh = make_pipeline()
    base = run(fresh)
    with pytest.raises(ValueError):
        fresh.load_lora_weights(broken)
    assert not any(isinstance(module, LoraLayer) for module in fresh.unet.modules())
    assert np.array_equal(run(fresh), base)


def test_a_lora_of_another_base_is_refused_naming_both(tmp_path):
    folder = write_unet_lora(tmp_path / "lora", seed=1)
    pipe = VideoLatentPipeline(
        **build_pipeline_components(vae=build_video_vae(), unet=build_unet(block_out_channels=(16, 32)))
    )
    pipe.save_pretrained(tmp_path / "wider")
    for other in (pipe, VideoLatentPipeline.from_pretrained(tmp_path / "wider")):
        with pytest.raises(ValueError) as error:
            other.load_lora_weights(folder)
        message = str(error.value)
        assert message.startswith(f"The LoRA {str(folder)!r} does not fit the U-Net of this pipeline (")
        assert "\n" not in message and "88 of its layers do not fit" in message
        assert "attn1.to_k: lora_A (2, 8), layer weight (16, 16)" in message
        assert not any(isinstance(module, LoraLayer) for module in other.unet.modules())
    assert f"({str(tmp_path / 'wider')!r})" in message  # a loaded pipeline is named by its folder
    # a layer the U-Net does not have at all (a LoRA of a U-Net without temporal attentions' `to_k` names)
    renamed = {key.replace("to_k", "to_key"): value for key, value in load_file(folder / WEIGHT_NAME).items()}
    with pytest.raises(ValueError, match=r"to_key: no such layer"):
        make_pipeline().load_lora_weights(renamed)


@pytest.mark.skipif(
    not transformers_peft_integration_available(),
    reason=f"transformers' PEFT integration (text-encoder LoRA) needs peft >= {MIN_PEFT_VERSION}",
)
def test_text_encoder_lora_loads_and_unloads(tmp_path):
    unet, text_encoder = build_unet(identity_init=False), build_text_encoder()
    torch.manual_seed(3)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=UNET_TARGETS, init_lora_weights=False))
    text_encoder.add_adapter(
        LoraConfig(
            r=2, lora_alpha=2, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"], init_lora_weights=False
        )
    )
    VideoLatentPipeline.save_lora_weights(
        tmp_path,
        unet_lora_layers=get_peft_model_state_dict(unet),
        text_encoder_lora_layers=get_peft_model_state_dict(text_encoder),
    )
    pipe = make_pipeline()
    base = run(pipe)
    pipe.load_lora_weights(tmp_path)
    assert pipe.get_list_adapters() == {"unet": ["default_0"], "text_encoder": ["default_0"]}
    reference = make_pipeline()
    merge_by_hand_(reference.unet, tmp_path / WEIGHT_NAME, "unet", 1.0)
    assert merge_by_hand_(reference.text_encoder, tmp_path / WEIGHT_NAME, "text_encoder", 1.0) == 4 * 2
    np.testing.assert_allclose(run(pipe), run(reference), atol=1e-5, rtol=0)
    pipe.unload_lora_weights()
    assert np.array_equal(run(pipe), base)


# ---------------------------------------------------------------------------------------------------------------------
# AnimateDiff motion LoRAs: made for diffusers' UNetMotionModel, loaded onto `from_unet2d(unet, motion_adapter=...)`
# ---------------------------------------------------------------------------------------------------------------------

ANIMATEDIFF_CALL = {"num_frames": 3, "height": 8, "width": 8, "num_inference_steps": 2, "output_type": "np"}


def animatediff_pipelines() -> tuple[AnimateDiffPipeline, VideoLatentPipeline]:
    """diffusers' AnimateDiff and ours on the same image U-Net, motion adapter, image VAE and text encoder."""
    common = {"vae": build_image_vae(), "text_encoder": build_text_encoder(), "scheduler": build_scheduler()}
    reference = AnimateDiffPipeline(
        unet=build_unet2d(),
        motion_adapter=build_motion_adapter(),
        tokenizer=build_tokenizer(),
        **common,
    )
    unet = UNetSpatioTemporalModel.from_unet2d(build_unet2d(), motion_adapter=build_motion_adapter())
    ours = VideoLatentPipeline(unet=unet, tokenizer=build_tokenizer(), **common)
    for pipe in (reference, ours):
        pipe.unet.requires_grad_(False)
        pipe.set_progress_bar_config(disable=True)
    return reference, ours


@pytest.mark.parametrize("layout", ["peft", "metadata", "public"])
def test_motion_lora_equals_animatediff_pipeline(motion_lora_files, layout):
    folder = motion_lora_files[layout]
    weight_name = "diffusion_pytorch_model.safetensors" if layout == "public" else WEIGHT_NAME
    reference, ours = animatediff_pipelines()
    without_lora = ours(PROMPT, generator=torch.manual_seed(0), **ANIMATEDIFF_CALL).frames

    reference.load_lora_weights(folder, weight_name=weight_name, adapter_name="zoom")
    ours.load_lora_weights(folder, weight_name=weight_name, adapter_name="zoom")
    lora_modules = [name for name, module in ours.unet.named_modules() if isinstance(module, LoraLayer)]
    # the temporal transformers' attentions (down 0/1, mid, up 0/1 x2: 7 of them, attn1 and attn2) and nothing else
    assert len(lora_modules) == 4 * 2 * 7
    assert all(".temporal_attentions." in name for name in lora_modules)

    expected = reference(PROMPT, generator=torch.manual_seed(0), **ANIMATEDIFF_CALL).frames
    actual = ours(PROMPT, generator=torch.manual_seed(0), **ANIMATEDIFF_CALL).frames
    assert actual.shape == expected.shape == (1, 3, 8, 8, 3)
    assert np.abs(actual - without_lora).max() > 1e-3  # the motion LoRA really changes the video
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)

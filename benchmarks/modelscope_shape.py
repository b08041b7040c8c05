"""The real-size U-Net the benchmarks measure: diffusers' `UNet3DConditionModel` config of ali-vilab/text-to-video-ms-1.7b
(its `unet/config.json`, less the keys `UNet3DConditionModel` does not take), and the same layout tiny for `--quick`
runs. Imported by the benchmark scripts from their own folder."""

MODELSCOPE_UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 64,
    "block_out_channels": (320, 640, 1280, 1280),
    "cross_attention_dim": 1024,
    "down_block_types": ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    "downsample_padding": 1,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 32,
    "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
}
# `--quick`: the same layout, tiny
QUICK_UNET_CONFIG = {**MODELSCOPE_UNET_CONFIG, "block_out_channels": (8, 16, 16, 16), "norm_num_groups": 4}
QUICK_UNET_CONFIG.update(attention_head_dim=2, cross_attention_dim=16, layers_per_block=1)

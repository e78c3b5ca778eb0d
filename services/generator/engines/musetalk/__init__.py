"""The MuseTalk engine: engine.py (lifecycle, latents, batching), model.py (the networks' math), batcher.py
(cross-request batching), fast/ (the CUDA fast paths, each behind a setting)."""

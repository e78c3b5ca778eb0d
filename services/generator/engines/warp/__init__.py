"""The weight-free warp engines (visemes, loudness): engine.py, with speech.py and audio_features.py as drivers."""

"""The generator's edge: its settings, how they reach the engines, and the engines closed on stop."""
import pytest

from services.generator.config import GeneratorConfig
from services.generator.engines.base import EngineUnavailable
from services.generator.server import GeneratorServicer
from tests.generator.musetalk.tiny_musetalk import write_tiny_models


def test_settings_from_the_environment(monkeypatch):
    for name in ("MUSETALK_PHASE_UPSAMPLE", "SPEECH_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    cfg = GeneratorConfig.from_env()
    assert cfg.phase_upsample is True
    assert cfg.speech_cache_dir == GeneratorConfig().speech_cache_dir       # one default, in the dataclass
    monkeypatch.setenv("MUSETALK_PHASE_UPSAMPLE", "0")
    monkeypatch.setenv("SPEECH_CACHE_DIR", "/somewhere/speech")
    cfg = GeneratorConfig.from_env()
    assert cfg.phase_upsample is False and cfg.speech_cache_dir == "/somewhere/speech"
    servicer = GeneratorServicer(GeneratorConfig(cache_dir=cfg.cache_dir, phase_upsample=False,
                                                 speech_cache_dir="/somewhere/speech"))
    assert servicer.engines["musetalk"].settings.phase_upsample is False
    assert servicer.engines["visemes"].speech_cache == "/somewhere/speech"
    monkeypatch.setenv("MUSETALK_LAUNCH_LEAD_MS", "-1")      # the next batch launched once full, as before
    monkeypatch.setenv("MUSETALK_SPLIT_BATCHES", "0")
    monkeypatch.setenv("MUSETALK_PENDING_HEAD_BATCH", "32")  # = max batch: batches are not cut for a new request
    monkeypatch.setenv("MUSETALK_LIVE_BATCH", "16")
    monkeypatch.setenv("MUSETALK_LIVE_FIT", "0")
    monkeypatch.setenv("MUSETALK_BESIDE_LIVE_BATCH", "8")
    monkeypatch.setenv("MUSETALK_HEAD_S", "0.4")
    monkeypatch.setenv("MUSETALK_FINISH_FRAMES", "0")
    cfg = GeneratorConfig.from_env()
    assert cfg.launch_lead_ms == -1 and cfg.split_batches is False and cfg.pending_head_batch == 32
    assert cfg.live_batch == 16 and cfg.live_fit is False and cfg.beside_live_batch == 8 and cfg.head_s == 0.4
    settings = GeneratorServicer(cfg).engines["musetalk"].settings
    assert settings.launch_lead_ms == -1 and settings.split_batches is False and settings.pending_head_batch == 32
    assert settings.live_batch == 16 and settings.live_fit is False and settings.beside_live_batch == 8
    assert settings.head_s == 0.4 and settings.finish_frames == 0 and GeneratorConfig().finish_frames == 16


@pytest.mark.parametrize("name, value, message", [
    ("MUSETALK_HEAD_S", "-0.1", "MUSETALK_HEAD_S must be within 0-2 s"),
    ("MUSETALK_HEAD_S", "3", "MUSETALK_HEAD_S must be within 0-2 s"),
    ("MUSETALK_LIVE_BATCH", "-1", "MUSETALK_LIVE_BATCH must be >= 0"),
    ("MUSETALK_PENDING_HEAD_BATCH", "-4", "MUSETALK_PENDING_HEAD_BATCH must be >= 0"),
    ("MUSETALK_BESIDE_LIVE_BATCH", "-1", "MUSETALK_BESIDE_LIVE_BATCH must be >= 0"),
    ("MUSETALK_FINISH_FRAMES", "-2", "MUSETALK_FINISH_FRAMES must be >= 0"),
])
def test_a_setting_out_of_range_is_an_error_that_names_it(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        GeneratorConfig.from_env()


def test_every_engine_is_closed_on_stop_and_a_closed_engine_stops_its_batcher(tmp_path):
    write_tiny_models(str(tmp_path / "models"), versions=("v15",))
    servicer = GeneratorServicer(GeneratorConfig(cache_dir=str(tmp_path / "cache"), models_dir=str(tmp_path / "models"),
                                                 device="cpu", max_batch=8, compile=False))
    musetalk = servicer.engines["musetalk"]
    musetalk.load()
    batchers = list(musetalk.batchers.values())
    assert musetalk.versions == ("v15",) and batchers and all(b.alive for b in batchers)
    # by default a batch holding live frames, and other batches while a newcomer prepares, hold half a batch
    assert [(b.live_batch, b.pending_head_batch) for b in batchers] == [(4, 4)]
    # and so do other batches while live frames flow; a live batch is filled only to the size that holds its frames
    assert [(b.live_sizes, b.beside_live_batch) for b in batchers] == [([2, 4, 8], 4)]
    servicer.close()                  # what the server bootstrap's on_stop calls
    assert not any(b.alive for b in batchers)
    with pytest.raises(EngineUnavailable, match="not loaded"):
        musetalk.generate(None, None, 16000, 25, 8, version="v15")

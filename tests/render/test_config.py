"""The render room's settings: read from the environment once, a value out of range is an error that names it."""
import pytest

from services.render.config import RenderConfig


def test_settings_from_the_environment(monkeypatch):
    for name in ("X264_PRESET", "X264_THREADS", "X264_LOOKAHEAD", "RENDER_DECODE_THREADS", "FIRST_FRAGMENT_S",
                 "LAST_FRAGMENT_S", "X264_GOP_ENCODERS", "RENDER_THREADS_BY_LOAD"):
        monkeypatch.delenv(name, raising=False)
    cfg = RenderConfig.from_env()
    assert (cfg.x264_preset, cfg.x264_threads, cfg.decode_threads, cfg.first_fragment_s, cfg.last_fragment_s,
            cfg.threads_by_load) == ("veryfast", 0, -1, 0.2, 0, True)
    monkeypatch.setenv("LAST_FRAGMENT_S", "0.2")
    assert RenderConfig.from_env().last_fragment_s == 0.2
    monkeypatch.setenv("X264_THREADS", "6")
    monkeypatch.setenv("RENDER_DECODE_THREADS", "2")
    monkeypatch.setenv("X264_PRESET", "superfast")
    monkeypatch.setenv("RENDER_THREADS_BY_LOAD", "0")
    cfg = RenderConfig.from_env()
    assert (cfg.x264_threads, cfg.decode_threads, cfg.x264_preset, cfg.threads_by_load) == (6, 2, "superfast", False)


@pytest.mark.parametrize("name, value, message", [
    ("X264_PRESET", "fastest", "X264_PRESET 'fastest' is not one of"),
    ("X264_LOOKAHEAD", "300", "X264_LOOKAHEAD must be -1"),
    ("X264_THREADS", "-1", "X264_THREADS must be >= 0"),
    ("RENDER_DECODE_THREADS", "-2", "RENDER_DECODE_THREADS must be -1"),
    ("FIRST_FRAGMENT_S", "1.5", "FIRST_FRAGMENT_S must be within 0-1 s"),
    ("LAST_FRAGMENT_S", "-1", "LAST_FRAGMENT_S must be within 0-1 s"),
    ("LAST_FRAGMENT_S", "1.2", "LAST_FRAGMENT_S must be within 0-1 s"),
    ("X264_GOP_ENCODERS", "0", "X264_GOP_ENCODERS must be within 1-16"),
])
def test_a_setting_out_of_range_is_an_error_that_names_it(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        RenderConfig.from_env()

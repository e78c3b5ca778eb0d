"""The settings every server shares are read once, into one EdgeConfig, and passed whole."""
import pytest

from lipsync_common.edge import auth
from lipsync_common.edge.config import EdgeConfig


def test_defaults_and_environment(monkeypatch):
    for name in ("MAX_CALLS", "METRICS_PORT", "MAX_CONNECTION_AGE_S", "LOG_LEVEL", "INTERNAL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert EdgeConfig.from_env() == EdgeConfig()
    monkeypatch.setenv("MAX_CALLS", "3")
    monkeypatch.setenv("METRICS_PORT", "9090")
    monkeypatch.setenv("MAX_CONNECTION_AGE_S", "0")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("INTERNAL_TOKEN", "s3")
    assert EdgeConfig.from_env() == EdgeConfig(3, 9090, 0, "debug", "s3")
    monkeypatch.setenv("MAX_CALLS", "many")
    with pytest.raises(SystemExit, match="MAX_CALLS must be an integer"):
        EdgeConfig.from_env()


def test_the_internal_token_travels_in_the_config():
    assert auth.internal_metadata("") == ()
    assert auth.internal_metadata("s3") == ((auth.INTERNAL_HEADER, "s3"),)
    assert auth.internal_interceptors("") == []
    assert len(auth.internal_interceptors("s3")) == 1


def test_service_configs_hold_it(monkeypatch):
    from gateway.config import GatewayConfig
    from services.evaluator.config import EvaluatorConfig
    from services.preprocess.config import PreprocessConfig
    monkeypatch.setenv("MAX_CALLS", "5")
    for cls in (GatewayConfig, PreprocessConfig, EvaluatorConfig):
        assert cls.from_env().edge.max_calls == 5

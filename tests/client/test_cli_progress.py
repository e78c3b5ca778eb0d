"""The CLI's progress: tqdm bars per stage with frames, rate and time left; silent off a terminal."""
import io

from lipsync.v1 import common_pb2
from lipsync_client.cli import Progress


def events():
    yield common_pb2.Progress(stage=common_pb2.STAGE_PREPROCESS)
    for done in range(0, 251, 50):
        yield common_pb2.Progress(stage=common_pb2.STAGE_GENERATE, done=done, total=250)
    yield common_pb2.Progress(stage=common_pb2.STAGE_DONE, done=250, total=250)


def test_progress_shows_stage_frames_rate_and_eta(monkeypatch):
    monkeypatch.setenv("LIPSYNC_PROGRESS", "1")
    out = io.StringIO()
    bar = Progress(quiet=False, file=out)
    for e in events():
        bar(e)
    bar.close()
    text = out.getvalue()
    assert "preprocess" in text and "generate" in text and "250/250" in text
    assert "frame/s" in text and "<" in text          # tqdm's rate and its elapsed<remaining


def test_progress_is_silent_off_a_terminal_and_when_quiet(monkeypatch):
    monkeypatch.delenv("LIPSYNC_PROGRESS", raising=False)
    for quiet in (False, True):
        out = io.StringIO()                            # not a terminal
        bar = Progress(quiet=quiet, file=out)
        for e in events():
            bar(e)
        bar.close()
        assert out.getvalue() == ""

"""The README's first command: `make demo` (tools.demo) lip-syncs the bundled sample end to end."""
import subprocess
import sys

from tests import helpers


def test_the_demo_writes_the_sample_video(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tools.demo", str(tmp_path)], cwd=helpers.ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "wrote " in r.stdout and "engine " in r.stdout
    import os

    from lipsync_common import options
    from lipsync_common.formats import media
    speech, rate = media.decode_audio(os.path.join(helpers.ROOT, "assets", "demo_speech.wav"), 60)
    frames, fps, has_audio, _ = helpers.decode_video(str(tmp_path / "demo.mp4"))
    assert fps == 25 and has_audio and len(frames) == options.frame_count(speech.shape[1], rate, 25) > 100

import numpy as np
import pytest

from lipsync_common.formats import media
from tests import helpers


@pytest.fixture(scope="session")
def speech_clip(tmp_path_factory, shared_file, stack):
    """8 s of real English speech (eng.wav) and a video the service generated for it from the portrait."""
    eng = shared_file("eng.wav")
    from lipsync_client import LipsyncClient
    tmp = tmp_path_factory.mktemp("speech")
    audio, _ = media.decode_audio(eng, 60, 16000, mono=True)
    audio = np.ascontiguousarray(audio[0][16000 * 2:16000 * 10])
    wav = helpers.write_wav(str(tmp / "speech.wav"), audio)
    face = helpers.write_png(str(tmp / "face.png"), helpers.face_image())
    out = str(tmp / "generated.mp4")
    with LipsyncClient(stack.addrs["gateway"]) as c:
        c.lipsync(face, wav, out)
    return {"audio": audio, "wav": wav, "face": face, "video": out, "tmp": tmp}

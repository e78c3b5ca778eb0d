"""Bad input gets the right status and a message a user can act on; nothing crashes, nothing is left behind."""
import os

import grpc
import numpy as np
import pytest

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_client import LipsyncError
from lipsync_client.client import upload_requests
from tests import helpers

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    m = {
        "face": helpers.write_png(str(d / "face.png"), helpers.face_image()),
        "speech": helpers.write_wav(str(d / "speech.wav"), helpers.speech_like([(0.3, False), (1.0, True)])),
        "video": helpers.face_video(str(d / "v.mp4"), n=20),
    }
    (d / "empty").write_bytes(b"")
    m["empty"] = str(d / "empty")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    m["random"] = str(d / "random.mp4")
    (d / "text.wav").write_text("this is a text file, not audio\n" * 50)
    m["text"] = str(d / "text.wav")
    data = open(m["video"], "rb").read()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])   # moov is at the end: cut off
    m["truncated"] = str(d / "truncated.mp4")
    m["noface"] = helpers.write_video(str(d / "noface.mp4"), [np.full((240, 320, 3), 30 * i, np.uint8) for i in range(6)])
    m["zero_audio"] = helpers.write_wav(str(d / "zero.wav"), np.zeros(0, np.float32))
    m["silence"] = helpers.write_wav(str(d / "silence.wav"), np.zeros(16000, np.float32))
    return m


def expect(client, tmp_path, face, audio, code, words, **options):
    with pytest.raises(LipsyncError) as e:
        client.lipsync(face, audio, str(tmp_path / "o.mp4"), common_pb2.LipsyncOptions(**options))
    assert e.value.code == code, e.value
    assert words in e.value.message, e.value.message
    assert not os.path.exists(tmp_path / "o.mp4") and not os.path.exists(tmp_path / "o.mp4.part")


@pytest.mark.parametrize("face, code, words", [
    ("random", INVALID, "face media"),
    ("truncated", INVALID, "face media"),
    ("empty", INVALID, "face media is empty"),
    ("text", INVALID, "face media"),
    ("noface", grpc.StatusCode.FAILED_PRECONDITION, "no face was found in any of the 6 frame"),
])
def test_bad_face_media(client, tmp_path, media, face, code, words, assert_healthy):
    expect(client, tmp_path, media[face], media["speech"], code, words)


@pytest.mark.parametrize("audio, words", [
    ("zero_audio", "zero length"),
    ("text", "audio"),
    ("empty", "audio is empty"),
    ("face", "no audio stream"),
])
def test_bad_audio(client, tmp_path, media, audio, words, assert_healthy):
    expect(client, tmp_path, media["face"], media[audio], INVALID, words)


@pytest.mark.parametrize("options, words", [
    ({"bbox_shift": 500}, "bbox_shift 500 is out of range"),
    ({"fps": 1000}, "fps 1000"),
    ({"fps": -5}, "fps -5"),
    ({"crf": 99}, "crf 99"),
    ({"extra_margin": -1}, "extra_margin -1"),
    ({"codec": 7}, "unknown codec"),
    ({"model_version": 9}, "unknown model_version"),
    ({"priority": 5}, "unknown priority 5"),
    ({"engine": "wav2lip"}, "unknown engine 'wav2lip'"),
])
def test_options_out_of_range(client, tmp_path, media, options, words, assert_healthy):
    expect(client, tmp_path, media["face"], media["speech"], INVALID, words, **options)


def test_musetalk_without_weights_names_the_missing_files(client, tmp_path, media, assert_healthy):
    expect(client, tmp_path, media["face"], media["speech"], grpc.StatusCode.FAILED_PRECONDITION,
           "musetalkV15/unet.pth", engine="musetalk")
    expect(client, tmp_path, media["face"], media["speech"], grpc.StatusCode.FAILED_PRECONDITION,
           "musetalk/pytorch_model.bin", engine="musetalk", model_version=common_pb2.MODEL_VERSION_V1)


def test_silence_is_valid_and_keeps_the_mouth_still(client, tmp_path, media, assert_healthy):
    out = str(tmp_path / "o.mp4")
    s = client.lipsync(media["face"], media["silence"], out,
                       common_pb2.LipsyncOptions(codec=common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB))
    frames, _, has_audio, _ = helpers.decode_video(out)
    assert s.frames == len(frames) == 25 and has_audio
    assert all(np.array_equal(f, frames[0]) for f in frames)


def raw_call(stub, requests):
    with pytest.raises(grpc.RpcError) as e:
        for _ in stub.Lipsync(iter(requests)):
            pass
    return e.value


def chunk(kind, offset, data, last):
    return gateway_pb2.LipsyncRequest(media=gateway_pb2.MediaChunk(
        kind=kind, chunk=common_pb2.Chunk(offset=offset, data=data, last=last)))


FACE, AUDIO = gateway_pb2.MEDIA_KIND_FACE, gateway_pb2.MEDIA_KIND_AUDIO
OPTS = gateway_pb2.LipsyncRequest(options=common_pb2.LipsyncOptions())


def test_stream_that_ends_early(gateway_stub, media, assert_healthy):
    face = open(media["face"], "rb").read()
    e = raw_call(gateway_stub, [OPTS, chunk(FACE, 0, face[:1000], False)])
    assert e.code() == INVALID and "ended before the face media and audio upload was complete" in e.details()


def test_chunks_out_of_order(gateway_stub, media, assert_healthy):
    face = open(media["face"], "rb").read()
    e = raw_call(gateway_stub, [OPTS, chunk(FACE, 0, face[:1000], False), chunk(FACE, 2000, face[2000:3000], False)])
    assert e.code() == INVALID and "out of order" in e.details()


def test_options_must_come_first_and_once(gateway_stub, media, assert_healthy):
    e = raw_call(gateway_stub, [chunk(FACE, 0, b"abc", True)])
    assert e.code() == INVALID and "first message must carry the options" in e.details()
    e = raw_call(gateway_stub, [OPTS, OPTS])
    assert e.code() == INVALID and "only once" in e.details()
    e = raw_call(gateway_stub, [])
    assert e.code() == INVALID


def test_unknown_media_kind(gateway_stub, assert_healthy):
    e = raw_call(gateway_stub, [OPTS, chunk(7, 0, b"abc", True)])
    assert e.code() == INVALID and "unknown media kind" in e.details()


def test_client_cancel_mid_stream_then_next_request_works(gateway_stub, client, tmp_path, media, assert_healthy):
    audio = helpers.write_wav(str(tmp_path / "long.wav"), helpers.speech_like([(20.0, True)]))
    call = gateway_stub.Lipsync(upload_requests(media["video"], audio, common_pb2.LipsyncOptions()))
    for resp in call:
        if resp.WhichOneof("payload") == "video":
            call.cancel()
            break
    with pytest.raises(grpc.RpcError) as e:
        next(call)
    assert e.value.code() == grpc.StatusCode.CANCELLED
    s = client.lipsync(media["face"], media["speech"], str(tmp_path / "after.mp4"))
    assert s.frames == 32


def test_cli_reports_a_missing_file_and_a_server_error(stack, media, tmp_path, capsys):
    from lipsync_client import cli
    code = cli.main(["--target", stack.addrs["gateway"], "run", "--image", str(tmp_path / "nope.png"),
                     "--audio", media["speech"], "--out", str(tmp_path / "o.mp4")])
    assert code == 1 and "no such file" in capsys.readouterr().err
    code = cli.main(["--target", stack.addrs["gateway"], "run", "--video", media["noface"],
                     "--audio", media["speech"], "--out", str(tmp_path / "o.mp4"), "--quiet"])
    assert code == 1 and "FAILED_PRECONDITION: no face" in capsys.readouterr().err
    code = cli.main(["--target", stack.addrs["gateway"], "run", "--image", media["face"],
                     "--audio", media["speech"], "--out", str(tmp_path / "o.mp4"), "--fps", "30", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "39 frames" in out and "at 30 fps" in out and "engine visemes" in out


def test_cli_priority_option_reaches_the_request():
    from lipsync_client import cli
    base = ["run", "--video", "v.mp4", "--audio", "a.wav", "--out", "o.mp4"]
    args = cli.build_parser().parse_args(base + ["--priority", "batch", "--parsing-mode", "raw",
                                                 "--left-cheek-width", "120"])
    o = cli._options(args)
    assert o.priority == common_pb2.PRIORITY_BATCH and o.parsing_mode == "raw" and o.left_cheek_width == 120
    assert not o.HasField("right_cheek_width")                  # unset: the table's default applies downstream
    assert cli._options(cli.build_parser().parse_args(base)).priority == common_pb2.PRIORITY_UNSPECIFIED


def test_error_reaches_a_client_that_keeps_its_side_open(gateway_stub, media, assert_healthy):
    """A bidi client may wait for the answer before half-closing: a failed job must not wait for it."""
    import threading
    release = threading.Event()
    state = {"released_before_error": False}

    def requests():
        yield from upload_requests(media["noface"], media["speech"], common_pb2.LipsyncOptions())
        release.wait(60)                      # keep the send side open until the test lets go
        state["released_before_error"] = release.is_set() and "error" not in state

    with pytest.raises(grpc.RpcError) as e:
        for _ in gateway_stub.Lipsync(requests()):
            pass
    state["error"] = True
    release.set()
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no face" in e.value.details()
    assert not state["released_before_error"]

"""The evaluator over gRPC (Evaluate, Compare), the CLI's JSON schema, and evaluation asked through the gateway."""
import json
import os

import grpc
import numpy as np
import pytest

from lipsync.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc
from lipsync_common.formats.chunks import file_chunks
from services.evaluator import cli
from tests import helpers

METRICS = {"sync_offset_free", "sync_conf_free", "lmd", "lse_d", "lse_c", "sync_offset_syncnet", "csim_dlib",
           "csim_arcface", "fid_full", "kid_full", "fid_face", "kid_face"}


def requests(files: dict, report=False):
    yield evaluator_pb2.EvaluateRequest(config=evaluator_pb2.EvaluateConfig(report_html=report))
    for role, path in files.items():
        for offset, data, last in file_chunks(path, 256 * 1024):
            yield evaluator_pb2.EvaluateRequest(file=evaluator_pb2.FileChunk(
                role=role, chunk=common_pb2.Chunk(offset=offset, data=data, last=last)))


@pytest.fixture(scope="module")
def stub(stack):
    with grpc.insecure_channel(stack.addrs["evaluator"]) as ch:
        yield evaluator_pb2_grpc.EvaluatorStub(ch)


@pytest.fixture(scope="module")
def still_video(speech_clip):
    """A 'model' whose mouth never moves: the portrait repeated for the clip's length."""
    frames = [helpers.face_image()] * 200
    return helpers.write_video(str(speech_clip["tmp"] / "still.mp4"), frames, fps=25)


def test_evaluate_over_grpc(stub, speech_clip):
    res = stub.Evaluate(requests({"source": speech_clip["face"], "generated": speech_clip["video"],
                                  "audio": speech_clip["wav"]}, report=True))
    m = {x.name: x for x in res.metrics}
    assert set(m) == METRICS
    assert m["sync_offset_free"].value == 0 and m["sync_conf_free"].value > 0.2
    assert not m["lse_d"].HasField("value")
    assert m["lse_d"].unavailable.startswith("unavailable: syncnet weights not found at")
    assert m["csim_arcface"].unavailable.startswith("unavailable:")
    assert m["csim_dlib"].value > 0.9 and m["csim_dlib"].better == "higher"
    assert np.isfinite(m["fid_face"].value) and m["fid_face"].value >= 0
    body = json.loads(res.json)
    assert body["schema"] == "lipsync.eval/1" and body["frames"]["generated"] == 200
    pf = body["per_frame"]
    assert len(pf["csim"]) == len(pf["csim_frames"]) == 50 and len(pf["lmd"]) == 200 and pf["sync_windows"]
    assert b"data:image/png;base64," in res.report_html          # matplotlib plots, embedded


def test_compare_picks_the_model_that_moves_the_mouth(stub, speech_clip, still_video):
    res = stub.Compare(requests({"source": speech_clip["face"], "audio": speech_clip["wav"],
                                 "model/still": still_video, "model/warp": speech_clip["video"]}))
    m = {x.name: x for x in res.metrics}
    assert m["sync_conf_free"].winner == "warp" and m["sync_conf_free"].better == "higher"
    values = {v.model: v for v in m["sync_conf_free"].values}
    assert [v.model for v in m["sync_conf_free"].values] == ["still", "warp"]    # the baseline comes first
    assert values["warp"].improvement > 0 and values["still"].improvement == 0
    assert m["lse_c"].unavailable.startswith("unavailable: syncnet")


def test_bad_requests(stub, speech_clip):
    with pytest.raises(grpc.RpcError) as e:
        stub.Evaluate(requests({"source": speech_clip["face"], "audio": speech_clip["wav"]}))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "generated" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Evaluate(requests({"source": speech_clip["face"], "generated": speech_clip["wav"],
                                "audio": speech_clip["wav"]}))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        stub.Evaluate(requests({"weird": speech_clip["wav"]}))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "role" in e.value.details()


def test_cli_json_schema_and_table(speech_clip, still_video, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EVAL_FID_FRAMES", "8")
    out = str(tmp_path / "r.json")
    assert cli.evaluate_main(["--source_video", speech_clip["face"], "--generated_video", speech_clip["video"],
                              "--audio", speech_clip["wav"], "--output_json", out,
                              "--report", str(tmp_path / "r.html"), "--plots", str(tmp_path / "plots")]) == 0
    r = json.load(open(out))
    assert r["schema"] == "lipsync.eval/1" and set(r["metrics"]) == METRICS
    for name, metric in r["metrics"].items():
        assert ("unavailable" in metric) == (metric["value"] is None), name
    assert {"inputs", "frames", "weights", "notes", "per_frame", "seconds"} <= set(r)
    assert "lse_d" in capsys.readouterr().out and os.path.getsize(tmp_path / "r.html") > 1000
    pngs = sorted(os.listdir(tmp_path / "plots"))
    assert {"csim.png", "mouth_opening.png", "sync_offset.png"} <= set(pngs)
    assert all(open(tmp_path / "plots" / p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in pngs)
    out = str(tmp_path / "c.json")
    assert cli.compare_main(["--source_video", speech_clip["face"], "--audio", speech_clip["wav"],
                             "--model1_output", still_video, "--model2_output", speech_clip["video"],
                             "--model1_name", "still", "--model2_name", "warp", "--output_json", out,
                             "--plots", str(tmp_path / "cmp")]) == 0
    assert "compare_sync_conf_free.png" in os.listdir(tmp_path / "cmp")
    assert "csim.png" in os.listdir(tmp_path / "cmp" / "warp")
    c = json.load(open(out))
    assert c["schema"] == "lipsync.eval/1/compare" and c["models"] == ["still", "warp"]
    assert c["metrics"]["sync_conf_free"]["winner"] == "warp"
    assert "winner" in capsys.readouterr().out


def test_lipsync_job_can_ask_for_its_evaluation(client, speech_clip, tmp_path, assert_healthy):
    s = client.lipsync(speech_clip["face"], speech_clip["wav"], str(tmp_path / "o.mp4"),
                       common_pb2.LipsyncOptions(evaluate=True))
    m = {x.name: x for x in s.evaluation.metrics}
    assert m["sync_offset_free"].value == 0 and m["csim_dlib"].value > 0.9
    assert json.loads(s.evaluation.json)["frames"]["generated"] == s.frames


def test_with_syncnet_weights_installed_lse_are_numbers(speech_clip, tmp_path, monkeypatch):
    """Random weights in the published layout: the LSE path runs end to end (numbers, not meaning)."""
    from tests.evaluator.test_syncnet import _random_syncnet, _save_published
    from services.evaluator.syncnet import SYNCNET_FILE
    models = tmp_path / "models"
    _save_published(_random_syncnet(), str(models / SYNCNET_FILE))
    monkeypatch.setenv("MODELS_DIR", str(models))
    monkeypatch.setenv("EVAL_FID_FRAMES", "4")
    out = str(tmp_path / "r.json")
    assert cli.evaluate_main(["--source_video", speech_clip["face"], "--generated_video", speech_clip["video"],
                              "--audio", speech_clip["wav"], "--output_json", out]) == 0
    r = json.load(open(out))
    for k in ("lse_d", "lse_c", "sync_offset_syncnet"):
        assert isinstance(r["metrics"][k]["value"], (int, float)) and "unavailable" not in r["metrics"][k]
    assert r["weights"]["syncnet"].endswith(SYNCNET_FILE) and len(r["per_frame"]["syncnet_conf"]) > 100

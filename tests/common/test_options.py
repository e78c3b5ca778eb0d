"""The one options table: every stage rejects an out-of-range value with the same message, and the CLI's defaults
are the table's."""
import math

import pytest

from lipsync.v1 import common_pb2, preprocess_pb2, render_pb2
from lipsync_common import options


@pytest.mark.parametrize("name", sorted(options.OPTIONS))
def test_each_option_accepts_its_range_and_names_it_when_out(name):
    o = options.OPTIONS[name]
    assert options.check(name, o.lo if not o.zero else o.hi) is not None
    assert options.check(name, o.default) == o.default
    for bad in (o.hi + 1, o.lo - 1 if not o.zero else -1):
        with pytest.raises(options.OptionError, match=f"^{name} .* out of range"):
            options.check(name, bad)
    if not o.integer:
        with pytest.raises(options.OptionError, match="not a finite number"):
            options.check(name, math.nan)


def test_request_and_internal_messages_share_the_rules():
    req = common_pb2.LipsyncOptions(bbox_shift=101)
    prep = preprocess_pb2.PrepareOptions(bbox_shift=101)
    msgs = []
    for check, msg in ((options.check_request, req), (options.check_face_options, prep)):
        with pytest.raises(options.OptionError) as e:
            check(msg)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] == "bbox_shift 101 is out of range: use a value in [-100, 100]"
    with pytest.raises(options.OptionError, match="crf 60"):
        options.crf(render_pb2.RenderConfig(crf=60))
    assert options.crf(render_pb2.RenderConfig()) == 18 == options.OPTIONS["crf"].default
    with pytest.raises(options.OptionError, match="unknown engine 'nope'"):
        options.check_request(common_pb2.LipsyncOptions(engine="nope"))
    with pytest.raises(options.OptionError, match="face_hint"):
        options.check_request(common_pb2.LipsyncOptions(face_hint=common_pb2.FaceBox(x1=5, y1=0, x2=1, y2=9)))
    options.check_request(common_pb2.LipsyncOptions())          # every default passes


def test_cli_flags_take_the_tables_defaults_and_names():
    import argparse

    from lipsync_client import cli
    p = argparse.ArgumentParser()
    cli._add_media(p)
    args = p.parse_args(["--video", "v.mp4", "--audio", "a.wav"])
    assert args.bbox_shift == options.OPTIONS["bbox_shift"].default and args.fps == options.OPTIONS["fps"].default
    assert cli.VERSIONS is options.VERSION_BY_NAME and cli.PRIORITIES is options.PRIORITY_BY_NAME
    with pytest.raises(SystemExit):
        p.parse_args(["--video", "v.mp4", "--audio", "a.wav", "--engine", "nope"])


def test_frame_count_is_exact_where_the_float_product_is_not():
    assert math.floor(18560 / 16000 * 25) == 28                   # MuseTalk's product
    assert options.frame_count(18560, 16000, 25) == 29
    assert options.frame_count(0, 16000, 25) == 0 and options.frame_count(1, 16000, 25) == 1
    assert options.frame_count(16000 * 10, 16000, 29.97) == 299


def test_parsing_mode_and_cheek_widths_as_musetalks_app():
    o = common_pb2.LipsyncOptions()
    assert options.parsing_mode(o.parsing_mode) == "jaw"
    assert options.optional_int(o, "left_cheek_width") == 90 == options.optional_int(o, "right_cheek_width")
    for bad, words in ((common_pb2.LipsyncOptions(parsing_mode="neck"), "unknown parsing_mode 'neck'"),
                       (common_pb2.LipsyncOptions(left_cheek_width=10), "left_cheek_width 10 is out of range"),
                       (preprocess_pb2.PrepareOptions(right_cheek_width=161), "right_cheek_width 161")):
        with pytest.raises(options.OptionError, match=words):
            options.check_face_options(bad)

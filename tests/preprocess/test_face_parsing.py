"""Face parsing: checkpoint compatibility (key names/shapes of 79999_iter.pth), the FaceParser lifecycle on
random weights saved in the official layout, and MuseTalk's mask rule on hand-made parsing maps."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from services.preprocess import face_parsing as FP  # noqa: E402

# Names and shapes as zllrunning/face-parsing.PyTorch model.py + resnet.py (and MuseTalk's copy) define them.
REAL_KEYS = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.bn1.running_var": (64,),
    "cp.resnet.layer1.0.conv1.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer2.0.downsample.1.running_mean": (128,),
    "cp.resnet.layer4.1.bn2.num_batches_tracked": (),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm16.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.conv.conv.weight": (128, 512, 3, 3),
    "cp.arm32.bn_atten.bias": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_head16.bn.weight": (128,),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return FP.BiSeNet()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, net):
    d = tmp_path_factory.mktemp("models")
    os.makedirs(d / "face-parse-bisent")
    torch.save(net.state_dict(), d / "face-parse-bisent" / "79999_iter.pth")
    return str(d)


@pytest.fixture(scope="module")
def parser(models_dir):
    return FP.FaceParser(models_dir)


def test_state_dict_matches_the_published_checkpoint(net):
    sd = net.state_dict()
    for k, shape in REAL_KEYS.items():
        assert tuple(sd[k].shape) == shape, k
    assert len(sd) == 191
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")) == 13_313_088
    assert not [k for k in sd if k.startswith(("sp.", "cp.resnet.fc"))]


def test_files_and_missing_file_error(tmp_path, models_dir):
    assert FP.missing_files(models_dir) == []
    want = os.path.join(str(tmp_path), "face-parse-bisent", "79999_iter.pth")
    assert FP.missing_files(str(tmp_path)) == [want]
    with pytest.raises(FileNotFoundError, match="79999_iter.pth") as e:
        FP.FaceParser(str(tmp_path))
    assert want in str(e.value)


def test_loading_is_strict(tmp_path, net):
    os.makedirs(tmp_path / "face-parse-bisent")
    path = tmp_path / "face-parse-bisent" / "79999_iter.pth"
    sd = dict(net.state_dict())
    sd.pop("ffm.conv1.weight")
    torch.save(sd, path)
    with pytest.raises(RuntimeError, match="ffm.conv1.weight"):
        FP.FaceParser(str(tmp_path))
    # Old saves without BatchNorm counters and DataParallel's "module." prefix still load.
    sd = {"module." + k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, path)
    FP.FaceParser(str(tmp_path))


def test_backbone_file_loads_into_the_context_path(tmp_path, net):
    res = {k[len("cp.resnet."):]: torch.randn_like(v.float()) if v.is_floating_point() else v
           for k, v in net.state_dict().items() if k.startswith("cp.resnet.")}
    res["fc.weight"], res["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)   # torchvision's, skipped
    torch.save(res, tmp_path / "resnet18-5c106cde.pth")
    other = FP.BiSeNet(backbone_path=str(tmp_path / "resnet18-5c106cde.pth"))
    assert torch.equal(other.state_dict()["cp.resnet.layer3.1.conv2.weight"], res["layer3.1.conv2.weight"])


def test_parse_and_mask_shapes(parser, net):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, 96, 80, 3), dtype=np.uint8)
    labels = parser.parse(crops)
    assert labels.shape == (2, 96, 80) and labels.dtype == np.uint8 and labels.max() < 19
    # Same labels as the network's own argmax on the normalised 512x512 input.
    with torch.no_grad():
        ref = net.eval()(parser._prep(crops[:1]))[0].argmax(1)[0].numpy().astype(np.uint8)
    import cv2
    assert np.array_equal(labels[0], cv2.resize(ref, (80, 96), interpolation=cv2.INTER_NEAREST_EXACT))
    m = parser.mask(crops[0], labels[0])
    assert m.shape == (96, 80) and m.dtype == np.uint8


def face_map(h=128, w=128):
    """Hand-made parsing: hair on top, skin oval, eyes, nose, lips, neck below, background elsewhere."""
    import cv2
    p = np.zeros((h, w), np.uint8)
    p[: h // 5] = 17
    cv2.ellipse(p, (w // 2, h // 2), (w // 3, int(h * 0.4)), 0, 0, 360, 1, -1)
    p[int(h * 0.9):, w // 3: 2 * w // 3] = 14
    p[int(h * 0.35): int(h * 0.4), w // 3: w // 3 + 10] = 4
    p[int(h * 0.4): int(h * 0.6), w // 2 - 6: w // 2 + 6] = 10
    p[int(h * 0.68): int(h * 0.73), w // 2 - 15: w // 2 + 15] = 12
    p[int(h * 0.73): int(h * 0.78), w // 2 - 15: w // 2 + 15] = 13
    return p


def far_from(region, k):
    """Pixels more than k // 2 away (in x and y) from region."""
    import cv2
    near = cv2.dilate(region.astype(np.uint8), np.ones((k, k), np.uint8))
    return near == 0


@pytest.mark.parametrize("mode", ["raw", "jaw", "neck"])
def test_mask_is_zero_away_from_kept_classes_and_feathered(mode):
    p = face_map()
    m = FP.blend_mask(p, mode=mode, blur_frac=0.1)
    k = int(0.1 * 128 // 2 * 2) + 1
    keep = FP.kept_region(p, mode)
    keep[: 64] = False                                   # upper_boundary_ratio 0.5
    assert m.dtype == np.uint8 and m.shape == p.shape
    assert (m[far_from(keep, k)] == 0).all()
    assert (m[:64 - k // 2] == 0).all()                  # nothing above the boundary band
    assert m[int(128 * 0.75), 64] == 255                 # lips, deep inside
    assert ((m > 0) & (m < 255)).sum() > 100             # a soft edge
    col = m[:, 64].astype(int)                           # down the middle: rises gradually, not in one step
    assert np.abs(np.diff(col)).max() < 128
    raw = FP.kept_region(p, "raw")
    assert raw[int(128 * 0.75), 64] and not raw[int(128 * 0.5), 64] and not raw[120, 64]  # lip, nose, neck
    assert FP.kept_region(p, "neck")[120, 64]


def test_jaw_rule_and_no_face():
    assert FP.jaw_kernel().shape == (33, 33) and FP.jaw_kernel().sum() == 373
    assert FP.jaw_kernel()[:10].sum() == 0 and FP.jaw_kernel()[10].sum() == 1
    p = face_map(512, 512)
    jaw = FP.kept_region(p, "jaw")
    assert not jaw[p == 10].any()                        # nose removed
    assert jaw[np.isin(p, (11, 12, 13))].all()           # mouth and lips always kept
    assert not jaw[500, 256]                              # neck not kept
    assert jaw[(p == 1) & ~FP.cheek_columns()].all()     # skin between the cheek columns kept
    assert FP.blend_mask(np.full((64, 64), 17, np.uint8)).max() == 0
    assert FP.blend_mask(np.zeros((64, 64), np.uint8), mode="raw").max() == 0
    with pytest.raises(ValueError):
        FP.kept_region(p, "cheeks")


def test_face_box_limits_the_mask():
    p = face_map()
    box = (40, 60, 90, 110)
    m = FP.blend_mask(p, face_box=box, mode="raw", blur_frac=0.1)
    inside = np.zeros_like(p, bool)
    inside[60:110, 40:90] = True
    assert (m[far_from(inside, 13)] == 0).all()
    assert m.max() == 255
    crop_box, s = FP.musetalk_crop_box((100, 50, 180, 150))
    assert s == 75 and crop_box == [65, 25, 215, 175]


def test_prepare_uses_the_parser_for_masks(tmp_path, parser):
    import hashlib

    from lipsync_common.formats.source_cache import SourceCache
    from lipsync_common.faces.landmarks import Landmarker
    from services.preprocess.prepare import PrepareOptions, prepare
    from tests import helpers

    path = helpers.face_video(str(tmp_path / "v.mp4"), n=2)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    cache = SourceCache(str(tmp_path / "cache"))
    lm = Landmarker()
    with pytest.raises(ValueError, match="face-parsing weights"):
        prepare(path, digest, PrepareOptions(mask="bisenet"), cache, lm, 10**8, 100)
    parsed, _ = prepare(path, digest, PrepareOptions(mask="bisenet"), cache, lm, 10**8, 100, parser=parser)
    plain, _ = prepare(path, digest, PrepareOptions(), cache, lm, 10**8, 100)
    assert parsed.source_id != plain.source_id and parsed.options["mask"] == "bisenet"
    a, b = cache.get(parsed.source_id), cache.get(plain.source_id)
    crop = a.crop(0)
    want = parser.mask(crop, blur_frac=0.15)                      # random weights: wiring, not quality
    assert np.array_equal(a.mask(0), want) and not np.array_equal(want, b.mask(0))


def test_parsing_mode_and_cheek_widths_reach_the_bisenet_mask_and_the_cache_key(tmp_path, parser):
    """MuseTalk v1.5's controls, through prepare: the stored mask is the parser's for that mode and those widths,
    and each setting is its own cache entry; on the landmark mask they change nothing but the key."""
    import hashlib

    from lipsync_common.faces.landmarks import Landmarker
    from lipsync_common.formats.source_cache import SourceCache
    from services.preprocess.prepare import PrepareOptions, prepare
    from tests import helpers

    path = helpers.face_video(str(tmp_path / "v.mp4"), n=2)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    cache, lm = SourceCache(str(tmp_path / "cache")), Landmarker()
    ids = set()
    for mode, left, right in (("jaw", 90, 90), ("raw", 90, 90), ("jaw", 40, 150)):
        opts = PrepareOptions(mask="bisenet", parsing_mode=mode, left_cheek_width=left, right_cheek_width=right)
        meta, _ = prepare(path, digest, opts, cache, lm, 10**8, 100, parser=parser)
        entry = cache.get(meta.source_id)
        want = parser.mask(entry.crop(0), blur_frac=0.15, mode=mode, left_cheek_width=left, right_cheek_width=right)
        assert np.array_equal(entry.mask(0), want), (mode, left, right)
        assert meta.options["parsing_mode"] == mode and meta.options["left_cheek_width"] == left
        ids.add(meta.source_id)
    assert len(ids) == 3
    plain = [prepare(path, digest, PrepareOptions(parsing_mode=m), cache, lm, 10**8, 100)[0] for m in ("jaw", "raw")]
    a, b = (cache.get(m.source_id) for m in plain)
    assert plain[0].source_id != plain[1].source_id and np.array_equal(a.mask(0), b.mask(0))   # a no-op there

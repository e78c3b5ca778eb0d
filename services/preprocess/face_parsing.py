"""Face parsing (BiSeNet, 19 CelebAMask-HQ classes) and MuseTalk's lower-face blend mask.

Weights: the checkpoint MuseTalk downloads, ``79999_iter.pth`` from zllrunning/face-parsing.PyTorch
(BiSeNet with a ResNet-18 context path, trained on CelebAMask-HQ at 512x512), and torchvision's ImageNet
ResNet-18 ``resnet18-5c106cde.pth`` that the reference code loads into the backbone before the checkpoint.
Expected layout under MODELS_DIR (the same as MuseTalk's ``models/``)::

    MODELS_DIR/face-parse-bisent/79999_iter.pth          required: the whole network, backbone included
    MODELS_DIR/face-parse-bisent/resnet18-5c106cde.pth   optional: backbone init only

``BiSeNet.state_dict()`` has exactly the checkpoint's 191 keys and shapes, so the real file loads with
``strict=True``. Building the network downloads nothing: the reference fetches the ResNet-18 weights from a
URL in its constructor; here they are read from ``backbone_path`` when one is given, and ``FaceParser`` does
not read them at all because every backbone tensor is overwritten by 79999_iter.pth anyway.

Classes (index: label): 0 background, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye, 5 r_eye, 6 eye_g, 7 l_ear,
8 r_ear, 9 ear_r, 10 nose, 11 mouth, 12 u_lip, 13 l_lip, 14 neck, 15 neck_l, 16 cloth, 17 hair, 18 hat.

Preprocessing as MuseTalk's FaceParsing: RGB resized to 512x512 bilinear (PIL-style, antialiased when
shrinking), /255, ImageNet mean/std; the first (main) output's argmax gives the labels.
"""
from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

N_CLASSES = 19
INPUT_SIZE = 512
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

FACE_PARSING_MODEL = os.path.join("face-parse-bisent", "79999_iter.pth")
FACE_PARSING_BACKBONE = os.path.join("face-parse-bisent", "resnet18-5c106cde.pth")
FACE_PARSING_FILES = (FACE_PARSING_MODEL,)            # what FaceParser needs
FACE_PARSING_OPTIONAL_FILES = (FACE_PARSING_BACKBONE,)  # MuseTalk downloads it; unused once the model loads

# MuseTalk's FaceParsing.__call__ modes (v1.5 scripts default to "jaw").
RAW_CLASSES = (1, 11, 12, 13)          # skin, mouth, upper lip, lower lip
NECK_CLASSES = (1, 11, 12, 13, 14)     # ... and neck
JAW_MOUTH_CLASSES = (11, 12, 13)       # jaw: always kept
JAW_SKIN, JAW_NOSE = 1, 10             # jaw: skin grown downwards and narrowed at the cheeks, minus the nose
MODES = ("jaw", "raw", "neck")


def missing_files(models_dir: str) -> list[str]:
    """Full paths of the required files that are absent under models_dir."""
    paths = [os.path.join(models_dir, f) for f in FACE_PARSING_FILES]
    return [p for p in paths if not os.path.isfile(p)]


def _build_network_classes():
    import torch
    from torch import nn
    import torch.nn.functional as F

    class ConvBNReLU(nn.Module):                      # keys: conv.weight, bn.*
        def __init__(self, cin, cout, ks=3, stride=1, padding=1):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    class BasicBlock(nn.Module):                      # torchvision's names: conv1 bn1 conv2 bn2 downsample.{0,1}
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if cin != cout or stride != 1:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu((x if self.downsample is None else self.downsample(x)) + y)

    class Resnet18(nn.Module):                        # no fc; returns the 1/8, 1/16, 1/32 features
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            chans = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
            for i, (cin, cout, stride) in enumerate(chans, 1):
                setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))

        def forward(self, x):
            x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
            f8 = self.layer2(x)
            f16 = self.layer3(f8)
            return f8, f16, self.layer4(f16)

    class AttentionRefinementModule(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = ConvBNReLU(cin, cout)
            self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
            self.bn_atten = nn.BatchNorm2d(cout)

        def forward(self, x):
            feat = self.conv(x)
            return feat * torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))

    class ContextPath(nn.Module):
        def __init__(self):
            super().__init__()
            self.resnet = Resnet18()
            self.arm16 = AttentionRefinementModule(256, 128)
            self.arm32 = AttentionRefinementModule(512, 128)
            self.conv_head32 = ConvBNReLU(128, 128)
            self.conv_head16 = ConvBNReLU(128, 128)
            self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

        def forward(self, x):
            f8, f16, f32 = self.resnet(x)
            avg = self.conv_avg(F.adaptive_avg_pool2d(f32, 1))
            s32 = self.arm32(f32) + F.interpolate(avg, f32.shape[2:], mode="nearest")
            up32 = self.conv_head32(F.interpolate(s32, f16.shape[2:], mode="nearest"))
            s16 = self.arm16(f16) + up32
            up16 = self.conv_head16(F.interpolate(s16, f8.shape[2:], mode="nearest"))
            return f8, up16, up32

    class FeatureFusionModule(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
            self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
            self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

        def forward(self, fsp, fcp):
            feat = self.convblk(torch.cat([fsp, fcp], dim=1))
            atten = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
            return feat * atten + feat

    class BiSeNetOutput(nn.Module):
        def __init__(self, cin, cmid, n_classes):
            super().__init__()
            self.conv = ConvBNReLU(cin, cmid)
            self.conv_out = nn.Conv2d(cmid, n_classes, 1, bias=False)

        def forward(self, x):
            return self.conv_out(self.conv(x))

    class BiSeNet(nn.Module):
        """The reference BiSeNet (spatial path replaced by the ResNet 1/8 feature, as in face-parsing.PyTorch).

        forward(x) -> (out, out16, out32): logits [N, n_classes, H, W] of the main head and the two auxiliary
        heads, each upsampled bilinearly (align_corners=True) to the input size; parsing uses the first.
        """

        def __init__(self, n_classes: int = N_CLASSES, backbone_path: str | None = None):
            super().__init__()
            self.cp = ContextPath()
            self.ffm = FeatureFusionModule(256, 256)
            self.conv_out = BiSeNetOutput(256, 256, n_classes)
            self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
            self.conv_out32 = BiSeNetOutput(128, 64, n_classes)
            if backbone_path:
                self.load_backbone(backbone_path)

        def load_backbone(self, path: str) -> None:
            """torchvision ResNet-18 weights into cp.resnet (its fc.* entries skipped), as the reference does."""
            sd = _torch_load(path)
            self.cp.resnet.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")}, strict=False)

        def _up(self, y, hw):
            return F.interpolate(y, hw, mode="bilinear", align_corners=True)

        def logits(self, x):
            """The main head only (what parsing needs), at the input size."""
            f8, cp8, _ = self.cp(x)
            return self._up(self.conv_out(self.ffm(f8, cp8)), x.shape[2:])

        def forward(self, x):
            f8, cp8, cp16 = self.cp(x)
            hw = x.shape[2:]
            return (self._up(self.conv_out(self.ffm(f8, cp8)), hw), self._up(self.conv_out16(cp8), hw),
                    self._up(self.conv_out32(cp16), hw))

    return BiSeNet


_BISENET = None


def BiSeNet(n_classes: int = N_CLASSES, backbone_path: str | None = None):
    """Build the network (torch is imported on first use). Never downloads anything."""
    global _BISENET
    if _BISENET is None:
        _BISENET = _build_network_classes()
    return _BISENET(n_classes, backbone_path)


def _torch_load(path: str) -> dict:
    import torch
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def load_checkpoint(net, path: str) -> None:
    """Strict load of 79999_iter.pth (a plain state dict saved from the bare module). BatchNorm's
    num_batches_tracked counters, absent from pre-0.4.1 saves and unused in eval, are filled in if missing."""
    import torch
    sd = _torch_load(path)
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros_like(v)
    net.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------------------------- mask rule

def jaw_kernel() -> np.ndarray:
    """MuseTalk's 33x33 'jaw' dilation element (anchor at the centre, row/col 16): a cone widening by one
    pixel a side per row from a single pixel on row 10 to 21 wide on row 20, then 21 wide down to row 32.
    Dilating with it grows the skin region mostly upwards (up to 16 px) and a narrow tip down (6 px)."""
    r, c = np.mgrid[0:33, 0:33]
    cone = (r >= 10) & (r <= 20) & (np.abs(c - 16) <= r - 10)
    tail = (r >= 21) & (np.abs(c - 16) <= 10)
    return (cone | tail).astype(np.uint8)


def cheek_columns(left_cheek_width: int = 90, right_cheek_width: int = 90) -> np.ndarray:
    """bool [512, 512]: the columns MuseTalk treats as cheeks (x <= 256 - left, x >= 256 + right)."""
    x = np.arange(INPUT_SIZE)
    cols = (x <= INPUT_SIZE // 2 - left_cheek_width) | (x >= INPUT_SIZE // 2 + right_cheek_width)
    return np.broadcast_to(cols, (INPUT_SIZE, INPUT_SIZE))


def kept_region(parsing: np.ndarray, mode: str = "jaw", left_cheek_width: int = 90,
                right_cheek_width: int = 90) -> np.ndarray:
    """bool map of the pixels MuseTalk's FaceParsing(mode) sets to 255, same size as `parsing`.

    raw: classes 1, 11, 12, 13.  neck: those and 14.  jaw (v1.5 default): skin (1) dilated with jaw_kernel(),
    then in the cheek columns eroded twice with a 35x3 ellipse, minus the nose (10); plus 11, 12, 13. The jaw
    morphology is defined on 512x512 labels, so other sizes are taken to 512 (nearest) and back for it.
    """
    p = np.asarray(parsing)
    if mode == "raw":
        return np.isin(p, RAW_CLASSES)
    if mode == "neck":
        return np.isin(p, NECK_CLASSES)
    if mode != "jaw":
        raise ValueError(f"unknown face parsing mode {mode!r} (one of {MODES})")
    h, w = p.shape
    p512 = p if (h, w) == (INPUT_SIZE, INPUT_SIZE) else cv2.resize(
        p.astype(np.uint8), (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_NEAREST_EXACT)
    skin = (p512 == JAW_SKIN).astype(np.uint8) * 255
    dilated = cv2.dilate(skin, jaw_kernel(), iterations=1)
    eroded = cv2.erode(dilated, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3)), iterations=2)
    cheeks = cheek_columns(left_cheek_width, right_cheek_width)
    grown = np.where(cheeks, eroded, dilated) == 255
    keep512 = (grown & (p512 != JAW_NOSE)) | np.isin(p512, JAW_MOUTH_CLASSES)
    if (h, w) == (INPUT_SIZE, INPUT_SIZE):
        return keep512
    return cv2.resize(keep512.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)


def blend_mask(parsing: np.ndarray, face_box: Sequence[int] | None = None, mode: str = "jaw",
               upper_boundary_ratio: float = 0.5, blur_frac: float = 0.1, left_cheek_width: int = 90,
               right_cheek_width: int = 90) -> np.ndarray:
    """uint8 [H, W] alpha (0..255) for pasting a generated face over the crop that `parsing` labels.

    MuseTalk's blending.get_image_prepare_material, on the crop's own pixels: the kept region of `mode`
    (kept_region), cut to face_box (x1, y1, x2, y2 in crop pixels; None = the whole crop), rows above
    int(H * upper_boundary_ratio) cleared (only the lower face is replaced), then a Gaussian feather of odd
    size k = int(blur_frac * W // 2 * 2) + 1 (sigma from k, as OpenCV's sigma=0). MuseTalk's crop is the face
    box expanded 1.5x (musetalk_crop_box) with blur_frac 0.1 (get_image uses 0.05); on a crop that is the face
    box itself the same feather is blur_frac 0.15. Unlike MuseTalk the blur pads with zeros, so the mask also
    fades at the crop border. The result is exactly 0 further than k // 2 pixels from the kept region.
    """
    keep = kept_region(parsing, mode, left_cheek_width, right_cheek_width)
    h, w = keep.shape
    m = np.zeros((h, w), np.uint8)
    x1, y1, x2, y2 = (0, 0, w, h) if face_box is None else (int(v) for v in face_box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    m[y1:y2, x1:x2] = keep[y1:y2, x1:x2] * np.uint8(255)
    m[:max(0, int(h * upper_boundary_ratio))] = 0
    k = int(blur_frac * w // 2 * 2) + 1
    if k > 1:
        m = cv2.GaussianBlur(m, (k, k), 0, borderType=cv2.BORDER_CONSTANT)
    return m


def musetalk_crop_box(face_box: Sequence[int], expand: float = 1.5) -> tuple[list[int], int]:
    """MuseTalk's blending.get_crop_box: the square of half-side int(max(w, h) // 2 * expand) around the box
    centre, in frame pixels (may leave the frame), and that half-side. It is the region MuseTalk parses."""
    x, y, x1, y1 = (int(v) for v in face_box)
    xc, yc = (x + x1) // 2, (y + y1) // 2
    s = int(max(x1 - x, y1 - y) // 2 * expand)
    return [xc - s, yc - s, xc + s, yc + s], s


# ------------------------------------------------------------------------------------------------ runtime

class FaceParser:
    """Load once, parse many. FaceParser(models_dir) raises FileNotFoundError naming any missing file."""

    def __init__(self, models_dir: str, device: str = "cpu", batch_size: int = 8, left_cheek_width: int = 90,
                 right_cheek_width: int = 90):
        missing = missing_files(models_dir)
        if missing:
            raise FileNotFoundError(
                "face parsing weights not found: " + ", ".join(missing)
                + f" (expected under MODELS_DIR={models_dir!r}: {', '.join(FACE_PARSING_FILES)};"
                " MuseTalk's models/face-parse-bisent/79999_iter.pth from zllrunning/face-parsing.PyTorch)")
        import torch
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.left_cheek_width, self.right_cheek_width = left_cheek_width, right_cheek_width
        net = BiSeNet(N_CLASSES)
        load_checkpoint(net, os.path.join(models_dir, FACE_PARSING_MODEL))
        self.net = net.to(self.device).eval()
        self._mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)

    def _prep(self, crops: np.ndarray):
        import torch
        import torch.nn.functional as F
        x = torch.from_numpy(np.array(crops, np.uint8, copy=True)).to(self.device).permute(0, 3, 1, 2).float()
        if x.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            # PIL's BILINEAR (what the reference uses) is antialiased when shrinking and yields uint8.
            x = F.interpolate(x, (INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
            x = x.round().clamp(0, 255)
        return (x / 255.0 - self._mean) / self._std

    def parse(self, crops_rgb: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB crops -> uint8 [N, H, W] class ids (argmax at 512x512, resized back nearest)."""
        import torch
        crops = np.asarray(crops_rgb)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected [N, H, W, 3] RGB crops, got shape {crops.shape}")
        n, h, w = crops.shape[:3]
        out = np.empty((n, h, w), np.uint8)
        with torch.inference_mode():
            for i in range(0, n, self.batch_size):
                labels = self.net.logits(self._prep(crops[i:i + self.batch_size])).argmax(1)
                labels = labels.to(torch.uint8).cpu().numpy()
                for j, lab in enumerate(labels):
                    out[i + j] = lab if (h, w) == lab.shape else cv2.resize(
                        lab, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        return out

    def mask(self, crop_rgb: np.ndarray, parsing: np.ndarray | None = None, face_box: Sequence[int] | None = None,
             mode: str = "jaw", upper_boundary_ratio: float = 0.5, blur_frac: float = 0.1,
             left_cheek_width: int | None = None, right_cheek_width: int | None = None) -> np.ndarray:
        """uint8 [H, W] feathered lower-face blend mask for one crop (see blend_mask); parses it if needed.
        The cheek widths default to the parser's own."""
        crop = np.asarray(crop_rgb)
        if parsing is None:
            parsing = self.parse(crop[None])[0]
        if parsing.shape != crop.shape[:2]:
            raise ValueError(f"parsing {parsing.shape} does not match the crop {crop.shape[:2]}")
        left = self.left_cheek_width if left_cheek_width is None else left_cheek_width
        right = self.right_cheek_width if right_cheek_width is None else right_cheek_width
        return blend_mask(parsing, face_box, mode, upper_boundary_ratio, blur_frac, left, right)

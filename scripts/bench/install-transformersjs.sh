#!/bin/sh
# Installs the transformers.js peer used by onnx/lm's benchmark into a git-ignored
# cache (default .cache/peers/transformersjs). ~470 MB; not needed by `make test`.
# ONNXRUNTIME_NODE_INSTALL=skip keeps onnxruntime-node from fetching extra binaries
# (it ships the CPU library we use anyway).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${TAGPR_PEER_DIR:-$root/.cache/peers/transformersjs}
version=4.3.1
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || printf '{"name":"tagpr-peer-transformersjs","private":true,"type":"module"}\n' > package.json
ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund "@huggingface/transformers@$version"
echo "transformers.js $version installed in $dir"

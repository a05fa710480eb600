#!/usr/bin/env bash
# CPU vs CUDA on one NVIDIA GPU, offline, in under 8 minutes:
#   - parity: logits within 1e-3 (fp32), greedy ids identical, one training step's loss and gradients
#     (tagpr model probe / probe-compare);
#   - speed: generation tokens/s at batch 1, 8 and 32, and training tokens/s, on the CPU and on CUDA;
#   - device residency: the bytes crossing host<->device per decode step and per training step on CUDA
#     (generation and training keep the KV cache, weights and AdamW moments on the GPU; a step whose
#     traffic reaches the KV cache's size fails);
#   - float16 generation (MatMuls in float16, lm.LoadOptions.Half) against float32 on CUDA: logits within
#     2% of the largest logit, greedy agreement and tokens/s (the ~10M model; the 0.5B one is too big to
#     edit in memory);
# for the built-in ~10M model and a ~0.5B model (Qwen2-0.5B's shape, seeded random weights).
#
# Usage (from anywhere; it works in the repository root):
#   scripts/gpu/check.sh              # both models
#   SKIP_05B=1 scripts/gpu/check.sh   # only the ~10M model (about a minute)
#   MODEL_05B=DIR scripts/gpu/check.sh   # use this model folder instead of building the 0.5B one
#
# It brings or finds everything and needs no network:
#   - bin/tagpr (built with `make build`; built here if missing and Go is installed);
#   - the GPU runtime: .cache/gpu/ from `tagpr setup --gpu` run on a networked machine (copy the folder
#     along), else an onnxruntime-gpu (1.24 or newer, CUDA 13) installed in this machine's Python, or
#     $ONNXRUNTIME_SHARED_LIBRARY_PATH; the CUDA 13 libraries beside it or in Python's nvidia-* packages
#     (TAGPR_RUNTIME_CUDA_LIBRARIES adds folders); the driver's libcuda.so.1.
# The CPU baseline runs on the same ONNX Runtime library as CUDA (its CPU provider), so the two differ only
# in the provider. Results: out/gpu-check/report.txt (and the probe folders beside it).
# Exit status: 0 all parity checks passed; 1 a parity check failed; 2 the check could not run.
# PROVIDER=cpu runs the same steps with the CPU as the provider under test (a dry run of this script on a
# machine without a GPU; the device-resident paths then run on the CPU device, with --device-resident).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
OUT=${OUT:-$ROOT/out/gpu-check}
BIN=${TAGPR:-$ROOT/bin/tagpr}
PROVIDER=${PROVIDER:-cuda}
START=$SECONDS
mkdir -p "$OUT" || exit 2
REPORT=$OUT/report.txt
: >"$REPORT"

log() { printf '[%3ds] %s\n' $((SECONDS - START)) "$*" | tee -a "$REPORT"; }
die() {
	printf 'check.sh: %s\n' "$*" | tee -a "$REPORT" >&2
	exit 2
}
# run LIMIT_SECONDS CMD...: a step that may not hang the whole check.
run() {
	local limit=$1
	shift
	timeout --kill-after=10 "$limit" "$@"
	local rc=$?
	[ $rc -eq 124 ] && log "timed out after ${limit}s: $*"
	return $rc
}

log "tagpr GPU check in $ROOT"
if [ ! -x "$BIN" ]; then
	command -v go >/dev/null 2>&1 || die "no $BIN and no Go to build it: run \`make build\` on a machine with Go and bring bin/tagpr along"
	log "building $BIN"
	go build -o "$BIN" ./cmd/tagpr || die "go build failed"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/  gpu: /' | tee -a "$REPORT"
else
	log "nvidia-smi not found (the driver library is what matters; tagpr checks it below)"
fi

# The GPU runtime: what tagpr finds with --provider cuda (the probe below starts it).
VERSION=$("$BIN" --provider "$PROVIDER" version 2>&1)
rc=$?
printf '%s\n' "$VERSION" | sed 's/^/  /' | tee -a "$REPORT"
if [ $rc -ne 0 ]; then
	die "no ONNX Runtime with the CUDA provider here. Bring one: run \`tagpr setup --gpu\` (or \`make setup-gpu\`) on a machine with network and copy .cache/gpu/ into this checkout, or install onnxruntime-gpu==1.31.1 into this machine's Python, or set ONNXRUNTIME_SHARED_LIBRARY_PATH."
fi
# "onnxruntime 1.31.1 (/path/libonnxruntime.so.1.31.1)"
ORTLIB=$(printf '%s\n' "$VERSION" | sed -n 's/^onnxruntime [^ ]* (\(.*\))$/\1/p' | head -n1)
[ -n "$ORTLIB" ] || die "could not read the library path from \`tagpr --provider $PROVIDER version\`"
export ONNXRUNTIME_SHARED_LIBRARY_PATH=$ORTLIB
log "runtime library for both providers: $ORTLIB"

FAILED=0
# probe_pair NAME MODEL_DIR LIMIT TEST_FLAGS FLAGS...: the same workload on the provider under test (with
# TEST_FLAGS too: --half, on the 0.5B model through the external-data path), then on the CPU (the baseline), then the comparison.
probe_pair() {
	local name=$1 model=$2 limit=$3 testflags=$4
	shift 4
	local side p dir extra
	for side in test baseline; do
		p=$PROVIDER dir=$OUT/$name.$PROVIDER extra=$testflags
		# On CUDA the device-resident paths are automatic; a CPU dry run asks for them.
		[ "$PROVIDER" = cpu ] && extra="$extra --device-resident"
		[ $side = baseline ] && p=cpu dir=$OUT/$name.baseline-cpu extra=
		rm -rf "$dir"
		log "$name: probe on $p${extra:+ ($extra)}"
		# shellcheck disable=SC2086 # extra is a list of flags
		if ! run "$limit" "$BIN" --provider "$p" --log-format text model probe "$model" --out "$dir" "$@" $extra 2>"$dir.log" | tee -a "$REPORT"; then
			tail -n 20 "$dir.log" | tee -a "$REPORT"
			[ $side = test ] && die "$name: the $p probe did not run (above: what is missing, from tagpr)"
			log "$name: the CPU probe did not finish; no comparison"
			FAILED=1
			return
		fi
	done
	log "$name: cpu vs $PROVIDER"
	if ! "$BIN" model probe-compare "$OUT/$name.baseline-cpu" "$OUT/$name.$PROVIDER" 2>&1 | tee -a "$REPORT"; then
		FAILED=1
	fi
}

# The built-in ~10M model: Llama-style, 6 layers, d 320, vocab 8192: 11.6M parameters (built in seconds).
M10=$OUT/models/m10
if [ ! -f "$M10/model.onnx" ]; then
	log "building the ~10M model"
	"$BIN" model init --arch llama --layers 6 --d-model 320 --heads 5 --kv-heads 1 --vocab 8192 --max-positions 1024 --seed 1 --out "$M10" | tee -a "$REPORT" || die "model init failed"
fi
probe_pair m10 "$M10" 120 --half --gen-batches 1,8,32 --new-tokens 32 --prompt-len 32 --train-batch 8 --seq-len 128 --train-steps 3

if [ "${SKIP_05B:-0}" != 1 ]; then
	M05=${MODEL_05B:-$OUT/models/m05b}
	if [ ! -f "$M05/model.onnx" ] && [ ! -f "$M05/onnx/model.onnx" ]; then
		# Qwen2-0.5B's shape: 24 layers, d 896, 14 heads / 2 KV heads, MLP 4864, vocab 151936, tied
		# embeddings, q/k/v biases: 494M parameters, 1.98 GB in one model.onnx.
		log "building the ~0.5B model"
		run 240 "$BIN" model init --arch llama --layers 24 --d-model 896 --heads 14 --kv-heads 2 --ffn 4864 --vocab 151936 \
			--tie-embeddings --attention-bias --max-positions 2048 --rope-theta 1000000 --seed 1 --out "$M05" | tee -a "$REPORT" || die "model init (0.5B) failed"
	fi
	# Smaller timed workloads: the CPU side of a 0.5B model is slow.
	# float16 too on a GPU (through the external-data path: the model is past protobuf's limit once edited);
	# not in a CPU dry run, where float16 MatMuls of a 0.5B model are slow.
	half05=""
	[ "$PROVIDER" != cpu ] && half05=--half
	probe_pair m05b "$M05" 300 "$half05" --gen-batches 1,8,32 --new-tokens 16 --prompt-len 32 --train-batch 2 --seq-len 64 --train-steps 1
fi

log "done in $((SECONDS - START))s; report: $REPORT"
if [ $FAILED -ne 0 ]; then
	log "PARITY FAILED (see FAIL lines above)"
	exit 1
fi
log "ALL PARITY CHECKS PASSED"

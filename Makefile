# tagpr — see README.md. `make demo` and `make test` fetch what they need (setup) and cache it in .cache/.
GO      ?= go
BIN     := bin/tagpr
GOFLAGS ?=
export GOFLAGS
# onnxruntime-Python (the peers and fixture scripts) collects telemetry unless
# told not to, as tagpr tells its own runtime (README).
ORT_DISABLE_TELEMETRY ?= 1
export ORT_DISABLE_TELEMETRY
# The commit tagpr is built from ("-modified" with uncommitted changes), which `tagpr version`, the reports and
# every stage summary name; set by -ldflags, so it holds with -buildvcs=false too ("" outside a git clone).
COMMIT  := $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null || c="$$c-modified"; echo "$$c"; })

.PHONY: all build setup demo experiment test test-race bench fmt vet fuzz

all: build

build:
	$(GO) build -ldflags "-X github.com/tagpr/tagpr/internal/buildinfo.Commit=$(COMMIT)" -o $(BIN) ./cmd/tagpr

# Internal: fetch and verify every pinned artifact (ONNX Runtime from npm, tokenizers) into .cache/.
setup: build
	./$(BIN) setup

demo: setup
	./$(BIN) run -c configs/demo.yaml

# The ablation table (docs/experiment.md): the recipe's RL stages branching from one SFT model, then the
# no-tags run (plain chains); every model on the same test users. Each run resumes where it stopped.
experiment: setup
	./$(BIN) run -c configs/experiment.yaml
	./$(BIN) run -c configs/experiment-plain.yaml

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt needed"; exit 1; }

test: setup vet
	$(GO) test -count=1 -timeout 30m ./...

# The race detector over the tests whose code runs goroutines: serve's batcher, handlers, cancellations and
# shutdown, the decode head's row split, tokenizer training, the OpenAI teacher's fan-out (and its replies kept on Ctrl-C), and the CLI's signal
# handling, serve's second signal and interrupted training (cmd/tagpr's tests then run a -race build of tagpr).
# Not part of `make test`: the first run builds every package again with -race (about 2½ min on 2 cores);
# after that about 1 min on 2 cores, half of it cmd/tagpr's (its tests first link a -race tagpr).
test-race: setup
	$(GO) test -race -count=1 -timeout 10m -run 'SixteenConcurrentClients|StreamingTokenByToken|GracefulShutdown|StalledReader|SlowBody|TestN$$' ./pipeline/serve
	$(GO) test -race -count=1 -timeout 10m -run 'Batcher|DecodeHeadSplit' ./onnx/lm
	$(GO) test -race -count=1 -timeout 10m -run '^TestTrain' ./tokenize
	$(GO) test -race -count=1 -timeout 10m -run 'OpenAITeacher|InterruptedKeepsFinishedReplies' ./pipeline
	$(GO) test -race -count=1 -timeout 10m -run 'SecondInterruptQuits|InterruptedExitCode|ServeSecondSignalExitsAtOnce|TrainLMInterruptAndResume|PRMUTrainInterrupt' ./cmd/tagpr

# Benchmarks: every figure as `bench: NAME VALUE UNIT`, and bench.json.
bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./... > .cache/bench.raw || { cat .cache/bench.raw; exit 1; }
	$(GO) run ./cmd/benchreport -in .cache/bench.raw -out bench.json

# Each fuzz target for FUZZTIME (go test fuzzes one target per run).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadModel$$' -fuzztime $(FUZZTIME) ./onnx/ir
	$(GO) test -run '^$$' -fuzz '^FuzzLoadTokenizer$$' -fuzztime $(FUZZTIME) ./tokenize
	$(GO) test -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME) ./tokenize
	$(GO) test -run '^$$' -fuzz '^FuzzFastSplit$$' -fuzztime $(FUZZTIME) ./tokenize
	$(GO) test -run '^$$' -fuzz '^FuzzReadSafetensors$$' -fuzztime $(FUZZTIME) ./onnx/train
	$(GO) test -run '^$$' -fuzz '^FuzzAliasText$$' -fuzztime $(FUZZTIME) ./datasets
	$(GO) test -run '^$$' -fuzz '^FuzzReadTable$$' -fuzztime $(FUZZTIME) ./datasets
	$(GO) test -run '^$$' -fuzz '^FuzzLaMPJSON$$' -fuzztime $(FUZZTIME) ./datasets
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME) ./pipeline/serve

# Regenerate onnx/onnxpb/onnx.pb.go from onnx.proto (needs protoc and protoc-gen-go v1.36.12; the result is committed).
.PHONY: proto
proto:
	cd onnx/onnxpb && PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc --go_out=. --go_opt=paths=source_relative onnx.proto

# The GPU runtime (onnxruntime-gpu and the CUDA 13 libraries, ~1.3 GB, pinned in models.lock) into .cache/gpu/:
# `pip download --no-deps`, verified, libraries extracted; then `tagpr --provider cuda …` finds and preloads them.
.PHONY: setup-gpu
setup-gpu: build
	./$(BIN) setup --gpu

package onnxpb

// Needs protoc (apt install protobuf-compiler) and
// `go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12` on PATH.
//go:generate protoc --go_out=. --go_opt=paths=source_relative onnx.proto

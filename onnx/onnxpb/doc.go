// Package onnxpb holds the ONNX protobuf messages (ModelProto, GraphProto,
// NodeProto, TensorProto, ...) generated from onnx.proto, tagpr's own proto3
// rendering of the ONNX IR specification. Field names and numbers are ONNX's,
// so the bytes are ONNX files; the proto package is tagpr.onnxpb so that it
// never clashes with another copy of the ONNX messages in the same binary.
//
// onnx.pb.go is generated and committed: building needs no protoc. Run
// `make proto` (or `go generate ./onnx/onnxpb`) after editing onnx.proto.
// Reading, building and editing models belongs in onnx/ir, not here.
package onnxpb

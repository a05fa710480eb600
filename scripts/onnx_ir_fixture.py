#!/usr/bin/env python3
"""Writes onnx/ir/testdata/python_model.onnx (+ a copy with external data) and
python_model.json: a small model made with the `onnx` Python package, used by
onnx/ir's tests to check that Go reads what Python writes, byte for byte.

CI never runs this script; its outputs are committed. Regenerate with:

    pip install onnx==1.23.2 numpy
    python3 scripts/onnx_ir_fixture.py

The model covers what the Go side must read: raw_data and typed-field
initializers (float, int64, float16), attributes of type int, ints, float,
string and tensor, a Constant node, symbolic dims, metadata, and an If node
whose branches read a value from the outer scope. The JSON holds the inputs
and the outputs computed here with numpy, and the initializer values.
"""

import argparse
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build():
    rng = np.random.default_rng(7)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    b = np.array([0.25, -0.5, 1.0], dtype=np.float32)
    h16 = np.array([1.5, -2.0, 0.099975586], dtype=np.float16)
    shape = np.array([-1, 3], dtype=np.int64)

    inits = [
        numpy_helper.from_array(W, "W"),  # raw_data
        helper.make_tensor("b", TensorProto.FLOAT, [3], b.tolist()),  # float_data
        numpy_helper.from_array(h16, "h16"),  # raw_data, float16
        helper.make_tensor("shape", TensorProto.INT64, [2], shape.tolist()),  # int64_data
    ]

    then_g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["two"], name="two", value=numpy_helper.from_array(np.array([2.0], dtype=np.float32))),
            helper.make_node("Mul", ["r", "two"], ["y_then"], name="then_mul"),
        ],
        "then_branch", [], [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, ["batch", 3])],
    )
    else_g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["one"], name="one", value_float=1.0),
            helper.make_node("Sub", ["r", "one"], ["y_else"], name="else_sub"),
        ],
        "else_branch", [], [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, ["batch", 3])],
    )

    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b"], ["add"], name="add"),
        helper.make_node("Cast", ["h16"], ["h"], name="cast_h", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["add", "h"], ["s"], name="scale"),
        helper.make_node("LeakyRelu", ["s"], ["lr"], name="lrelu", alpha=0.1),
        helper.make_node("Transpose", ["lr"], ["t"], name="tr", perm=[0, 1]),
        helper.make_node("Constant", [], ["c"], name="half", value=numpy_helper.from_array(np.array([0.5], dtype=np.float32))),
        helper.make_node("Add", ["t", "c"], ["u"], name="shift"),
        helper.make_node("Reshape", ["u", "shape"], ["r"], name="reshape"),
        helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g),
        helper.make_node("Softmax", ["r"], ["sm"], name="softmax", axis=-1),
        helper.make_node("Einsum", ["r", "r"], ["e"], name="dot", equation="bi,bi->b"),
    ]
    graph = helper.make_graph(
        nodes, "python_fixture",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, [1]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("sm", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("e", TensorProto.FLOAT, ["batch"]),
        ],
        inits,
        doc_string="onnx/ir test fixture",
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="onnx_ir_fixture.py")
    model.ir_version = 10
    helper.set_model_props(model, {"purpose": "onnx/ir read test"})
    onnx.checker.check_model(model, full_check=True)

    x = rng.standard_normal((2, 4)).astype(np.float32)
    s = (x @ W + b) * h16.astype(np.float32)
    r = np.where(s > 0, s, 0.1 * s) + np.float32(0.5)
    ex = np.exp(r - r.max(axis=-1, keepdims=True))
    ref = {
        "x": x.ravel().tolist(),
        "x_dims": list(x.shape),
        "y_true": (r * 2).ravel().tolist(),
        "y_false": (r - 1).ravel().tolist(),
        "sm": (ex / ex.sum(axis=-1, keepdims=True)).ravel().tolist(),
        "e": (r * r).sum(axis=-1).tolist(),
        "W": W.ravel().tolist(),
        "b": b.tolist(),
        "h16": h16.astype(np.float32).tolist(),
        "shape": shape.tolist(),
    }
    return model, ref


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(here, "..", "onnx", "ir", "testdata"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model, ref = build()
    onnx.save_model(model, os.path.join(args.out, "python_model.onnx"))
    # The same model with every initializer in python_ext.onnx.data.
    data_path = os.path.join(args.out, "python_ext.onnx.data")
    if os.path.exists(data_path):
        os.remove(data_path)  # onnx appends to an existing data file
    ext = onnx.ModelProto()
    ext.CopyFrom(model)
    onnx.save_model(ext, os.path.join(args.out, "python_ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="python_ext.onnx.data", size_threshold=0)
    onnx.checker.check_model(os.path.join(args.out, "python_ext.onnx"))
    back = onnx.load(os.path.join(args.out, "python_ext.onnx"))
    for a, b in zip(back.graph.initializer, model.graph.initializer):
        assert a.name == b.name and np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b)), a.name
    with open(os.path.join(args.out, "python_model.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

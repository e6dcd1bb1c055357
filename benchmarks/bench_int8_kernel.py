"""What int8 buys where it applies (issue 4): one matrix product of the MiniLM student's feed-forward shape,
PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime dynamic int8 (per channel, as the export), side by side.

Compare with `bench_student.py speed`: inside the whole student the int8 products gain less than this lone one
(each quantises its activations first; Q, K and V are smaller products), and the rest of the network stays fp32.

Usage: python benchmarks/bench_int8_kernel.py [--threads 1] [--tokens 1024] [--repeats 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from shared_data import rotated

HIDDEN, INTERMEDIATE = 384, 1536  # all-MiniLM-L6-v2


def matmul_model(folder: Path, weight: np.ndarray) -> tuple[Path, Path]:
    """An fp32 ONNX graph of x @ weight, and its dynamic int8 quantisation."""
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ffn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    onnx.save(model, fp32)
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True)
    return fp32, int8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="1: the per-core ratio")
    parser.add_argument("--tokens", type=int, default=1024, help="rows of the product (tokens in a batch)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((HIDDEN, INTERMEDIATE)) * 0.05).astype(np.float32)
    x = rng.standard_normal((args.tokens, HIDDEN)).astype(np.float32)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = matmul_model(Path(folder), weight)
        sessions = {name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    for name, path in (("onnx fp32", fp32), ("onnx int8", int8))}
        tx, tw = torch.from_numpy(x), torch.from_numpy(weight.T.copy())  # nn.Linear's layout: [out, in]
        runners: dict[str, Callable[[], object]] = {"pytorch fp32": partial(torch.nn.functional.linear, tx, tw)}
        for name, session in sessions.items():
            runners[name] = partial(session.run, None, {"x": x})
        best = dict.fromkeys(runners, float("inf"))
        with torch.inference_mode():
            for turn in range(args.repeats):  # rotating, best of: the least disturbed run of each
                for name in rotated(list(runners), turn):
                    started = time.perf_counter()
                    runners[name]()
                    best[name] = min(best[name], time.perf_counter() - started)
    flops = 2 * args.tokens * HIDDEN * INTERMEDIATE
    print(f"[{args.tokens} x {HIDDEN}] @ [{HIDDEN} x {INTERMEDIATE}], {args.threads} threads, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"{name:13} {flops / seconds / 1e9:7.1f} GFLOP/s  {best['pytorch fp32'] / seconds:5.2f}x PyTorch")


if __name__ == "__main__":
    main()

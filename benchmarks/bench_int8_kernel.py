"""What int8 buys where it applies (issue 4): one matrix product of the MiniLM student's feed-forward shape,
PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime dynamic int8 (per channel, as the export), side by side.

Compare with `bench_student.py speed`: inside the whole student the int8 products gain less than this lone one
(each quantises its activations first; Q, K and V are smaller products), and the rest of the network stays fp32.

`--products ENCODER` (issue 14): what the matrix products alone cost an int8 student on ENCODER (a models/ name or
folder) to label all 50,000 IMDb reviews on this CPU: every review's sub-words (cut at --max-length) through the
encoder's products, the projections and feed-forward at the int8 rate measured here on the encoder's feed-forward
shape, the attention products (fp32 inside ONNX Runtime's int8 attention) at the fp32 rate. Layer norms, GELU,
softmax and quantising the activations are left out. Compare with `bench_student.py speed --full`: where labeling
takes little more than this, only faster products (another CPU, or fewer sub-words) make it much faster.

Usage: python benchmarks/bench_int8_kernel.py [--threads 1] [--tokens 1024] [--repeats 20]
           [--products minilm-l6 --max-length 256 --threads 2 --tokens 4096]
"""

from __future__ import annotations

import argparse
import json
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
from shared_data import DATA, records, rotated
from tokenizers import Tokenizer

from llmaaa_local.models import default_models_dir, resolve

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
    parser.add_argument("--products", default=None, metavar="ENCODER",
                        help="also the products' time to label all 50,000 IMDb reviews with this encoder")
    parser.add_argument("--max-length", type=int, default=256, help="sub-words a review is cut to (--products)")
    args = parser.parse_args()
    encoder = resolve(args.products, default_models_dir(), "hf") if args.products else None
    config = json.loads((encoder / "config.json").read_text()) if encoder else {}
    hidden, inner = config.get("hidden_size", HIDDEN), config.get("intermediate_size", INTERMEDIATE)
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((hidden, inner)) * 0.05).astype(np.float32)
    x = rng.standard_normal((args.tokens, hidden)).astype(np.float32)
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
    flops = 2 * args.tokens * hidden * inner
    print(f"[{args.tokens} x {hidden}] @ [{hidden} x {inner}], {args.threads} threads, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"{name:13} {flops / seconds / 1e9:7.1f} GFLOP/s  {best['pytorch fp32'] / seconds:5.2f}x PyTorch")
    if encoder:
        products_time(encoder, config, args.max_length, flops / best["onnx int8"], flops / best["onnx fp32"])


def products_time(encoder: Path, config: dict[str, int], max_length: int, int8_rate: float, fp32_rate: float) -> None:
    """The products' time for all 50,000 IMDb reviews (train and test) at the measured rates (FLOP/s)."""
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    tokenizer = Tokenizer.from_file(str(encoder / "tokenizer.json"))
    tokenizer.no_truncation()
    texts = [row["text"] for split in ("train", "test") for row in records(DATA / "imdb" / f"{split}.jsonl.gz")]
    lengths = np.minimum([len(e.ids) for e in tokenizer.encode_batch(texts)], max_length).astype(np.float64)
    # per sub-word and layer: Q, K, V, output projections and the feed-forward pair; Q.K and attention.V per pair
    projections = 2 * lengths.sum() * layers * (4 * hidden * hidden + 2 * hidden * inner)
    attention = 2 * (lengths**2).sum() * layers * 2 * hidden
    seconds = projections / int8_rate + attention / fp32_rate
    print(f"products: {len(texts)} IMDb reviews, {lengths.sum() / 1e6:.2f}M sub-words at most {max_length} each; "
          f"{projections / 1e12:.0f} TFLOP of int8 products ({projections / int8_rate:.0f} s) and "
          f"{attention / 1e12:.0f} TFLOP of fp32 attention products ({attention / fp32_rate:.0f} s): "
          f"the products alone take {seconds:.0f} s ({seconds / 60:.1f} min) at these rates")


if __name__ == "__main__":
    main()

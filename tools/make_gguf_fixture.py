#!/usr/bin/env python3
"""A GGUF file with one tensor of every GGML type swiattn dequantizes, and the values the `gguf`
Python package (llama.cpp's own gguf-py, an implementation independent of swiattn's) dequantizes
them to. Block bytes are random, with every fp16 scale field set to a finite value.

    pip install gguf numpy safetensors
    python3 tools/make_gguf_fixture.py crates/swiattn-core/tests/fixtures/gguf
"""
import sys
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize
from safetensors.numpy import save_file

# type: (elements per block, bytes per block, byte offsets of fp16 fields)
BLOCKS = {
    T.Q4_0: (32, 18, [0]),
    T.Q4_1: (32, 20, [0, 2]),
    T.Q5_0: (32, 22, [0]),
    T.Q5_1: (32, 24, [0, 2]),
    T.Q8_0: (32, 34, [0]),
    T.Q4_K: (256, 144, [0, 2]),
    T.Q5_K: (256, 176, [0, 2]),
    T.Q6_K: (256, 210, [208]),
}


def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(out / "quants.gguf"), "llama")
    expected = {}
    rows = 3
    for qtype, (elems, size, f16_fields) in BLOCKS.items():
        blocks_per_row = 2
        raw = rng.integers(0, 256, size=(rows, blocks_per_row, size), dtype=np.uint8)
        for at in f16_fields:
            scales = rng.uniform(-0.05, 0.05, size=(rows, blocks_per_row)).astype(np.float16)
            raw[:, :, at:at + 2] = scales.view(np.uint8).reshape(rows, blocks_per_row, 2)
        raw = raw.reshape(rows, blocks_per_row * size)
        name = qtype.name
        writer.add_tensor(name, raw, raw_dtype=qtype)
        expected[name] = dequantize(raw, qtype).astype(np.float32).reshape(rows, blocks_per_row * elems)
    for name, dtype, qtype in [("F32", np.float32, T.F32), ("F16", np.float16, T.F16)]:
        values = rng.normal(size=(rows, 40)).astype(dtype)
        writer.add_tensor(name, values, raw_dtype=qtype)
        expected[name] = values.astype(np.float32)
    bf16_bits = (rng.normal(size=(rows, 40)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    writer.add_tensor("BF16", bf16_bits.view(np.uint8).reshape(rows, 80), raw_dtype=T.BF16)
    expected["BF16"] = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, str(out / "quants_expected.safetensors"))

    # A type swiattn does not dequantize, for the error test.
    writer = gguf.GGUFWriter(str(out / "unsupported.gguf"), "llama")
    writer.add_tensor("Q2_K", rng.integers(0, 256, size=(1, 84), dtype=np.uint8), raw_dtype=T.Q2_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print("wrote", sorted(expected))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

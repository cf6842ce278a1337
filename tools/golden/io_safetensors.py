#!/usr/bin/env python3
"""safetensors goldens for tests/test_safetensors.cpp, written from the format's specification
(https://github.com/huggingface/safetensors#format) with numpy, struct and json only.

Every tensor holds arange(n) * 0.5 - 3 cast to its dtype (a formula the test recomputes), except
BOOL (arange(n) % 3 == 0) and the F8 formats (their raw bytes are arange(n) * 16 % 256).
Writes tests/data/io/st_all_dtypes.safetensors and a two-shard checkpoint st_sharded-0000{1,2}-of-00002.safetensors
with st_sharded.safetensors.index.json.

Run: /usr/bin/python3 tools/golden/io_safetensors.py   (from the repository root)
"""
import json
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "io")

NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
      "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8"}


def values(dtype, shape):
    n = int(np.prod(shape))
    if dtype == "BOOL":
        return (np.arange(n) % 3 == 0).astype(np.bool_).tobytes()
    if dtype in ("F8_E4M3", "F8_E5M2"):
        return (np.arange(n) * 16 % 256).astype(np.uint8).tobytes()
    if dtype == "BF16":  # bf16 = upper half of the f32 bits (values are exact in bf16)
        f = (np.arange(n) * 0.5 - 3).astype("<f4")
        return (f.view("<u4") >> 16).astype("<u2").tobytes()
    x = np.arange(n) * 0.5 - 3
    if dtype[0] == "U":
        x = np.arange(n)
    return x.astype(NP[dtype]).tobytes()


def write(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    blobs = []
    for name, dtype, shape in tensors:
        b = values(dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    os.makedirs(OUT, exist_ok=True)
    dtypes = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8",
              "U8", "BOOL"]
    shapes = [[2, 3], [5], [2, 2, 2], [3, 1], [16], [16], [4], [2, 2], [3], [7], [2, 3], [6]]
    tensors = [("t_" + d.lower(), d, s) for d, s in zip(dtypes, shapes)]
    tensors.append(("scalar", "F32", []))
    tensors.append(("empty", "F32", [0, 4]))
    write(os.path.join(OUT, "st_all_dtypes.safetensors"), tensors,
          {"format": "pt", "note": "ünïcode ok"})
    shards = [[("a.weight", "F32", [4, 3]), ("a.bias", "F32", [4])],
              [("b.weight", "F16", [2, 4])]]
    wm = {}
    for i, ts in enumerate(shards):
        fname = "st_sharded-%05d-of-00002.safetensors" % (i + 1)
        write(os.path.join(OUT, fname), ts)
        for name, _, _ in ts:
            wm[name] = fname
    with open(os.path.join(OUT, "st_sharded.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 76}, "weight_map": wm}, f, indent=2)


if __name__ == "__main__":
    main()

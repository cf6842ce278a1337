#!/usr/bin/env python3
"""GGUF goldens for tests/test_gguf.cpp, written from the GGUF specification
(https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) with Python's struct module only.

1. tests/data/io/gguf_all_types.gguf: one metadata value of every type (nested arrays too) and
   tensors of several ggml types, with alignment 64; the C++ writer must produce the same bytes.
2. tests/data/io/gguf_stories.json: for each llama.cpp-written stories260K GGUF file, the header,
   scalar metadata, array lengths with first/last elements, and the tensor table with a CRC-32 of
   every tensor's bytes, parsed here independently of tessel.

Run: /usr/bin/python3 tools/golden/io_gguf.py   (from the repository root)
"""
import json
import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "io")
MODELS = os.path.join(ROOT, "..", "shared", "models", "stories260K", "gguf")

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml types: (id, block elems, block bytes)
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
        "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q8_1": (9, 32, 36),
        "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144),
        "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "Q8_K": (15, 256, 292),
        "I8": (24, 1, 1), "I16": (25, 1, 2), "I32": (26, 1, 4), "I64": (27, 1, 8),
        "F64": (28, 1, 8), "BF16": (30, 1, 2)}
GGML_BY_ID = {v[0]: (k, v[1], v[2]) for k, v in GGML.items()}


def enc_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def enc_value(t, v):
    if t == STR:
        return enc_str(v)
    if t == ARR:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        for it in items:
            out += enc_value(et, it)
        return out
    return struct.pack(SCALAR[t], v)


def write_gguf(path, kvs, tensors, alignment):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += enc_str(k) + struct.pack("<I", t) + enc_value(t, v)
    offset = 0
    offsets = []
    for name, ty, ne, data in tensors:
        offsets.append(offset)
        out += enc_str(name) + struct.pack("<I", len(ne))
        out += b"".join(struct.pack("<Q", e) for e in ne)
        out += struct.pack("<IQ", GGML[ty][0], offset)
        offset += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for name, ty, ne, data in tensors:
        out += data + b"\0" * (-len(data) % alignment)
    with open(path, "wb") as f:
        f.write(out)


def all_types():
    kvs = [
        ("general.architecture", STR, "tessel-test"),
        ("general.alignment", U32, 64),
        ("t.u8", U8, 200), ("t.i8", I8, -100), ("t.u16", U16, 60000), ("t.i16", I16, -30000),
        ("t.u32", U32, 4000000000), ("t.i32", I32, -2000000000), ("t.f32", F32, 1.5),
        ("t.bool", BOOL, True), ("t.string", STR, "héllo, wörld ✓"),
        ("t.u64", U64, 18000000000000000000), ("t.i64", I64, -9000000000000000000),
        ("t.f64", F64, 2.718281828459045),
        ("t.arr.u8", ARR, (U8, [1, 2, 255])), ("t.arr.i32", ARR, (I32, [-1, 0, 7])),
        ("t.arr.f32", ARR, (F32, [0.25, -2.0])), ("t.arr.bool", ARR, (BOOL, [True, False, True])),
        ("t.arr.str", ARR, (STR, ["a", "", "日本"])), ("t.arr.empty", ARR, (I64, [])),
        ("t.arr.nested", ARR, (ARR, [(I16, [1, -2]), (STR, ["x"]), (ARR, [(U64, [9])])])),
    ]
    tensors = [
        ("f32", "F32", [3, 2], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
        ("f16", "F16", [4], struct.pack("<4e", 1.0, -0.5, 65504.0, 0.0)),
        ("i32", "I32", [5], struct.pack("<5i", -2, -1, 0, 1, 2)),
        ("q8_0", "Q8_0", [32, 2], bytes((i * 7) % 256 for i in range(68))),
        ("q4_k", "Q4_K", [256], bytes((i * 13) % 256 for i in range(144))),
        ("bf16", "BF16", [2, 1, 1, 2], struct.pack("<4H", 0x3F80, 0xC000, 0x0000, 0x4049)),
    ]
    write_gguf(os.path.join(OUT, "gguf_all_types.gguf"), kvs, tensors, 64)


class Reader:
    def __init__(self, b):
        self.b, self.p = b, 0

    def un(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)
        self.p += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.un("<Q")
        s = self.b[self.p:self.p + n].decode("utf-8")
        self.p += n
        return s

    def value(self, t):
        if t == STR:
            return self.string()
        if t == ARR:
            et, n = self.un("<I"), self.un("<Q")
            return {"type": et, "items": [self.value(et) for _ in range(n)]}
        return self.un(SCALAR[t])


def summarize(path):
    b = open(path, "rb").read()
    r = Reader(b)
    assert r.b[:4] == b"GGUF"
    r.p = 4
    version, nt, nkv = r.un("<I"), r.un("<Q"), r.un("<Q")
    meta = {}
    for _ in range(nkv):
        k = r.string()
        t = r.un("<I")
        v = r.value(t)
        if t == ARR:
            items = v["items"]
            meta[k] = {"type": t, "elem_type": v["type"], "count": len(items),
                       "first": items[0] if items else None, "last": items[-1] if items else None}
        else:
            meta[k] = {"type": t, "value": v}
    align = meta.get("general.alignment", {}).get("value", 32)
    infos = []
    for _ in range(nt):
        name = r.string()
        nd = r.un("<I")
        ne = [r.un("<Q") for _ in range(nd)]
        ty, off = r.un("<I"), r.un("<Q")
        infos.append((name, ne, ty, off))
    data = (r.p + align - 1) // align * align
    tensors = []
    for name, ne, ty, off in infos:
        tname, be, bb = GGML_BY_ID[ty]
        n = 1
        for e in ne:
            n *= e
        nbytes = n // be * bb
        chunk = b[data + off:data + off + nbytes]
        assert len(chunk) == nbytes
        tensors.append({"name": name, "ne": ne, "type": tname, "offset": off, "bytes": nbytes,
                        "crc32": zlib.crc32(chunk)})
    return {"version": version, "alignment": align, "data_offset": data, "size": len(b),
            "metadata": meta, "tensors": tensors}


def main():
    os.makedirs(OUT, exist_ok=True)
    all_types()
    if not os.path.isdir(MODELS):
        sys.exit("models folder not found: " + MODELS)
    files = sorted(f for f in os.listdir(MODELS) if f.endswith(".gguf"))
    summary = {f: summarize(os.path.join(MODELS, f)) for f in files}
    with open(os.path.join(OUT, "gguf_stories.json"), "w") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()

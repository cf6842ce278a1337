#!/usr/bin/python3
"""PyTorch goldens for tessel's Llama and its layers (tests/test_llama.cpp, tests/test_nn.cpp).

An independent implementation: the checkpoint is read with numpy, the network runs in torch f32
over the whole sequence at every step (no KV cache), RoPE is applied as a complex rotation
(adjacent pairs) or with rotate_half (half-split). Writes, under tests/data/llama/:

  stories260K_greedy_ids.txt  256 greedy ids from BOS of ../shared/models/stories260K
  tiny_llama.bin              a random Llama (GQA, separate classifier) in llama2.c format
  tiny_llama.npz              tokens and the logits at every position for that model
  layers.npz                  RMSNorm, SwiGLU MLP, GELU MLP, and attention (GQA / MQA, causal,
                              both RoPE conventions) on random inputs

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/llama_golden.py
"""
import os
import struct

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "llama")
MODELS = os.path.join(ROOT, "..", "shared", "models")


def read_llama2c(path):
    raw = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    f = np.frombuffer(raw, dtype="<f4", offset=28)
    hd = dim // heads
    kv = hd * kv_heads
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        a = torch.from_numpy(f[at:at + n].copy()).reshape(shape)
        at += n
        return a

    w = {"emb": take(vocab, dim), "attn_norm": take(layers, dim), "wq": take(layers, dim, dim),
         "wk": take(layers, kv, dim), "wv": take(layers, kv, dim), "wo": take(layers, dim, dim),
         "ffn_norm": take(layers, dim), "w1": take(layers, hidden, dim),
         "w2": take(layers, dim, hidden), "w3": take(layers, hidden, dim),
         "out_norm": take(dim)}
    take(seq * hd // 2)  # freq_cis_real
    take(seq * hd // 2)  # freq_cis_imag
    w["cls"] = w["emb"] if shared else take(vocab, dim)
    assert at == f.size
    cfg = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab)
    return cfg, w


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_angles(T, rot, theta):
    inv = 1.0 / (torch.tensor(theta, dtype=torch.float32) **
                 (torch.arange(0, rot, 2, dtype=torch.float32) / rot))
    return torch.outer(torch.arange(T, dtype=torch.float32), inv)  # [T, rot/2]


def rope_adjacent(x, ang):  # x [T, H, hd]: pairs (2i, 2i+1) as complex numbers
    T, H, hd = x.shape
    z = torch.view_as_complex(x.reshape(T, H, hd // 2, 2).contiguous())
    z = z * torch.polar(torch.ones_like(ang), ang)[:, None, :]
    return torch.view_as_real(z).reshape(T, H, hd)


def rope_half(x, ang):  # pairs (i, i + hd/2)
    c = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    s = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return x * c + rot * s


def attention(x, wq, wk, wv, wo, heads, kv_heads, theta=10000.0, style="adjacent"):
    T, dim = x.shape
    hd = dim // heads
    q = (x @ wq.T).reshape(T, heads, hd)
    k = (x @ wk.T).reshape(T, kv_heads, hd)
    v = (x @ wv.T).reshape(T, kv_heads, hd)
    ang = rope_angles(T, hd, theta)
    rope = rope_adjacent if style == "adjacent" else rope_half
    q, k = rope(q, ang), rope(k, ang)
    rep = heads // kv_heads
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [H, T, hd]
    s = q @ k.transpose(1, 2) / (hd ** 0.5)
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    o = torch.softmax(s, -1) @ v
    return o.transpose(0, 1).reshape(T, dim) @ wo.T


def swiglu(x, w1, w2, w3):
    return (torch.nn.functional.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def llama_logits(cfg, w, tokens):
    x = w["emb"][torch.tensor(tokens)]
    for l in range(cfg["layers"]):
        h = rms_norm(x, w["attn_norm"][l])
        x = x + attention(h, w["wq"][l], w["wk"][l], w["wv"][l], w["wo"][l], cfg["heads"],
                          cfg["kv_heads"])
        h = rms_norm(x, w["ffn_norm"][l])
        x = x + swiglu(h, w["w1"][l], w["w2"][l], w["w3"][l])
    return rms_norm(x, w["out_norm"]) @ w["cls"].T


def stories_greedy():
    path = os.path.join(MODELS, "stories260K", "stories260K.bin")
    cfg, w = read_llama2c(path)
    toks = [1]
    with torch.no_grad():
        for _ in range(256):
            toks.append(int(torch.argmax(llama_logits(cfg, w, toks)[-1])))
    with open(os.path.join(OUT, "stories260K_greedy_ids.txt"), "w") as f:
        f.write(" ".join(str(t) for t in toks[1:]) + "\n")


def write_llama2c(path, cfg, w, seq):
    hd = cfg["dim"] // cfg["heads"]
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", cfg["dim"], cfg["hidden"], cfg["layers"], cfg["heads"],
                            cfg["kv_heads"], -cfg["vocab"], seq))  # negative: own classifier
        for k in ["emb", "attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3",
                  "out_norm"]:
            f.write(w[k].numpy().astype("<f4").tobytes())
        f.write(np.zeros(seq * hd, dtype="<f4").tobytes())  # the unused frequency tables
        f.write(w["cls"].numpy().astype("<f4").tobytes())


def tiny_llama(g):
    cfg = dict(dim=32, hidden=48, layers=2, heads=4, kv_heads=2, vocab=40)
    d, h, L, kv = cfg["dim"], cfg["hidden"], cfg["layers"], cfg["dim"] // 4 * 2
    r = lambda *s: torch.randn(*s, generator=g) * 0.3
    w = {"emb": r(40, d), "attn_norm": 1 + r(L, d), "wq": r(L, d, d), "wk": r(L, kv, d),
         "wv": r(L, kv, d), "wo": r(L, d, d), "ffn_norm": 1 + r(L, d), "w1": r(L, h, d),
         "w2": r(L, d, h), "w3": r(L, h, d), "out_norm": 1 + r(d), "cls": r(40, d)}
    write_llama2c(os.path.join(OUT, "tiny_llama.bin"), cfg, w, 16)
    tokens = [1, 7, 30, 2, 19, 19, 5, 38, 11, 0]
    with torch.no_grad():
        logits = llama_logits(cfg, w, tokens)
    np.savez(os.path.join(OUT, "tiny_llama.npz"), tokens=np.array(tokens, dtype=np.int32),
             logits=logits.numpy().astype(np.float32))


def layers(g):
    r = lambda *s: torch.randn(*s, generator=g) * 0.3
    a = {}
    T, d, hid = 6, 32, 48
    x = torch.randn(T, d, generator=g)
    a["x"] = x
    a["rms_w"] = 1 + r(d)
    a["rms_y"] = rms_norm(x, a["rms_w"], 1e-5)
    a["ln_w"], a["ln_b"] = 1 + r(d), r(d)
    a["ln_y"] = torch.nn.functional.layer_norm(x, (d,), a["ln_w"], a["ln_b"], 1e-5)
    a["gate"], a["up"], a["down"] = r(hid, d), r(hid, d), r(d, hid)
    a["swiglu_y"] = swiglu(x, a["gate"], a["down"], a["up"])
    a["up_b"], a["down_b"] = r(hid), r(d)
    for kind, approx in [("erf", "none"), ("tanh", "tanh")]:
        hmid = torch.nn.functional.gelu(x @ a["up"].T + a["up_b"], approximate=approx)
        a["gelu_" + kind + "_y"] = hmid @ a["down"].T + a["down_b"]
    # attention: GQA (8 heads over 4 kv heads of 4) adjacent pairs; MQA half-split, theta 5e5
    for name, heads, kvh, style, theta in [("gqa", 8, 4, "adjacent", 10000.0),
                                           ("mqa", 8, 1, "half_split", 500000.0)]:
        kv = d // heads * kvh
        wq, wk, wv, wo = r(d, d), r(kv, d), r(kv, d), r(d, d)
        for n, t in [("wq", wq), ("wk", wk), ("wv", wv), ("wo", wo)]:
            a[name + "_" + n] = t
        a[name + "_y"] = attention(x, wq, wk, wv, wo, heads, kvh, theta, style)
    # RoPE alone on one head of 8 at positions 0..T-1
    q = torch.randn(T, 1, 8, generator=g)
    ang = rope_angles(T, 8, 10000.0)
    a["rope_x"] = q.reshape(T, 8)
    a["rope_adjacent"] = rope_adjacent(q, ang).reshape(T, 8)
    a["rope_half_split"] = rope_half(q, ang).reshape(T, 8)
    np.savez(os.path.join(OUT, "layers.npz"),
             **{k: v.detach().numpy().astype(np.float32) for k, v in a.items()})


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        layers(g)
        tiny_llama(g)
    if os.path.exists(os.path.join(MODELS, "stories260K", "stories260K.bin")):
        stories_greedy()
    else:
        print("stories260K absent: greedy ids not regenerated")


if __name__ == "__main__":
    main()

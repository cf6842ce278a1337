#!/usr/bin/python3
"""PyTorch goldens for tessel's BERT encoder (tests/test_bert.cpp).

A random BERT in a small config is written as a Hugging Face checkpoint (model.safetensors with
HF's BertModel names under `bert.`, config.json) by a writer that follows the safetensors
specification (https://github.com/huggingface/safetensors#format). The reference forward pass is
plain PyTorch in float64 on the f32 weights: F.embedding, F.layer_norm,
F.multi_head_attention_forward with a key padding mask (Debian's torch 1.13 predates
scaled_dot_product_attention), F.gelu (erf), post-LN residual blocks, and the mean of the last
hidden states over each sequence's unmasked tokens. Writes, under tests/data/bert/:

  model.safetensors, config.json   the checkpoint
  golden.npz                       input_ids, token_type_ids, attention_mask [B, T] (int32),
                                   last_hidden_state [B, T, D] and mean_pooled [B, D] (float32)

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/bert_golden.py
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "bert")

CFG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
           vocab_size=300, max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12)
PRE = "bert."


def write_safetensors(path, tensors):
    """tensors: list of (name, float32 ndarray). Offsets 8-aligned; header padded with spaces."""
    header, blobs, off = {}, [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def random_weights(g):
    D, H, V = CFG["hidden_size"], CFG["intermediate_size"], CFG["vocab_size"]
    P, TV = CFG["max_position_embeddings"], CFG["type_vocab_size"]

    def rnd(*shape, std=0.1, mean=0.0):
        return (mean + std * torch.randn(*shape, generator=g)).float()

    w = {"embeddings.word_embeddings.weight": rnd(V, D, std=0.5),
         "embeddings.position_embeddings.weight": rnd(P, D, std=0.3),
         "embeddings.token_type_embeddings.weight": rnd(TV, D, std=0.3),
         "embeddings.LayerNorm.weight": rnd(D, mean=1.0),
         "embeddings.LayerNorm.bias": rnd(D)}
    for l in range(CFG["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        for n in ("query", "key", "value"):  # nn.Linear: [out, in]
            w[p + f"attention.self.{n}.weight"] = rnd(D, D, std=0.2)
            w[p + f"attention.self.{n}.bias"] = rnd(D)
        w[p + "attention.output.dense.weight"] = rnd(D, D, std=0.15)
        w[p + "attention.output.dense.bias"] = rnd(D)
        w[p + "attention.output.LayerNorm.weight"] = rnd(D, mean=1.0)
        w[p + "attention.output.LayerNorm.bias"] = rnd(D)
        w[p + "intermediate.dense.weight"] = rnd(H, D, std=0.15)
        w[p + "intermediate.dense.bias"] = rnd(H)
        w[p + "output.dense.weight"] = rnd(D, H, std=0.1)
        w[p + "output.dense.bias"] = rnd(D)
        w[p + "output.LayerNorm.weight"] = rnd(D, mean=1.0)
        w[p + "output.LayerNorm.bias"] = rnd(D)
    return w


def forward(w, ids, types, mask):
    """Last hidden states [B, T, D] and masked mean pooling [B, D], float64."""
    D, nh, eps = CFG["hidden_size"], CFG["num_attention_heads"], CFG["layer_norm_eps"]
    w = {k: v.double() for k, v in w.items()}
    B, T = ids.shape
    x = (F.embedding(ids, w["embeddings.word_embeddings.weight"]) +
         F.embedding(torch.arange(T)[None, :].expand(B, T), w["embeddings.position_embeddings.weight"]) +
         F.embedding(types, w["embeddings.token_type_embeddings.weight"]))
    x = F.layer_norm(x, (D,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    pad = mask == 0  # True: a key no query may attend to
    for l in range(CFG["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        s = p + "attention.self."
        xt = x.transpose(0, 1)  # [T, B, D]
        a, _ = F.multi_head_attention_forward(
            xt, xt, xt, D, nh, None,
            torch.cat([w[s + "query.bias"], w[s + "key.bias"], w[s + "value.bias"]]),
            None, None, False, 0.0, w[p + "attention.output.dense.weight"],
            w[p + "attention.output.dense.bias"], training=False, key_padding_mask=pad,
            need_weights=False, use_separate_proj_weight=True, q_proj_weight=w[s + "query.weight"],
            k_proj_weight=w[s + "key.weight"], v_proj_weight=w[s + "value.weight"])
        x = F.layer_norm(a.transpose(0, 1) + x, (D,), w[p + "attention.output.LayerNorm.weight"],
                         w[p + "attention.output.LayerNorm.bias"], eps)
        h = F.gelu(F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
        h = F.linear(h, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
        x = F.layer_norm(h + x, (D,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                         eps)
    m = mask[:, :, None].double()
    return x, (x * m).sum(1) / m.sum(1)


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    w = random_weights(g)
    write_safetensors(os.path.join(OUT, "model.safetensors"),
                      [(PRE + k, v.numpy()) for k, v in w.items()])
    cfg = dict(CFG, model_type="bert", architectures=["BertModel"], hidden_act="gelu")
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    B, T = 3, 11
    ids = torch.randint(0, CFG["vocab_size"], (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.int64)
    mask[0, :] = 1          # full
    mask[1, :7] = 1         # right padding
    mask[2, 5:] = 1         # left padding
    types = torch.zeros(B, T, dtype=torch.int64)
    types[0, 6:] = 1        # a sentence pair
    types[1, 4:7] = 1
    hidden, pooled = forward(w, ids, types, mask)
    np.savez(os.path.join(OUT, "golden.npz"), input_ids=ids.numpy().astype(np.int32),
             token_type_ids=types.numpy().astype(np.int32),
             attention_mask=mask.numpy().astype(np.int32),
             last_hidden_state=hidden.float().numpy(), mean_pooled=pooled.float().numpy())


if __name__ == "__main__":
    main()

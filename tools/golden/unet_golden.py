#!/usr/bin/env python3
"""Golden data for tessel's U-Net, VAE decoder and their blocks (tests/test_unet.cpp,
tests/test_vae.cpp).

The oracle is plain PyTorch: the modules below are written here from the architecture of
Stable Diffusion as Hugging Face diffusers lays it out (UNet2DConditionModel with
CrossAttnDownBlock2D / DownBlock2D / UNetMidBlock2DCrossAttn / CrossAttnUpBlock2D / UpBlock2D,
ResnetBlock2D, Transformer2DModel with a 1x1-conv proj_in / proj_out, BasicTransformerBlock
with GEGLU, and AutoencoderKL's Decoder), with the diffusers parameter names, so the
safetensors files written here load as a diffusers checkpoint would. Attention is softmax
attention written out (torch 1.13 has no scaled_dot_product_attention).

Weights are random (small configs); GroupNorm / LayerNorm weights and biases are perturbed away
from 1 / 0 so a mixed-up norm parameter shows. Outputs are computed in float64 from the float32
weights and stored as float32.

Run with Debian's PyTorch:  /usr/bin/python3 tools/golden/unet_golden.py
Writes tests/data/diffusion/{blocks,unet_small,vae_small}.safetensors (weights), their
config JSON (diffusers config.json keys) and {blocks,unet_small,vae_small}_io.npz.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data",
                   "diffusion")


# ---- safetensors writer (the format's spec: u64 header length, JSON header, data) ----------

def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name].detach().cpu().numpy().astype("<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# ---- modules (diffusers' layout and names) --------------------------------------------------

class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


def attention(q, k, v, heads):  # [N, T, D], [N, L, D] -> [N, T, D]
    n, t, d = q.shape
    hd = d // heads
    q = q.reshape(n, t, heads, hd).transpose(1, 2)
    k = k.reshape(n, -1, heads, hd).transpose(1, 2)
    v = v.reshape(n, -1, heads, hd).transpose(1, 2)
    s = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
    return (s @ v).transpose(1, 2).reshape(n, t, d)


class Attention(nn.Module):
    def __init__(self, dim, ctx_dim, heads, bias):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(ctx_dim, dim, bias=bias)
        self.to_v = nn.Linear(ctx_dim, dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        return self.to_out[0](attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads, False)
        self.attn2 = Attention(dim, ctx_dim, heads, False)
        self.ff = FeedForward(dim)

    def forward(self, x, ctx):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    def __init__(self, c, ctx_dim, heads, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(c, ctx_dim, heads)])
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, ctx):
        n, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(n, hh * ww, c)
        for b in self.transformer_blocks:
            h = b(h, ctx)
        h = h.reshape(n, hh, ww, c).permute(0, 3, 1, 2)
        return self.proj_out(h) + x


class VAEAttention(nn.Module):  # the VAE mid-block's single-head self-attention
    def __init__(self, c, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x):
        n, c, hh, ww = x.shape
        h = self.group_norm(x).reshape(n, c, hh * ww).transpose(1, 2)
        h = self.to_out[0](attention(self.to_q(h), self.to_k(h), self.to_v(h), 1))
        return h.transpose(1, 2).reshape(n, c, hh, ww) + x


class Downsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):  # a down or up block: resnets, optional attentions, optional resampler
    pass


def timestep_embedding(t, dim):  # flip_sin_to_cos = True, downscale_freq_shift = 0
    half = dim // 2
    f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    a = t[:, None].double() * f[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, L, g = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"]
        attn = [t.startswith("CrossAttn") for t in cfg["down_block_types"]]
        heads, ctx, ted = cfg["attention_head_dim"], cfg["cross_attention_dim"], 4 * ch[0]
        self.cfg = cfg
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = nn.Module()
        self.time_embedding.linear_1 = nn.Linear(ch[0], ted)
        self.time_embedding.linear_2 = nn.Linear(ted, ted)
        if cfg.get("num_class_embeds"):
            self.class_embedding = nn.Embedding(cfg["num_class_embeds"], ted)
        self.down_blocks = nn.ModuleList()
        out = ch[0]
        for i, c in enumerate(ch):
            cin, out = out, c
            b = Block()
            b.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else out, out, ted, g, 1e-5)
                                       for j in range(L)])
            if attn[i]:
                b.attentions = nn.ModuleList([Transformer2DModel(out, ctx, heads, g)
                                              for _ in range(L)])
            if i + 1 < len(ch):
                b.downsamplers = nn.ModuleList([Downsample2D(out)])
            self.down_blocks.append(b)
        self.mid_block = Block()
        self.mid_block.resnets = nn.ModuleList([ResnetBlock2D(ch[-1], ch[-1], ted, g, 1e-5)
                                                for _ in range(2)])
        self.mid_block.attentions = nn.ModuleList([Transformer2DModel(ch[-1], ctx, heads, g)])
        self.up_blocks = nn.ModuleList()
        rch, rattn = ch[::-1], attn[::-1]
        out = rch[0]
        for i, c in enumerate(rch):
            prev, out, cin = out, c, rch[min(i + 1, len(ch) - 1)]
            b = Block()
            b.resnets = nn.ModuleList([
                ResnetBlock2D((prev if j == 0 else out) + (cin if j == L else out), out, ted, g,
                              1e-5) for j in range(L + 1)])
            if rattn[i]:
                b.attentions = nn.ModuleList([Transformer2DModel(out, ctx, heads, g)
                                              for _ in range(L + 1)])
            if i + 1 < len(ch):
                b.upsamplers = nn.ModuleList([Upsample2D(out)])
            self.up_blocks.append(b)
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, x, t, ctx, labels=None):
        emb = timestep_embedding(t, self.cfg["block_out_channels"][0]).to(x.dtype)
        emb = self.time_embedding.linear_2(F.silu(self.time_embedding.linear_1(emb)))
        if labels is not None:
            emb = emb + self.class_embedding(labels)
        h = self.conv_in(x)
        skips = [h]
        for b in self.down_blocks:
            for j, r in enumerate(b.resnets):
                h = r(h, emb)
                if hasattr(b, "attentions"):
                    h = b.attentions[j](h, ctx)
                skips.append(h)
            if hasattr(b, "downsamplers"):
                h = b.downsamplers[0](h)
                skips.append(h)
        h = self.mid_block.resnets[0](h, emb)
        h = self.mid_block.attentions[0](h, ctx)
        h = self.mid_block.resnets[1](h, emb)
        for b in self.up_blocks:
            for j, r in enumerate(b.resnets):
                h = r(torch.cat([h, skips.pop()], dim=1), emb)
                if hasattr(b, "attentions"):
                    h = b.attentions[j](h, ctx)
            if hasattr(b, "upsamplers"):
                h = b.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, L, g = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"]
        self.conv_in = nn.Conv2d(cfg["latent_channels"], ch[-1], 3, padding=1)
        self.mid_block = Block()
        self.mid_block.resnets = nn.ModuleList([ResnetBlock2D(ch[-1], ch[-1], 0, g, 1e-6)
                                                for _ in range(2)])
        self.mid_block.attentions = nn.ModuleList([VAEAttention(ch[-1], g)])
        self.up_blocks = nn.ModuleList()
        rch = ch[::-1]
        out = rch[0]
        for i, c in enumerate(rch):
            prev, out = out, c
            b = Block()
            b.resnets = nn.ModuleList([ResnetBlock2D(prev if j == 0 else out, out, 0, g, 1e-6)
                                       for j in range(L + 1)])
            if i + 1 < len(ch):
                b.upsamplers = nn.ModuleList([Upsample2D(out)])
            self.up_blocks.append(b)
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid_block.resnets[1](self.mid_block.attentions[0](self.mid_block.resnets[0](h)))
        for b in self.up_blocks:
            for r in b.resnets:
                h = r(h)
            if hasattr(b, "upsamplers"):
                h = b.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKLDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        lc = cfg["latent_channels"]
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)
        self.decoder = Decoder(cfg)

    def forward(self, z):
        return self.decoder(self.post_quant_conv(z))


class CLIPLayer(nn.Module):
    def __init__(self, d, heads, hidden):
        super().__init__()
        self.heads = heads
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = nn.Module()
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, n, nn.Linear(d, d))
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        a = self.self_attn
        h = self.layer_norm1(x)
        n, t, d = h.shape
        hd = d // self.heads
        q, k, v = [p(h).reshape(n, t, self.heads, hd).transpose(1, 2)
                   for p in (a.q_proj, a.k_proj, a.v_proj)]
        s = q @ k.transpose(-1, -2) / math.sqrt(hd)
        s = s.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
        x = x + a.out_proj((torch.softmax(s, -1) @ v).transpose(1, 2).reshape(n, t, d))
        f = self.mlp.fc1(self.layer_norm2(x))
        return x + self.mlp.fc2(f * torch.sigmoid(1.702 * f))  # quick_gelu


class CLIPText(nn.Module):  # transformers' CLIPTextModel names under text_model.
    def __init__(self, vocab, d, heads, hidden, layers, max_pos):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(vocab, d)
        self.embeddings.position_embedding = nn.Embedding(max_pos, d)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([CLIPLayer(d, heads, hidden) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, ids):
        h = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding(
            torch.arange(ids.shape[1]))[None]
        for layer in self.encoder.layers:
            h = layer(h)
        return self.final_layer_norm(h)


# ---- goldens ---------------------------------------------------------------------------------

def randomize_norms(m):
    with torch.no_grad():
        for name, p in m.named_parameters():
            if isinstance(dict(m.named_modules())[name.rsplit(".", 1)[0]],
                          (nn.GroupNorm, nn.LayerNorm)):
                p.add_(0.2 * torch.randn_like(p))


def state(m, prefix=""):
    return {prefix + k: v.float() for k, v in m.state_dict().items()}


def f32(*xs):
    return [x.detach().float().numpy() for x in xs]


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)

    # Blocks: a ResnetBlock2D that changes channels (1x1 shortcut), one that keeps them, a
    # Transformer2DModel (self + cross attention), the VAE's attention, Downsample, Upsample.
    res = ResnetBlock2D(8, 16, 24, 4, 1e-5)
    res_same = ResnetBlock2D(16, 16, 24, 4, 1e-5)
    st = Transformer2DModel(16, 12, 2, 4)
    vattn = VAEAttention(16, 4)
    down, up = Downsample2D(16), Upsample2D(16)
    mods = {"res": res, "res_same": res_same, "st": st, "vae_attn": vattn, "down": down,
            "up": up}
    weights = {}
    for p, m in mods.items():
        randomize_norms(m)
        weights.update(state(m, p + "."))
    write_safetensors(os.path.join(OUT, "blocks.safetensors"), weights)
    x8, x16 = torch.randn(2, 8, 5, 6), torch.randn(2, 16, 4, 6)
    temb, ctx = torch.randn(2, 24), torch.randn(2, 3, 12)
    io = {"x8": x8, "x16": x16, "temb": temb, "ctx": ctx}
    with torch.no_grad():
        for m in mods.values():
            m.double()
        io["res_y"] = res(x8.double(), temb.double())
        io["res_same_y"] = res_same(x16.double(), temb.double())
        io["st_y"] = st(x16.double(), ctx.double())
        io["vae_attn_y"] = vattn(x16.double())
        io["down_y"] = down(x16.double())
        io["up_y"] = up(x16.double())
    np.savez(os.path.join(OUT, "blocks_io.npz"), **dict(zip(io, f32(*io.values()))))

    # A small U-Net: two levels, cross-attention at the first, class conditioning.
    cfg = {"in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16],
           "layers_per_block": 1, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
           "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "attention_head_dim": 2,
           "cross_attention_dim": 12, "norm_num_groups": 4, "num_class_embeds": 3,
           "flip_sin_to_cos": True, "freq_shift": 0}
    unet = UNet(cfg)
    randomize_norms(unet)
    write_safetensors(os.path.join(OUT, "unet_small.safetensors"), state(unet))
    with open(os.path.join(OUT, "unet_small.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([999.0, 37.0])
    ctx, labels = torch.randn(2, 5, 12), torch.tensor([2, 0])
    with torch.no_grad():
        y = unet.double()(x.double(), t, ctx.double(), labels)
    np.savez(os.path.join(OUT, "unet_small_io.npz"),
             **dict(zip(["x", "t", "ctx", "labels", "y"],
                        f32(x, t, ctx, labels.float(), y))))

    # A small AutoencoderKL decoder: latents 4 x 4 x 4 -> images 3 x 8 x 8.
    vcfg = {"in_channels": 3, "out_channels": 3, "latent_channels": 4,
            "block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4,
            "scaling_factor": 0.18215}
    vae = AutoencoderKLDecoder(vcfg)
    randomize_norms(vae)
    write_safetensors(os.path.join(OUT, "vae_small.safetensors"), state(vae))
    with open(os.path.join(OUT, "vae_small.json"), "w") as f:
        json.dump(vcfg, f, indent=1)
    z = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        img = vae.double()(z.double())
    np.savez(os.path.join(OUT, "vae_small_io.npz"), **dict(zip(["z", "y"], f32(z, img))))

    # A small CLIP text encoder (bos 62, eos 63 as the last two ids, as in CLIP's vocabulary).
    clip = CLIPText(64, 32, 2, 64, 2, 8)
    randomize_norms(clip)
    os.makedirs(os.path.join(OUT, "clip"), exist_ok=True)
    write_safetensors(os.path.join(OUT, "clip", "model.safetensors"), state(clip, "text_model."))
    with open(os.path.join(OUT, "clip", "config.json"), "w") as f:
        json.dump({"num_attention_heads": 2, "bos_token_id": 62, "eos_token_id": 63,
                   "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu"}, f, indent=1)
    ids = torch.tensor([[62, 5, 17, 40, 63]])
    padded = torch.tensor([[62, 5, 17, 40, 63, 63, 63, 63]])
    with torch.no_grad():
        clip.double()
        y5, y8 = clip(ids), clip(padded)
    np.savez(os.path.join(OUT, "clip_io.npz"), ids=ids.numpy().astype(np.float32),
             y=y5[0].float().numpy(), y_padded=y8[0].float().numpy())


if __name__ == "__main__":
    main()

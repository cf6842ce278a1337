#!/usr/bin/env python3
"""PyTorch goldens for tests/test_torch.cpp, written by Debian's PyTorch (torch.save) and numpy.

tests/data/io/torch_state.pt: a state dict with f32, f16, bf16, int8, int32, int64 tensors, an
nn.Parameter, a transposed (non-contiguous) tensor, a slice with a storage offset, two tensors
sharing one storage, a 0-d tensor and a nested dict. torch_state.npz holds every tensor as numpy
wrote it (bf16 as its exact f32 values), under the same names ('.' joins nested keys).
torch_evil_*.pt: files whose pickles name os.system / builtins.eval; a reader must refuse them.

Run: /usr/bin/python3 tools/golden/io_torch.py   (from the repository root)
"""
import collections
import os

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "io")


class EvilSystem:
    def __reduce__(self):
        return (os.system, ("true",))


class EvilEval:
    def __reduce__(self):
        return (eval, ("1+1",))


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    big = torch.arange(20, dtype=torch.float32)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 5, generator=g)
    sd["f16"] = torch.randn(2, 3, generator=g).half()
    sd["bf16"] = torch.randn(7, generator=g).bfloat16()
    sd["i8"] = torch.arange(-6, 6, dtype=torch.int8).reshape(3, 4)
    sd["i32"] = torch.arange(5, dtype=torch.int32) * 1000
    sd["i64"] = torch.tensor([-(2 ** 40), 0, 2 ** 40], dtype=torch.int64)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["transposed"] = base.t()               # strides (1, 6)
    sd["sliced"] = big[5:11].view(2, 3)        # storage offset 5
    sd["sliced_step"] = big[1::4]              # stride 4, offset 1
    sd["scalar"] = torch.tensor(3.25)
    sd["nested"] = {"w": torch.randn(2, 3, generator=g).t().contiguous().t()}
    torch.save(sd, os.path.join(OUT, "torch_state.pt"))

    flat = {}
    for k, v in sd.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                flat[k + "." + k2] = v2
        else:
            flat[k] = v
    arrays = {}
    for k, v in flat.items():
        v = v.detach()
        if v.dtype == torch.bfloat16:
            v = v.float()
        arrays[k] = v.contiguous().numpy()
    np.savez(os.path.join(OUT, "torch_state.npz"), **arrays)

    torch.save({"x": torch.zeros(2), "evil": EvilSystem()}, os.path.join(OUT, "torch_evil_system.pt"))
    torch.save({"evil": EvilEval()}, os.path.join(OUT, "torch_evil_eval.pt"))


if __name__ == "__main__":
    main()

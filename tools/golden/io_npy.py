#!/usr/bin/env python3
"""numpy goldens for tests/test_npy.cpp, written by numpy itself (numpy.save / numpy.lib.format /
numpy.savez). Values follow formulas the test recomputes: a[i] = i * 0.25 - 1 in C order,
cast to the dtype (integers: i % 100 - 50; uint8: i % 256; bool: i % 3 == 0).

Run: /usr/bin/python3 tools/golden/io_npy.py   (from the repository root)
"""
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "io")


def values(dtype, shape):
    n = int(np.prod(shape))
    i = np.arange(n)
    if dtype == "|b1":
        x = i % 3 == 0
    elif dtype == "|u1":
        x = i % 256
    elif dtype[1] in "iu":
        x = i % 100 - 50
    else:
        x = i * 0.25 - 1
    return np.asarray(x).astype(np.dtype(dtype)).reshape(shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    for d, shape in [("<f4", (2, 3, 4)), ("<f2", (5,)), ("<i4", (3, 2)), ("<i8", (4,)),
                     ("|i1", (7,)), ("|u1", (2, 2)), ("<f8", (3,)), ("|b1", (6,))]:
        np.save(os.path.join(OUT, "npy_%s.npy" % d[1:]), values(d, shape))
    a = values("<f4", (3, 5))
    for v in [(2, 0), (3, 0)]:
        with open(os.path.join(OUT, "npy_v%d.npy" % v[0]), "wb") as f:
            np.lib.format.write_array(f, a, version=v)
    np.save(os.path.join(OUT, "npy_fortran.npy"), np.asfortranarray(values("<f4", (3, 4, 2))))
    np.save(os.path.join(OUT, "npy_scalar.npy"), np.float32(2.5))
    np.savez(os.path.join(OUT, "npz_pair.npz"), x=values("<f4", (2, 3)), steps=values("<i8", (5,)))


if __name__ == "__main__":
    main()

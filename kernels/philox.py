"""Philox-4x32-10 and the derived draws in Triton, bit-identical to ``csrc/philox.h`` and
``fasa_fast.ops.reference.philox4x32_10`` (counter layout documented in ``csrc/philox.h``)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    c0 = c0.to(tl.uint32)
    c1 = c1.to(tl.uint32)
    c2 = c2.to(tl.uint32)
    c3 = c3.to(tl.uint32)
    k0 = k0.to(tl.uint32)
    k1 = k1.to(tl.uint32)
    for _ in tl.static_range(10):
        m0 = tl.full(c0.shape, 0xD2511F53, tl.uint32)
        m1 = tl.full(c2.shape, 0xCD9E8D57, tl.uint32)
        hi0 = tl.umulhi(m0, c0)
        lo0 = m0 * c0
        hi1 = tl.umulhi(m1, c2)
        lo1 = m1 * c2
        n0 = hi1 ^ c1 ^ k0
        n2 = hi0 ^ c3 ^ k1
        c0 = n0
        c1 = lo1
        c2 = n2
        c3 = lo0
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def uniform_open0(bits):
    return (bits.to(tl.float32) + 1.0) * 2.3283064365386963e-10


@triton.jit
def box_muller(a, b):
    radius = tl.sqrt(-2.0 * tl.log(uniform_open0(a)))
    theta = 6.2831853071795865 * uniform_open0(b)
    return radius * tl.cos(theta), radius * tl.sin(theta)

"""Triton kernels of fasa_fast, installed as ``fasa_fast.kernels``.

Each module holds the ``@triton.jit`` kernels of one op and its launcher, nothing else; the
wrappers that validate arguments and choose a backend live in ``fasa_fast.ops``. Importing a
module needs ``triton``; on a CPU they run under ``TRITON_INTERPRET=1`` (tests only).
"""

"""Ahead-of-time compilation of every Triton kernel specialisation for sm_90, used by
``tests/test_triton_aot.py`` (which says why and what is checked). Runs in a child process
without ``TRITON_INTERPRET``: ``compile_all(out_path)`` writes the records as JSON."""

from __future__ import annotations

import itertools
import json
import os
import pkgutil
import re
import subprocess
import tempfile
from pathlib import Path

import torch

from fasa_fast.ops._validate import FEATURE_DTYPES, LABEL_DTYPES
from tests.kernel_resources import parse_resource_usage

TARGET = ("cuda", 90, 32)  # H100: sm_90, warp size 32
# Kernels allowed more than SHARED_LIMIT bytes of shared memory (their launch must then set
# the opt-in attribute, which Triton does): kernel name -> bytes allowed, with the reason.
SHARED_OPT_IN: dict[str, int] = {}
SIZES = sorted({n for i in range(13) for n in (2**i - 1, 2**i, 2**i + 1) if n >= 1})


def planned_launches():
    """Every launch the launchers plan, on meta tensors (no memory, no device)."""
    from fasa_fast.kernels.fisher_distance import fisher_distance_launches
    from fasa_fast.kernels.sample_virtual_features import sample_virtual_features_launches
    from fasa_fast.kernels.segmented_stats_update import segmented_stats_update_launches

    def empty(*shape, dtype=torch.float32):
        return torch.empty(*shape, dtype=dtype, device="meta")

    num_classes, rows = 8, 256
    for dtype, label_dtype, on_var, counter, dim in itertools.product(
        FEATURE_DTYPES, LABEL_DTYPES, (False, True), (False, True), SIZES
    ):
        yield from segmented_stats_update_launches(
            empty(rows, dim, dtype=dtype), empty(rows, dtype=label_dtype),
            empty(num_classes, dim), empty(num_classes, dim),
            empty(num_classes, dtype=torch.int64), 0.1, on_var,
            empty(1, dtype=torch.int64) if counter else None,
        )  # fmt: skip
    for c, dim in itertools.product(SIZES, SIZES):
        yield from fisher_distance_launches(empty(c, dim), empty(c, dim), 1e-6, empty(c, c))
        for capacity in (0, 64):
            yield from sample_virtual_features_launches(
                empty(c, dim), empty(c, dim), empty(c, dtype=torch.int64), empty(c),
                empty(2, dtype=torch.int64), 2, capacity, features=empty(capacity, dim),
                labels=empty(capacity, dtype=torch.int64), counts=empty(2, dtype=torch.int64),
            )  # fmt: skip


def module_kernels() -> dict[str, str]:
    """Kernel name -> module of every ``*_kernel`` defined in ``fasa_fast.kernels``."""
    import fasa_fast.kernels as package

    kernels = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = __import__(f"{package.__name__}.{info.name}", fromlist=["_"])
        for name, value in vars(module).items():
            fn = getattr(value, "fn", None)
            if name.endswith("_kernel") and getattr(fn, "__module__", None) == module.__name__:
                kernels[name] = module.__name__
    return kernels


def specialisations() -> list[dict]:
    """Each distinct specialisation of the planned launches, bound as ``JITFunction.run``
    binds a launch before compiling it, with the target given instead of asked of a driver."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    backend = make_backend(GPUTarget(*TARGET))
    binders, jobs = {}, {}
    for launch in planned_launches():
        kernel = launch.kernel
        name = kernel.fn.__name__
        if name not in binders:
            binders[name] = create_function_from_signature(kernel.signature, kernel.params, backend)
        bound, specialization, options = binders[name](*launch.args, **launch.meta)
        options, signature, constexprs, attrs = kernel._pack_args(
            backend, launch.meta, bound, specialization, options
        )
        key = (name, *map(repr, (signature, constexprs, attrs, sorted(options.__dict__.items()))))
        params = [p.name for p in kernel.params]
        jobs.setdefault(
            key,
            {
                "module": kernel.fn.__module__,
                "kernel": name,
                "jit_type": type(kernel).__name__,
                "is_jit_function": isinstance(kernel, JITFunction),
                "signature": signature,
                "constexprs": constexprs,
                "attrs": attrs,
                "options": options.__dict__,
                "constexpr_names": {params[path[0]]: v for path, v in constexprs.items()},
                "multiple_of_16": [params[path[0]] for path, a in sorted(attrs.items()) if a],
            },
        )
    return list(jobs.values())


def compile_one(job: dict) -> dict:
    """Compile one specialisation for sm_90 and read its resources from the cubin."""
    import importlib

    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from tests.kernel_resources import find_cuobjdump

    kernel = getattr(importlib.import_module(job["module"]), job["kernel"])
    record = {
        "kernel": job["kernel"],
        "jit_type": job["jit_type"],
        "is_jit_function": job["is_jit_function"],
        "signature": {k: v for k, v in job["signature"].items() if v != "constexpr"},
        "constexprs": job["constexpr_names"],
        "multiple_of_16": job["multiple_of_16"],
        "num_warps": job["options"]["num_warps"],
    }
    try:
        compiled = triton.compile(
            ASTSource(kernel, job["signature"], job["constexprs"], job["attrs"]),
            target=GPUTarget(*TARGET), options=job["options"],
        )  # fmt: skip
    except Exception as exc:  # recorded: the test names every failing specialisation
        record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        return record
    record["dynamic_shared"] = compiled.metadata.shared
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        return record
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp, "kernel.cubin")
        cubin.write_bytes(compiled.asm["cubin"])
        dump = subprocess.run(
            [cuobjdump, "--dump-resource-usage", str(cubin)], capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
        (usage,) = parse_resource_usage(dump)
        record.update(
            registers=usage.registers, stack=usage.stack, local=usage.local,
            static_shared=usage.shared, spill_bytes=0,
        )  # fmt: skip
        if usage.spills:
            # A stack frame is not always a spill (sinf/cosf keep a small array there for
            # their slow argument reduction): ask ptxas, with the flags Triton compiles with.
            ptx = Path(tmp, "kernel.ptx")
            ptx.write_text(compiled.asm["ptx"])
            arch = re.search(r"^\.target\s+(\w+)", compiled.asm["ptx"], re.MULTILINE).group(1)
            log = subprocess.run(
                [knobs.nvidia.ptxas.path, "-lineinfo", "-v", "--regAllocOptLevel=2",
                 f"--gpu-name={arch}", str(ptx), "-o", str(Path(tmp, "check.cubin"))],
                capture_output=True, text=True, check=True,
            ).stderr  # fmt: skip
            spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
            record["spill_bytes"] = int(spills.group(1)) + int(spills.group(2))
    return record


def compile_all(out_path: str) -> None:
    """Child process: compile every specialisation (in parallel), write records as JSON."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = specialisations()
    workers = max(1, min(8, len(os.sched_getaffinity(0))))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        records = list(pool.map(compile_one, jobs, chunksize=4))
    result = {
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
        "kernels": module_kernels(),
        "records": records,
    }
    Path(out_path).write_text(json.dumps(result))

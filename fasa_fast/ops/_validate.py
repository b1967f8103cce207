"""Argument checks of the public op wrappers: each error names the argument and what was
expected. Checks look at metadata only (shapes, dtypes, devices), never at values, so they
cost no host-device synchronisation."""

from __future__ import annotations

import torch

FEATURE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LABEL_DTYPES = (torch.int64, torch.int32)
FLOAT32 = (torch.float32,)
INT64 = (torch.int64,)


def check_tensor(
    name: str,
    value: object,
    *,
    layout: str | None = None,
    dtypes: tuple[torch.dtype, ...] | None = None,
) -> torch.Tensor:
    """``value`` is a tensor; with ``layout`` (e.g. ``"[C, D]"``) of that many dimensions, with
    ``dtypes`` of one of them."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if layout is not None:
        check_dim(name, value, layout.count(",") + 1, layout)
    if dtypes is not None:
        check_dtype(name, value, dtypes)
    return value


def check_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...], why: str) -> None:
    """``tensor`` has exactly the shape ``expected``; ``why`` says where that comes from."""
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(
            f"{name}: expected shape {tuple(expected)} ({why}), got {tuple(tensor.shape)}"
        )


def check_dim(name: str, tensor: torch.Tensor, ndim: int, layout: str) -> None:
    if tensor.dim() != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-D {layout} tensor, got shape {tuple(tensor.shape)}"
        )


def check_dtype(name: str, tensor: torch.Tensor, allowed: tuple[torch.dtype, ...]) -> None:
    if tensor.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(
            f"{name}: expected dtype {names}, got {str(tensor.dtype).replace('torch.', '')}"
        )


def check_same_device(reference_name: str, reference: torch.Tensor, **others: torch.Tensor) -> None:
    for name, tensor in others.items():
        if tensor.device != reference.device:
            raise ValueError(
                f"{name}: expected a tensor on {reference.device} (the device of "
                f"{reference_name}), got {tensor.device}"
            )


def check_feature_dim(name: str, tensor: torch.Tensor) -> None:
    """``[C, D]`` statistics need ``D >= 1``: the Triton kernels cannot tile D in blocks of
    size 0, and the CUDA stats update, whose threads each own a dimension, would never count a
    class as seen while the reference does."""
    if tensor.shape[1] == 0:
        raise ValueError(f"{name}: expected D >= 1 feature dimensions, got 0")


def check_state(name: str, tensor: torch.Tensor) -> None:
    """State tensors are updated in place: no autograd history, contiguous memory."""
    if tensor.requires_grad:
        raise RuntimeError(
            f"{name}: FASA's running statistics are buffers and must not require grad; "
            "gradients never flow through them"
        )
    if not tensor.is_contiguous():
        raise ValueError(f"{name}: the state is updated in place and must be contiguous")

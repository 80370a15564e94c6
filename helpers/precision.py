"""Mixed precision and GPU memory for the training loop: which autocast dtype to use, and what
to say when the GPU runs out of memory."""
from __future__ import annotations

from contextlib import nullcontext

import torch


def amp_dtype(device: torch.device, amp=None) -> torch.dtype | None:
    """The autocast dtype: None (fp32) off CUDA or with amp=False; on CUDA bf16 when supported,
    else fp16. amp may also name one: "bf16" or "fp16"."""
    if device.type != "cuda" or amp is False:
        return None
    if amp in ("fp16", "float16"):
        return torch.float16
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision for the block when `dtype` is set, else nothing."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def is_oom(exc: BaseException) -> bool:
    """True for CUDA's out-of-memory error (older versions raise a RuntimeError saying so)."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def oom_message(batch_size, phase: str, exc: BaseException, amp_on: bool) -> str:
    """What failed (the phase and batch size) and what to try, in a few sentences."""
    first_line = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    tips = [f"a smaller batch_size (e.g. {max(1, batch_size // 2)})" if batch_size else "a smaller batch_size"]
    if not amp_on:
        tips.append("amp=True (mixed precision about halves activation memory)")
    tips += ["a smaller model",
             "freeing GPU memory held by other notebooks (del unused models, torch.cuda.empty_cache(), "
             "or restart their kernels; nvidia-smi shows who holds memory)"]
    return (f"the GPU ran out of memory during {phase} with batch_size={batch_size} ({first_line}). "
            "Try " + "; ".join(tips) + ".")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (only to read a clock: never inside the step loop)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

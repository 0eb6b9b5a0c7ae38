"""Which torch devices this machine can run the env on: one rule for the env's ``device``
argument and the commands' ``--device``; torch's threads in forked processes; and the float32
the model computes in, whatever the process's default dtype."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["device_problem", "float32_default", "forked_after_torch_threads", "guard_forks",
           "resolve_device"]


def device_problem(device: Any) -> str | None:
    """Why ``device`` cannot be used here, or None when it can: ``cpu``, ``cuda`` or
    ``cuda:<i>`` with a GPU there, ``mps`` on Apple silicon (a string or a ``torch.device``)."""
    import torch

    allowed = "allowed cpu, cuda, cuda:<index>, mps"
    if not isinstance(device, (str, torch.device)):
        return f"not a device name; {allowed}"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        return f"not a torch device; {allowed}"
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "this machine has no CUDA device; use cpu"
        if parsed.index is not None and parsed.index >= count:
            return f"this machine has CUDA devices 0..{count - 1}"
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            return "MPS is not available here; use cpu"
    elif parsed.type != "cpu":
        return allowed
    return None


@contextlib.contextmanager
def float32_default() -> Iterator[None]:
    """Run the block (or the decorated function) with torch's default dtype float32, then
    restore the caller's. The model, the engine and the surrogate compute in float32 and
    create tensors without naming a dtype: in a process that had called
    ``torch.set_default_dtype(torch.float64)`` they got float64 weights beside float32 scenes
    ("Input type (float) and bias type (double) should be the same", deep in a convolution)."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def resolve_device(device: str) -> str:
    """``device``, with ``auto`` resolved to ``cuda`` when this machine has it, else ``cpu``
    (the commands' ``--device auto``)."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


_forks_guarded = False
_forked_after_torch_threads = False


def guard_forks() -> None:
    """Make every process forked from here on run torch on one intra-op thread.

    ``import hffm_env`` calls it: before any torch computation of the package, and before a
    caller's own (a policy update in the parent, then forked workers that build real-training
    envs, hung too). GNU OpenMP cannot run a parallel region in a child forked after its
    parent ran one (the parent's pool threads are not copied, and the child waits for them
    forever), which is what ``gym.make_vec(..., vectorization_mode="async")`` does by default:
    it builds one env in the parent (which may train, or load a surrogate fit), then forks the
    workers. One thread per worker is also what vectorising over processes wants (PyTorch's
    DataLoader workers do the same). A child of a parent that never imported torch is left
    alone (it has no OpenMP pool to miss, and importing torch there would cost a second).
    Registered once per process; a no-op where ``os.fork`` is absent.
    """
    global _forks_guarded
    if _forks_guarded or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(after_in_child=_one_thread_in_forked_child)
    _forks_guarded = True


def forked_after_torch_threads() -> bool:
    """Whether this process was forked after :func:`guard_forks` (torch must keep to one
    intra-op thread here)."""
    return _forked_after_torch_threads


def _one_thread_in_forked_child() -> None:
    torch = sys.modules.get("torch")
    if torch is None:  # (no torch in the parent: no OpenMP pool to miss)
        return
    global _forked_after_torch_threads
    _forked_after_torch_threads = True
    torch.set_num_threads(1)

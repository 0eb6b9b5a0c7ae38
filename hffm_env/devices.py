"""Which torch devices this machine can run the env on: one rule for the env's ``device``
argument and the commands' ``--device``."""

from __future__ import annotations

from typing import Any

__all__ = ["device_problem"]


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

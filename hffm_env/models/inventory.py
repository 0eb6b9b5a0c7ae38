"""The module inventory: every trainable module instance of the M3T model with its type, its
parameters and its size in bits, and helpers to read and write one module inside the engine's
stacked state (every device's trainable tensors stacked along dim 0).

Module ids are ``"<type>/<name>"``:

==========  ======================  ================================================
type        names                   held by
==========  ======================  ================================================
encoder     each modality           devices that sense that modality
prompt      each task               devices that run that task
moe         ``fusion``              every device
adapter     ``fusion``              every device
head        each task               devices that run that task
==========  ======================  ================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from hffm_env.config import FUSION, MODULE_TYPES, module_id_of, split_module_id
from hffm_env.values import is_integer

__all__ = [
    "ModuleSpec",
    "ModuleInventory",
    "WIRE_SCALE_BITS",
    "on_the_wire",
    "held_modules",
    "stack_state",
    "get_module_state",
    "set_module_state",
]


WIRE_SCALE_BITS = 32
"""At ``precision_bits = 8`` each tensor of a module travels as int8 values plus one float32
scale per copy (:func:`on_the_wire`); the scale's bits are part of the module's size."""


def on_the_wire(values: torch.Tensor, precision_bits: int) -> torch.Tensor:
    """``values`` (``(R, ...)``: one copy a row, each sent on its own) as they arrive after a
    transfer at ``precision_bits``: 32 unchanged (the same tensor); 16 rounded to float16
    (clamped to its finite range); 8 as symmetric int8, each row scaled by its largest
    magnitude / 127. Training and aggregation compute in float32 on what arrives, so a cheaper
    wire costs accuracy as well as saving bits."""
    if precision_bits == 32:
        return values
    if precision_bits == 16:
        top = torch.finfo(torch.float16).max
        return values.clamp(-top, top).to(torch.float16).to(values.dtype)
    if precision_bits != 8:
        raise ValueError(f"precision_bits = {precision_bits!r}: allowed 8, 16 or 32")
    rows = values.reshape(values.shape[0], -1)
    scale = rows.abs().amax(dim=1, keepdim=True) / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (torch.round(rows / safe).clamp(-127, 127) * scale).reshape(values.shape)


@dataclass(frozen=True)
class ModuleSpec:
    """One trainable module instance.

    Attributes:
        module_id: ``"<type>/<name>"``, e.g. ``"encoder/image"``.
        module_type: one of ``encoder, prompt, moe, adapter, head``.
        name: the modality, task, or ``"fusion"``.
        param_names: its parameters' names, as in ``model.named_parameters()``.
        num_params: total number of scalars.
        size_bits: ``num_params * precision_bits`` (plus :data:`WIRE_SCALE_BITS` per tensor at
            8 bits), what one transfer of the module costs (:func:`on_the_wire`).
    """

    module_id: str
    module_type: str
    name: str
    param_names: tuple[str, ...]
    num_params: int
    size_bits: int


class ModuleInventory:
    """Every trainable module of ``model`` (an :class:`~hffm_env.models.M3TModel`), in the order
    encoders, prompts, moe, adapter, heads.

    Args:
        model: the model; its ``module_param_names()`` defines the modules.
        precision_bits: bits per parameter; defaults to ``model.model_config.precision_bits``.
    """

    def __init__(self, model: Any, precision_bits: int | None = None) -> None:
        bits = precision_bits if precision_bits is not None else model.model_config.precision_bits
        params = dict(model.named_parameters())
        specs = []
        for module_id, names in model.module_param_names().items():
            module_type, name = split_module_id(module_id)
            count = sum(params[n].numel() for n in names)
            scales = len(names) * WIRE_SCALE_BITS if bits == 8 else 0
            specs.append(
                ModuleSpec(module_id, module_type, name, tuple(names), count,
                           count * bits + scales)
            )
        self.precision_bits: int = bits
        self.specs: tuple[ModuleSpec, ...] = tuple(specs)
        self._by_id = {s.module_id: s for s in specs}
        self._of_param = {n: s.module_id for s in specs for n in s.param_names}
        self._shapes = {
            n: tuple(params[n].shape) for s in specs for n in s.param_names
        }

    def __len__(self) -> int:
        return len(self.specs)

    def __iter__(self) -> Iterator[ModuleSpec]:
        return iter(self.specs)

    def __contains__(self, module_id: object) -> bool:
        return module_id in self._by_id

    def ids(self) -> list[str]:
        """Every module id, in inventory order."""
        return [s.module_id for s in self.specs]

    def by_id(self, module_id: str) -> ModuleSpec:
        """The spec of ``module_id``; unknown ids raise ``KeyError`` listing the known ones."""
        try:
            return self._by_id[module_id]
        except KeyError:
            raise KeyError(
                f"module {module_id!r}: unknown; known modules are {self.ids()}"
            ) from None

    def by_type(self, module_type: str) -> list[ModuleSpec]:
        """The modules of one type; unknown types raise ``ValueError``."""
        if module_type not in MODULE_TYPES:
            raise ValueError(
                f"module type {module_type!r}: unknown; known are {list(MODULE_TYPES)}"
            )
        return [s for s in self.specs if s.module_type == module_type]

    def module_of_param(self, param_name: str) -> str:
        """The id of the module that owns trainable parameter ``param_name``."""
        try:
            return self._of_param[param_name]
        except KeyError:
            raise KeyError(
                f"parameter {param_name!r} belongs to no trainable module (frozen or unknown)"
            ) from None

    def param_shape(self, param_name: str) -> tuple[int, ...]:
        """The (unstacked) shape of trainable parameter ``param_name``."""
        self.module_of_param(param_name)
        return self._shapes[param_name]

    def param_names(self) -> list[str]:
        """Every trainable parameter name, module by module."""
        return [n for s in self.specs for n in s.param_names]

    @property
    def total_params(self) -> int:
        """Trainable scalars over all modules."""
        return sum(s.num_params for s in self.specs)

    @property
    def total_bits(self) -> int:
        """Size in bits of all modules together."""
        return sum(s.size_bits for s in self.specs)

    def wire_bits(self, model_payload_bits: float | None = None) -> dict[str, float]:
        """Bits on the wire per module id: its size, or, where a scenario fixes the whole
        model's payload (``cost.model_payload_bits``, the paper prototype's, in float32), its
        share of that payload, so that the prototype's published costs can be reproduced; a
        lower ``precision_bits`` sends that share at its own precision (int8: about a quarter)."""
        float32_bits = 32 * self.total_params
        scale = 1.0 if model_payload_bits is None else model_payload_bits / float32_bits
        return {s.module_id: s.size_bits * scale for s in self.specs}

    def as_table(self, model_payload_bits: float | None = None) -> list[dict[str, Any]]:
        """One dict per module: ``module_id, module_type, name, num_params, size_bits`` and
        ``wire_bits`` (what a transfer of it costs; :meth:`wire_bits`)."""
        wire = self.wire_bits(model_payload_bits)
        return [
            {
                "module_id": s.module_id,
                "module_type": s.module_type,
                "name": s.name,
                "num_params": s.num_params,
                "size_bits": s.size_bits,
                "wire_bits": wire[s.module_id],
            }
            for s in self.specs
        ]

    def __repr__(self) -> str:
        return (
            f"ModuleInventory({len(self.specs)} modules, {self.total_params} params, "
            f"{self.total_bits} bits)"
        )


def held_modules(profile: Any) -> list[str]:
    """Module ids a device holds: the encoders of its modalities, the prompts and heads of its
    tasks, and the shared ``moe/fusion`` and ``adapter/fusion``. ``profile`` is a
    :class:`hffm_env.data.DeviceProfile` (anything with ``modalities`` and ``tasks``)."""
    modalities, tasks = tuple(profile.modalities), tuple(profile.tasks)
    return (
        [module_id_of("encoder", m) for m in modalities]
        + [module_id_of("prompt", t) for t in tasks]
        + [module_id_of("moe", FUSION), module_id_of("adapter", FUSION)]
        + [module_id_of("head", t) for t in tasks]
    )


# --------------------------------------------------------------------------------------------
# stacked state


def stack_state(state: Mapping[str, torch.Tensor], num_devices: int) -> dict[str, torch.Tensor]:
    """Every tensor of ``state`` repeated ``num_devices`` times along a new dim 0 (fresh,
    contiguous copies, detached)."""
    if not is_integer(num_devices) or num_devices < 1:
        raise ValueError(f"stack_state: num_devices = {num_devices!r} must be an integer >= 1")
    return {
        name: t.detach().unsqueeze(0).expand(num_devices, *t.shape).clone()
        for name, t in state.items()
    }


def _module_tensors(
    stacked: Mapping[str, torch.Tensor], inventory: ModuleInventory, module_id: str
) -> tuple[ModuleSpec, int]:
    spec = inventory.by_id(module_id)
    missing = [n for n in spec.param_names if n not in stacked]
    if missing:
        raise KeyError(f"module {module_id!r}: stacked state lacks {missing}")
    num_devices = stacked[spec.param_names[0]].shape[0]
    for n in spec.param_names:
        want = (num_devices, *inventory.param_shape(n))
        if tuple(stacked[n].shape) != want:
            raise ValueError(
                f"module {module_id!r}: stacked {n} has shape {tuple(stacked[n].shape)}, "
                f"expected {want} (devices first)"
            )
    return spec, num_devices


def _check_device(device: int | None, num_devices: int) -> None:
    if device is None:
        return
    if not is_integer(device) or not 0 <= device < num_devices:
        raise IndexError(f"device = {device!r}: must be an integer in [0, {num_devices})")


def get_module_state(
    stacked: Mapping[str, torch.Tensor],
    inventory: ModuleInventory,
    module_id: str,
    device: int | None = None,
) -> dict[str, torch.Tensor]:
    """Copies of one module's tensors from ``stacked``: all devices ``(N, ...)`` when ``device``
    is ``None``, else that device's ``(...)``."""
    spec, num_devices = _module_tensors(stacked, inventory, module_id)
    _check_device(device, num_devices)
    if device is None:
        return {n: stacked[n].detach().clone() for n in spec.param_names}
    return {n: stacked[n][device].detach().clone() for n in spec.param_names}


def set_module_state(
    stacked: Mapping[str, torch.Tensor],
    inventory: ModuleInventory,
    module_id: str,
    values: Mapping[str, torch.Tensor],
    device: int | None = None,
) -> None:
    """Write one module's tensors into ``stacked`` in place.

    ``values`` must name exactly the module's parameters. With ``device`` set, each value has
    the unstacked shape and goes to that device. With ``device=None``, a value is either
    stacked ``(N, ...)`` (one per device) or unstacked ``(...)`` (broadcast to every device).
    """
    spec, num_devices = _module_tensors(stacked, inventory, module_id)
    _check_device(device, num_devices)
    missing = sorted(set(spec.param_names) - set(values))
    extra = sorted(set(values) - set(spec.param_names))
    if missing or extra:
        raise KeyError(
            f"module {module_id!r}: values must name exactly {list(spec.param_names)}; "
            f"missing {missing}, unexpected {extra}"
        )
    shape_of = {n: inventory.param_shape(n) for n in spec.param_names}
    for n in spec.param_names:
        got = tuple(values[n].shape)
        allowed = [shape_of[n]]
        if device is None:
            allowed = [(num_devices, *shape_of[n]), shape_of[n]]
        if got not in allowed:
            raise ValueError(
                f"module {module_id!r}: {n} has shape {got}, expected "
                + " or ".join(str(a) for a in allowed)
            )
    with torch.no_grad():
        for n in spec.param_names:
            target = stacked[n] if device is None else stacked[n][device]
            target.copy_(values[n].to(device=target.device, dtype=target.dtype))

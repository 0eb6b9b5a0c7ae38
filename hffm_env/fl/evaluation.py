"""Scoring every device's model in one batched pass, each distinct model once.

Every round the engine scores each device's personal model on three sets of samples: its
slice of the global test set, its own held-out local data and its slice of the held-out
cluster's data. Done naively (one padded batch per set and device) most of that work is
repeated: after an edge aggregation the devices of a cluster hold identical modules, and the
shorter devices' padding is computed and thrown away.

:class:`BatchedEvaluator` removes both:

1. **Groups.** Devices whose models agree on every module their forward pass reads (the
   encoders of the modalities they sense, the prompts and heads of the tasks they run, and
   the shared fusion modules) form one group and are evaluated with one set of parameters.
   A module no member reads may differ; the group takes any member's copy. The grouping is
   exact: value equality is tested on the parameters themselves.
2. **Rows, not devices.** A group's rows (sample, with the member's modality and task masks)
   are deduplicated and cut into fixed-size pieces; the pieces of all groups run through one
   ``vmap`` over the model, so padding is less than one piece per group.

Predictions are then mapped back to every (device, set, sample) row, so the accuracies are
those of the per-device evaluation; ``tests/fl/test_evaluation.py`` checks them against
:func:`hffm_env.fl.reference.per_device_predictions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, vmap

__all__ = ["EvalRows", "BatchedEvaluator", "Evaluation", "NUM_SETS", "SET_GLOBAL", "SET_LOCAL",
           "SET_HELD_OUT", "mean_over_tasks"]

SET_GLOBAL, SET_LOCAL, SET_HELD_OUT = 0, 1, 2
NUM_SETS = 3


@dataclass(frozen=True)
class EvalRows:
    """The fixed rows every evaluation scores: row r is sample ``sample[r]`` of the bank,
    scored for device ``device[r]`` as part of set ``kind[r]`` (``SET_*``)."""

    device: torch.Tensor
    kind: torch.Tensor
    sample: torch.Tensor

    def __len__(self) -> int:
        return int(self.device.numel())

    def take(self, index: torch.Tensor) -> EvalRows:
        """The rows at ``index``."""
        return EvalRows(self.device[index], self.kind[index], self.sample[index])


class BatchedEvaluator:
    """Predicts and scores every device's model on its rows (see the module docstring).

    Args:
        model: the M3T model (its frozen parts shared; trainable parameters passed per call).
        features: ``modality -> (B, T_m, F)`` frozen features of the bank of samples.
        labels: ``(B, K)`` labels of the bank.
        rows: which bank samples each device is scored on, and in which set.
        num_devices: ``N``.
        module_of_param: parameter name -> module index.
        piece_rows: rows per piece of the batched pass (padding is below this per group).
        max_rows_per_call: rows per forward call (bounds memory).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        features: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        rows: EvalRows,
        num_devices: int,
        module_of_param: Mapping[str, int],
        *,
        piece_rows: int = 32,
        max_rows_per_call: int = 4096,
    ) -> None:
        self.model = model
        self.features = dict(features)
        self.labels = labels
        self.rows = rows
        self.num_devices = num_devices
        self.module_of_param = dict(module_of_param)
        self.piece_rows = piece_rows
        self.pieces_per_call = max(1, max_rows_per_call // piece_rows)
        self.bank_size = int(labels.shape[0])
        self.row_labels = labels[rows.sample]
        self.row_cell = rows.device * NUM_SETS + rows.kind
        self.last_groups = 0

        def forward(params, feats, modality_mask, task_mask):  # model, not self: no cycle,
            # so a closed env's model is freed at once rather than by the cycle collector
            return functional_call(model, params, (feats, modality_mask, task_mask))[0]

        self._batched_forward = vmap(forward)

    # ----------------------------------------------------------------------------------------

    @staticmethod
    def group_devices(value_ids: np.ndarray, reads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy exact grouping.

        Args:
            value_ids: ``(N, M)``: equal ids for equal values of module m across devices.
            reads: ``(N, M)`` bool: device d's forward reads module m.

        Returns:
            ``group (N,)`` of every device and ``source (G, M)``: the device whose copy of
            module m the group uses (a member that reads it, when any does).
        """
        n, m = value_ids.shape
        wanted = np.where(reads, value_ids, -1)
        group = np.empty(n, dtype=np.int64)
        ids: list[np.ndarray] = []
        sources: list[np.ndarray] = []
        for d in range(n):
            for g, (gid, src) in enumerate(zip(ids, sources, strict=True)):
                if np.all((gid == -1) | (wanted[d] == -1) | (gid == wanted[d])):
                    fill = (gid == -1) & (wanted[d] != -1)
                    gid[fill] = wanted[d][fill]
                    src[fill] = d
                    group[d] = g
                    break
            else:
                group[d] = len(ids)
                ids.append(wanted[d].copy())
                sources.append(np.full(m, d, dtype=np.int64))
        return group, np.stack(sources)

    @staticmethod
    def value_ids(params: Mapping[str, torch.Tensor],
                  params_of_module: Sequence[Sequence[str]]) -> np.ndarray:
        """``(N, M)``: per module, devices with bit-identical values get the same id."""
        columns = []
        for names in params_of_module:
            flat = torch.cat([params[name].flatten(1) for name in names], dim=1)
            _, inverse = torch.unique(flat, dim=0, return_inverse=True)
            columns.append(inverse.cpu().numpy())
        return np.stack(columns, axis=1)

    # ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self,
        params: Mapping[str, torch.Tensor],
        reads: np.ndarray,
        params_of_module: Sequence[Sequence[str]],
        modality_mask: torch.Tensor,
        task_mask: torch.Tensor,
        subset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(R, K)`` predicted class of every row, or of the rows indexed by ``subset``
        (-1 for tasks the row's device does not run), each distinct (model, sample, masks)
        computed once.

        Args:
            params: stacked trainable parameters ``(N, ...)`` per name.
            reads: ``(N, M)`` bool: modules each device's forward reads.
            params_of_module: parameter names of each module.
            modality_mask: ``(N, M_modalities)`` bool.
            task_mask: ``(N, K)`` bool: the tasks each device runs (prompt tokens visible).
            subset: row indices (default: every row).
        """
        rows = self.rows if subset is None else self.rows.take(subset)
        dev = modality_mask.device
        group, source = self.group_devices(self.value_ids(params, params_of_module), reads)
        num_groups = source.shape[0]
        group_t = torch.as_tensor(group, device=dev)
        source_t = torch.as_tensor(source, device=dev)
        group_params = {
            name: value[source_t[:, self.module_of_param[name]]] for name, value in params.items()
        }
        masks = torch.cat([modality_mask, task_mask], dim=1)
        _, profile = torch.unique(masks, dim=0, return_inverse=True)
        num_profiles = int(profile.max()) + 1
        # one key per (group, profile, sample); sorted unique keys keep a group's rows together
        key = ((group_t[rows.device] * num_profiles + profile[rows.device]) * self.bank_size
               + rows.sample)
        unique, inverse = torch.unique(key, sorted=True, return_inverse=True)
        u_sample = unique % self.bank_size
        u_profile = (unique // self.bank_size) % num_profiles
        u_group = unique // (self.bank_size * num_profiles)
        # a device per profile, to read that profile's masks from
        profile_device = torch.zeros(num_profiles, dtype=torch.long, device=dev)
        profile_device[profile] = torch.arange(self.num_devices, device=dev)
        u_modality = modality_mask[profile_device[u_profile]]
        u_tasks = task_mask[profile_device[u_profile]]

        # pieces: each group's rows cut into runs of piece_rows
        p = self.piece_rows
        counts = torch.bincount(u_group, minlength=num_groups)
        pieces_per_group = (counts + p - 1) // p
        first_piece = torch.cumsum(pieces_per_group, 0) - pieces_per_group
        first_row = torch.cumsum(counts, 0) - counts
        position = torch.arange(len(unique), device=dev) - first_row[u_group]
        piece = first_piece[u_group] + position // p
        slot = position % p
        num_pieces = int(pieces_per_group.sum())
        table = torch.full((num_pieces, p), -1, dtype=torch.long, device=dev)
        table[piece, slot] = torch.arange(len(unique), device=dev)
        piece_group = torch.repeat_interleave(torch.arange(num_groups, device=dev),
                                              pieces_per_group)
        filled = table >= 0
        # padding slots repeat their piece's first row (always filled); their output is dropped
        table = torch.where(filled, table, table[:, :1])

        preds = torch.empty((len(unique), self.labels.shape[1]), dtype=torch.long, device=dev)
        for start in range(0, num_pieces, self.pieces_per_call):
            stop = min(start + self.pieces_per_call, num_pieces)
            ix = table[start:stop]
            feats = {m: f[u_sample[ix]] for m, f in self.features.items()}
            chunk_params = {k: v[piece_group[start:stop]] for k, v in group_params.items()}
            out = self._batched_forward(chunk_params, feats, u_modality[ix], u_tasks[ix])
            keep = filled[start:stop]
            preds[ix[keep]] = out.argmax(dim=-1)[keep]
        self.last_groups = num_groups
        preds = preds[inverse]
        return torch.where(task_mask[rows.device], preds, torch.full_like(preds, -1))

    def double(self) -> None:
        """Score in float64 from now on: the bank's cached features (the model is the
        caller's to convert, as :meth:`FederatedEngine.double
        <hffm_env.fl.engine.FederatedEngine.double>` does)."""
        self.features = {m: f.double() for m, f in self.features.items()}

    def rows_of(self, kind: int) -> torch.Tensor:
        """Indices of the rows of set ``kind`` (``SET_*``)."""
        return torch.nonzero(self.rows.kind == kind).flatten()

    def accuracy(self, preds: torch.Tensor, subset: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, NUM_SETS, K)``: each device's accuracy on each set from the predictions of
        every row (or of the rows ``subset``; 0 where a device has no rows)."""
        labels, cell = self.row_labels, self.row_cell
        if subset is not None:
            labels, cell = labels[subset], cell[subset]
        correct = (preds == labels).float()
        hits = torch.zeros((self.num_devices * NUM_SETS, correct.shape[1]),
                           device=correct.device)
        hits.index_add_(0, cell, correct)
        counts = torch.bincount(cell, minlength=self.num_devices * NUM_SETS).float()
        acc = hits / counts.clamp(min=1.0).unsqueeze(1)
        return acc.view(self.num_devices, NUM_SETS, -1)


def mean_over_tasks(per_task: dict[str, float]) -> float:
    """The ``"mean"`` of per-task accuracies: the mean over the tasks that have a number (a
    task no device runs has none, NaN), NaN if none has."""
    values = [v for v in per_task.values() if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


@dataclass(frozen=True)
class Evaluation:
    """Accuracies of the current device models, per task and ``"mean"`` (see
    :class:`~hffm_env.fl.engine.RoundResult` for their meaning)."""

    accuracy: dict[str, float]
    accuracy_local: dict[str, float]
    accuracy_held_out: dict[str, float]
    accuracy_local_per_device: np.ndarray

    @classmethod
    def unmeasured(cls, tasks: Sequence[str], num_devices: int,
                   accuracy: dict[str, float] | None = None) -> Evaluation:
        """Nothing measured: NaN for every task, ``"mean"`` and device; with ``accuracy``,
        the global accuracy alone (what a round outside the full evaluation measures)."""
        nan = dict.fromkeys([*tasks, "mean"], float("nan"))
        return cls(dict(accuracy if accuracy is not None else nan), dict(nan), dict(nan),
                   np.full((num_devices, len(tasks)), np.nan))

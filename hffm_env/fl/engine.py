"""The federated engine: one round of real, batched M3T training and module movement.

Every round (:meth:`FederatedEngine.run_round`):

1. every available device trains the modules it holds on its own data, all devices in one
   batched computation (``torch.func.vmap`` of ``grad`` over parameters stacked along a leading
   device dimension, and a stacked AdamW);
2. a device whose loss or parameters became non-finite is reset to its state at the start of
   the round, flagged, and excluded from every aggregate (a ``RuntimeWarning``, once, when
   that happens to every device that trained: the rates are too high to learn anything);
3. module types are aggregated at the tier the :class:`Schedule` names (D2D pairs: the plain
   mean of the two copies; D2D at the cluster head, edge, cloud: weighted by sample counts),
   as tensor arithmetic over the device dimension, among the devices that trained the module
   this round (:meth:`FederatedEngine.takes_part`); every movement is recorded in a
   :class:`TransferTable` by the transfer planner (:mod:`hffm_env.fl.transfer_plan`, which
   also prices schedules for :meth:`FederatedEngine.price_schedule`);
4. pending module requests are served from the chosen relay source;
5. the network prices the transfers and the computation, and the model is evaluated on each
   device's held-out data (personalisation) and on a global test set (generalisation).

Devices that dropped out neither train nor send nor receive; nothing they hold is lost.
With ``train=False`` (cost fidelity) steps 1, 2 and 5's evaluation are skipped: the same
schedule, transfers and prices, with accuracies reported as NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from hffm_env.config import (
    MODULE_TYPES,
    REQUESTS_PER_TASK_ARRIVAL,
    ScenarioConfig,
    split_module_id,
    task_module_ids,
)
from hffm_env.data import FederatedData, can_serve, task_specs
from hffm_env.devices import float32_default
from hffm_env.fl.aggregation import (
    broadcast_to_members,
    group_mean,
    group_weights,
    pair_average,
)
from hffm_env.fl.evaluation import (
    SET_GLOBAL,
    SET_HELD_OUT,
    SET_LOCAL,
    BatchedEvaluator,
    EvalRows,
    Evaluation,
    mean_over_tasks,
)
from hffm_env.fl.optim import StackedAdamW
from hffm_env.fl.schedule import ModuleRequest, RelaySource, Schedule, SourceKind, Tier
from hffm_env.fl.transfer_plan import (
    ModuleMove,
    RoundLayout,
    compute_samples,
    edge_holds_result,
    exchange_via,
    plan_aggregations,
    record_relay,
)
from hffm_env.fl.transfer_plan import price_schedule as plan_price
from hffm_env.models import (
    M3TModel,
    ModuleInventory,
    held_modules,
    masked_task_losses,
    on_the_wire,
    stack_state,
)
from hffm_env.seeding import check_seed
from hffm_env.sim import CostReport, Network, TransferTable
from hffm_env.values import shown

__all__ = ["Evaluation", "FederatedEngine", "RoundResult"]


@dataclass(frozen=True)
class RoundResult:
    """What one round produced.

    Accuracies are fractions in [0, 1], per task and ``"mean"`` (the mean over tasks); NaN in
    cost fidelity. ``accuracy`` is measured on the global test set (every device's model, on the
    tasks it runs, averaged over devices); ``accuracy_local`` on each device's own held-out data;
    ``accuracy_held_out`` on the held-out cluster's data, which no device trains on (NaN when
    the scenario has none). ``outage_devices`` took part in an aggregation whose exchange
    failed after every retransmission (``channel.outage_snr_db``): their module stayed stale;
    or asked for a module whose D2D relay was lost that way (it stays pending).
    ``idle_clusters`` had no available member (dropout) and skipped every tier this round.
    A device that runs a task but still lacks one of its modules scores 0 on it.
    """

    round_index: int
    accuracy: dict[str, float]
    accuracy_local: dict[str, float]
    accuracy_held_out: dict[str, float]
    accuracy_local_per_device: np.ndarray
    train_loss: float
    loss_per_task: dict[str, float]
    loss_per_device: np.ndarray
    transfers: TransferTable
    cost: CostReport
    aggregated: dict[str, str]
    dropped_devices: list[int] = field(default_factory=list)
    failed_devices: list[int] = field(default_factory=list)
    relayed: list[ModuleRequest] = field(default_factory=list)
    outage_devices: list[int] = field(default_factory=list)
    idle_clusters: list[int] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


class FederatedEngine:
    """Owns every device's, edge server's and the cloud's copies of the trainable modules.

    Args:
        scenario: the scenario config (engine knobs in ``scenario.fl``).
        model: the M3T model; its frozen parts are shared by all devices, its trainable
            parameters are the initial module states.
        data: the federated data split (device profiles, samples, test sets).
        network: the network simulator (availability, heads, D2D routes, cost accounting).
        train: ``False`` for cost fidelity (no training, no evaluation).
        track_values: average module values when aggregating (default: ``train``). Cost
            fidelity skips that arithmetic, since nothing reads the values; pass ``True`` to
            aggregate values without training (e.g. to check aggregation).
        device: torch device for training (``"cpu"`` or ``"cuda"``).
        eval_chunk: samples per device evaluated per batched forward (bounds memory).

    Optimiser state: with ``scenario.fl.optimizer_state == "reset"`` every device's AdamW
    moments are cleared at the start of each round; with ``"persist"`` they carry over (and are
    cleared for a device whose parameters were replaced by an aggregate it did not take part in).
    """

    def __init__(
        self,
        scenario: ScenarioConfig,
        model: M3TModel,
        data: FederatedData,
        network: Network,
        *,
        train: bool = True,
        track_values: bool | None = None,
        device: str | torch.device = "cpu",
        eval_chunk: int = 64,
    ) -> None:
        self.scenario = scenario
        self.model = model
        self.data = data
        self.network = network
        self.train = train
        self._warned_training_failed = False
        self.track_values = train if track_values is None else track_values
        self.device = torch.device(device)
        self.eval_chunk = eval_chunk
        self.tasks: tuple[str, ...] = tuple(model.tasks)
        self.modalities: tuple[str, ...] = tuple(model.modalities)
        self.inventory = ModuleInventory(model)
        self.module_ids: list[str] = self.inventory.ids()
        self.module_index = {mid: k for k, mid in enumerate(self.module_ids)}
        self.num_devices = network.num_devices
        self.num_clusters = network.num_clusters
        if len(data.profiles) != self.num_devices:
            raise ValueError(
                f"data has {len(data.profiles)} device profiles but the network has "
                f"{self.num_devices} devices"
            )
        self.cluster = torch.tensor(network.topology.cluster_of_device, dtype=torch.long,
                                       device=self.device)
        self.module_bits = self.inventory.wire_bits(scenario.cost.model_payload_bits)
        # parameter name -> its module's column in ``holds`` (who trains and holds it)
        self.param_module = {
            name: self.module_index[spec.module_id]
            for spec in self.inventory.specs
            for name in spec.param_names
        }
        self.num_samples = torch.as_tensor(data.num_samples, dtype=torch.float32,
                                           device=self.device)
        self.modality_mask = torch.stack(
            [model.modality_mask_for(p) for p in data.profiles]).to(self.device)
        self._initial_state = {
            k: v.detach().to(self.device) for k, v in model.trainable_state().items()
        }
        self.optimizer = StackedAdamW(scenario.fl.lr, scenario.fl.weight_decay)
        if train:
            self.model.to(self.device)
            self._prepare_training_data()
        self.reset(scenario.seed)

    # ----------------------------------------------------------------------------------------
    # set-up

    def _prepare_training_data(self) -> None:
        """Frozen features are computed once per sample; training gathers from this cache."""
        data = self.data
        feats = self.model.extract_features(data.pool)
        self.features = {m: f.to(self.device) for m, f in feats.items()}
        self.labels = torch.stack(
            [torch.as_tensor(data.pool.labels[t]) for t in self.tasks], dim=1
        ).to(self.device)
        self.train_idx, self.train_count = self._pad_indices(data.train_idx)
        self._prepare_evaluation(feats)

    def _prepare_evaluation(self, pool_features: dict[str, torch.Tensor]) -> None:
        """One bank of evaluation samples (local test samples, global test set, held-out
        cluster) and the fixed rows each device is scored on (see :mod:`hffm_env.fl.evaluation`)."""
        data, fl = self.data, self.scenario.fl
        local = np.unique(np.concatenate([np.asarray(ix, dtype=np.int64)
                                          for ix in data.test_idx]))
        parts = [({m: f[torch.as_tensor(local)] for m, f in pool_features.items()},
                  torch.stack([torch.as_tensor(data.pool.labels[t])[torch.as_tensor(local)]
                               for t in self.tasks], dim=1))]
        for samples in (data.global_test, data.held_out):
            if len(samples):
                parts.append((self.model.extract_features(samples),
                              torch.stack([torch.as_tensor(samples.labels[t])
                                           for t in self.tasks], dim=1)))
        features = {m: torch.cat([f[m] for f, _ in parts]).to(self.device)
                    for m in pool_features}
        labels = torch.cat([lab for _, lab in parts]).to(self.device)
        global_offset = len(local)
        held_out_offset = global_offset + len(data.global_test)
        device, kind, sample = [], [], []

        def add(d: int, which: int, ix: np.ndarray) -> None:
            device.append(np.full(len(ix), d))
            kind.append(np.full(len(ix), which))
            sample.append(ix)

        global_slices = self._eval_slices(len(data.global_test), fl.eval_samples_per_device)
        held_out_slices = (self._eval_slices(len(data.held_out),
                                             fl.eval_held_out_samples_per_device)
                           if len(data.held_out) else None)
        for d in range(self.num_devices):
            add(d, SET_GLOBAL, global_offset + global_slices[d])
            add(d, SET_LOCAL, np.searchsorted(local, np.asarray(data.test_idx[d])))
            if held_out_slices is not None:
                add(d, SET_HELD_OUT, held_out_offset + held_out_slices[d])
        rows = EvalRows(*(torch.as_tensor(np.concatenate(x), dtype=torch.long,
                                          device=self.device) for x in (device, kind, sample)))
        self.has_held_out = held_out_slices is not None
        self.evaluator = BatchedEvaluator(
            self.model, features, labels, rows, self.num_devices, self.param_module,
            max_rows_per_call=self.num_devices * self.eval_chunk,
        )
        self._params_of_module = [spec.param_names for spec in self.inventory.specs]

    def _eval_slices(self, size: int, per_device: int) -> np.ndarray:
        """``(N, min(per_device, size))`` indices: device d's fixed, consecutive slice of a test
        set of ``size`` samples, the slices taken in turn (wrapping). Together they cover the
        set when ``N * per_device >= size`` (``paper``, ``medium``); otherwise only its first
        ``N * per_device`` samples are ever scored (``small``: 576 of 900), and a task's rows,
        those of the devices that run it, need not be class-balanced."""
        per_device = min(per_device, size)
        start = np.arange(self.num_devices)[:, None] * per_device
        return (start + np.arange(per_device)) % size

    def _pad_indices(self, per_device: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(ix) for ix in per_device)
        padded = np.zeros((len(per_device), longest), dtype=np.int64)
        for d, ix in enumerate(per_device):
            padded[d, : len(ix)] = ix
        counts = torch.as_tensor([len(ix) for ix in per_device], device=self.device)
        return torch.as_tensor(padded, device=self.device), counts

    @float32_default()
    def reset(self, seed: int) -> None:
        """Back to the initial modules and profiles; the torch generator reseeded from ``seed``
        (an integer >= 0; ``ValueError`` naming it otherwise)."""
        seed = check_seed(seed, "seed")
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        n, c = self.num_devices, self.num_clusters
        # Without training or value tracking nothing changes a module's values (a relay
        # copies initial values onto initial values), so the copies made by the first reset
        # serve every later episode; making them is most of a cost-fidelity reset.
        if self.train or self.track_values or not hasattr(self, "params"):
            self.params = stack_state(self._initial_state, n)
            self.edge_params = stack_state(self._initial_state, c)
            self.cloud_params = {k: v.clone() for k, v in self._initial_state.items()}
        self.device_tasks = torch.stack(
            [self.model.task_mask_for(p) for p in self.data.profiles]).to(self.device)
        holds = torch.zeros((n, len(self.module_ids)), dtype=torch.bool, device=self.device)
        for d, profile in enumerate(self.data.profiles):
            for mid in held_modules(profile):
                holds[d, self.module_index[mid]] = True
        self.holds = holds
        self.pending: list[ModuleRequest] = []
        if self.train:
            self.optimizer.reset(self.params)
        self.round_index = 0

    # ----------------------------------------------------------------------------------------
    # between rounds

    def begin_round(self, rng: np.random.Generator) -> list[ModuleRequest]:
        """Draw this round's task arrival (``scenario.fl.task_arrival_prob``): a device gains a
        task its modalities can serve and must receive that task's prompt and head by relaying.
        Returns the pending requests."""
        fl = self.scenario.fl
        if fl.task_arrival_prob > 0 and rng.random() < fl.task_arrival_prob:
            candidates = [
                (d, k)
                for d, profile in enumerate(self.data.profiles)
                for k, task in enumerate(self.tasks)
                if not bool(self.device_tasks[d, k]) and can_serve(task, profile.modalities)
            ]
            needed = REQUESTS_PER_TASK_ARRIVAL
            if candidates and len(self.pending) + needed <= fl.max_pending_requests:
                d, k = candidates[int(rng.integers(len(candidates)))]
                self.device_tasks[d, k] = True
                for module_id in task_module_ids(self.tasks[k]):
                    if not bool(self.holds[d, self.module_index[module_id]]):
                        self.pending.append(ModuleRequest(d, module_id))
        return list(self.pending)

    def holders(self, module_id: str) -> np.ndarray:
        """Boolean ``(N,)``: which devices hold ``module_id``."""
        return self.holds[:, self.module_index[module_id]].cpu().numpy()

    # ----------------------------------------------------------------------------------------
    # one round

    def validate_schedule(self, schedule: Schedule) -> None:
        """Raise ``ValueError`` naming the field when ``schedule`` does not fit this network
        (``TypeError`` when it is no :class:`Schedule`)."""
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule = {shown(schedule)}: must be a Schedule (e.g. "
                            "Schedule.uniform(Tier.EDGE, routes))")
        c, n = self.num_clusters, self.num_devices
        if schedule.routes and len(schedule.routes) != c:
            raise ValueError(f"Schedule.routes has {len(schedule.routes)} entries: need {c}")
        if schedule.cloud_clusters and len(schedule.cloud_clusters) != c:
            raise ValueError(f"Schedule.cloud_clusters has {len(schedule.cloud_clusters)} "
                             f"entries: need {c}")
        if schedule.heads:
            if len(schedule.heads) != c:
                raise ValueError(f"Schedule.heads has {len(schedule.heads)} entries: need {c}")
            for cl, head in enumerate(schedule.heads):
                self._check_head(cl, int(head))
        seen: set[int] = set()
        for i, j in schedule.pairs:
            for d in (i, j):
                if not 0 <= d < n:
                    raise ValueError(f"Schedule.pairs has device {d}: allowed 0..{n - 1}")
                if d in seen:
                    raise ValueError(
                        f"Schedule.pairs uses device {d} twice: pairs must be disjoint"
                    )
                seen.add(d)
            ci, cj = int(self.cluster[i]), int(self.cluster[j])
            if ci != cj:
                raise ValueError(f"Schedule.pairs has ({i}, {j}): devices of clusters {ci} and "
                                 f"{cj}; a pair is two devices of one cluster")
            # a device that dropped out this round just sits the exchange out
            both_here = bool(self.network.available[i] and self.network.available[j])
            if both_here and not self.network.is_feasible_pair(i, j):
                raise ValueError(
                    f"Schedule.pairs has ({i}, {j}): not joined in this round's D2D graph of "
                    f"cluster {ci} (within channel.d2d_radius_m, or by the spanning tree that "
                    "connects the cluster)")
        for request, source in schedule.relay_sources.items():
            if request not in self.pending:
                raise ValueError(f"Schedule.relay_sources names {request}, which is not pending")
            if source.kind == SourceKind.DEVICE:
                j = source.device
                if not 0 <= j < n or int(self.cluster[j]) != int(self.cluster[request.device]):
                    raise ValueError(
                        f"relay source device {j} for {request}: must be in the requester's "
                        "cluster"
                    )
                if not bool(self.holds[j, self.module_index[request.module_id]]):
                    raise ValueError(
                        f"relay source device {j} for {request}: does not hold "
                        f"{request.module_id}"
                    )

    def _check_head(self, cluster: int, head: int) -> None:
        """A head must be an available member; -1 (no head) only when no member is available,
        and then the cluster sits the round out."""
        members = self.network.members(cluster)
        present = self.network.available_members(cluster)
        if head == -1 and present.size == 0:
            return
        if head not in members:
            raise ValueError(
                f"Schedule.heads[{cluster}] = {head}: not a member of cluster {cluster} "
                f"(members {members.tolist()}; -1 only when none is available)"
            )
        if head not in present:
            raise ValueError(
                f"Schedule.heads[{cluster}] = {head}: dropped out this round (available "
                f"members {present.tolist()})"
            )

    def idle_clusters(self) -> np.ndarray:
        """``(S,)`` bool: clusters with no available member this round; they skip every tier
        (nothing is sent, nothing changes) and their devices keep their modules."""
        available = np.asarray(self.network.available, dtype=bool)
        counts = np.bincount(self.network.cluster_of_device[available],
                             minlength=self.num_clusters)
        return counts == 0

    def _warn_training_failed(self) -> None:
        """Once per engine: every device that trained this round went non-finite, so nothing
        learns (each is reset to the round's start, where the same step fails again) while
        the rounds, accuracies and rewards look ordinary."""
        if self._warned_training_failed:
            return
        self._warned_training_failed = True
        fl = self.scenario.fl
        warnings.warn(
            f"round {self.round_index}: local training went non-finite on every device that "
            "trained (each is reset to the round's start and left out, so the model does not "
            f"learn); fl.lr = {fl.lr} or fl.weight_decay = {fl.weight_decay} is probably too "
            "high for this model", RuntimeWarning, stacklevel=3)

    @float32_default()
    def run_round(self, schedule: Schedule, *, full_evaluation: bool = True) -> RoundResult:
        """Train, aggregate, relay and price one round under ``schedule``; the local and
        held-out accuracy are measured only with ``full_evaluation`` (NaN otherwise)."""
        self.validate_schedule(schedule)
        network = self.network
        available = torch.as_tensor(network.available, dtype=torch.bool, device=self.device)
        flags: list[str] = []

        serving = self.trainable_tasks()  # (holds change only with the relays, after)
        trained = available & serving.any(dim=1)
        failed = torch.zeros_like(available)
        loss_per_device = np.full(self.num_devices, np.nan)
        loss_per_task = {t: float("nan") for t in self.tasks}
        if self.train:
            losses, task_losses, failed = self.local_training(trained)
            trained_np = trained.cpu().numpy()
            # a failed device's training was thrown away (reset, out of every aggregate): its
            # loss describes no model any device holds
            loss_per_device = np.where(trained_np & ~failed.cpu().numpy(), losses, np.nan)
            ran = serving.cpu().numpy() & trained_np[:, None]
            ran &= ~failed.cpu().numpy()[:, None]
            for k, task in enumerate(self.tasks):
                if ran[:, k].any():
                    loss_per_task[task] = float(task_losses[ran[:, k], k].mean())
            for d in torch.nonzero(failed).flatten().tolist():
                flags.append(f"device {d}: non-finite loss or parameters; reset and excluded")
            if bool(trained.any()) and bool(failed[trained].all()):
                self._warn_training_failed()

        # Plan (and record) every aggregation's transfers first, then move the values: the
        # plan depends only on who takes part and on the network, never on module values.
        table = network.new_table()
        participating = self.takes_part(trained & ~failed, serving)
        plan = plan_aggregations(table, schedule, network, self.scenario, self.inventory,
                                 self.module_bits, participating.cpu().numpy())
        outage: set[int] = set()
        for move in plan.moves:
            outage |= move.outage_devices
            if self.track_values:  # cost fidelity: values are never read, only their moves
                self._aggregate_values(move, plan.layout)
        relayed, lost = self._serve_requests(schedule, available, table, flags)
        outage |= {request.device for request in lost}  # paid for, and still pending

        samples = compute_samples(self.scenario, trained.cpu().numpy())
        cost = network.account(table, compute_samples=samples)

        scores = self.evaluate(full=full_evaluation)
        finite = loss_per_device[np.isfinite(loss_per_device)]
        result = RoundResult(
            round_index=self.round_index,
            accuracy=scores.accuracy,
            accuracy_local=scores.accuracy_local,
            accuracy_held_out=scores.accuracy_held_out,
            accuracy_local_per_device=scores.accuracy_local_per_device,
            train_loss=float(finite.mean()) if finite.size else float("nan"),
            loss_per_task=loss_per_task,
            loss_per_device=loss_per_device,
            transfers=table,
            cost=cost,
            aggregated=schedule.tier_names(),
            dropped_devices=np.flatnonzero(~network.available).tolist(),
            failed_devices=torch.nonzero(failed).flatten().tolist(),
            relayed=relayed,
            outage_devices=sorted(outage),
            idle_clusters=np.flatnonzero(self.idle_clusters()).tolist(),
            flags=flags,
        )
        self.round_index += 1
        return result

    @float32_default()
    def price_schedule(self, schedule: Schedule, *, with_compute: bool = True,
                       network: Network | None = None) -> CostReport:
        """The cost of ``schedule`` under the current network conditions (or those of
        ``network``, a view of the same devices such as
        :meth:`~hffm_env.sim.network.Network.with_everyone_available`), with every available
        device that would train a module taking part in its aggregation (as
        :meth:`run_round` has them: :meth:`takes_part`), without training or changing any
        state (used for reward references and cost studies).

        With ``channel.outage_snr_db`` set, the price includes the round's retransmissions,
        drawn as the round began: exactly what :meth:`run_round` will charge, and more than a
        sender could know before it sends (:mod:`hffm_env.sim.network`), so a policy that
        reads it under outage sees the round's luck (``greedy-energy`` and
        ``plan+cheapest-routes`` do; no preset turns outage on)."""
        self.validate_schedule(schedule)
        serving = self.trainable_tasks()
        would_train = self.takes_part(serving.any(dim=1), serving)  # (availability: below)
        return plan_price(schedule, self.network if network is None else network,
                          self.scenario, self.inventory, self.module_bits,
                          would_train.cpu().numpy(), with_compute=with_compute)

    def double(self) -> None:
        """Compute in float64 from now on: the model, its cached features, the initial
        modules and the modules' current values (the optimiser's moments start again from
        zero). For checks against a reference implementation: in float32,
        Adam's division by ``sqrt(v)`` and the MoE's top-k choice between near-tied experts
        turn rounding differences into visible parameter differences."""
        self.model.double()
        if self.train:
            self.features = {m: f.double() for m, f in self.features.items()}
            self.evaluator.double()
        self._initial_state = {k: v.double() for k, v in self._initial_state.items()}
        self.params = {k: v.double() for k, v in self.params.items()}
        self.edge_params = {k: v.double() for k, v in self.edge_params.items()}
        self.cloud_params = {k: v.double() for k, v in self.cloud_params.items()}
        self.optimizer.reset(self.params)  # moments of the new dtype, from zero

    def attach_network(self, network: Network) -> None:
        """Use ``network`` from now on (the env re-places the network on every reset). Its
        devices must be the same, in the same clusters' order of sizes."""
        if not isinstance(network, Network):
            raise TypeError(f"network = {shown(network)}: must be a hffm_env.sim.Network "
                            "(Network(scenario, streams))")
        if network.num_devices != self.num_devices:
            raise ValueError(
                f"network has {network.num_devices} devices; the engine was built for "
                f"{self.num_devices}"
            )
        # the edge models, the data split and the action are per cluster, in this order
        sizes = np.bincount(network.topology.cluster_of_device).tolist()
        built = np.bincount(self.network.topology.cluster_of_device).tolist()
        if sizes != built:
            raise ValueError(f"network has clusters of sizes {sizes}; the engine was built for "
                             f"{built}")
        self.network = network
        self.num_clusters = network.num_clusters
        self.cluster = torch.tensor(network.topology.cluster_of_device, dtype=torch.long,
                                       device=self.device)

    @float32_default()
    def evaluate(self, *, full: bool = True) -> Evaluation:
        """Global, local and held-out-cluster accuracy (per task and mean) and the local
        accuracy per device and task, of the current device models; with ``full=False`` only
        the global accuracy (the rest NaN); everything NaN in cost fidelity."""
        if not self.train:
            return Evaluation.unmeasured(self.tasks, self.num_devices)
        return self._evaluate(full)

    # ----------------------------------------------------------------------------------------
    # training

    def trainable_tasks(self) -> torch.Tensor:
        """``(N, K)`` bool: tasks each device can train and serve now (it runs the task and
        holds both of its modules, the prompt and the head)."""
        holds_both = torch.stack(
            [self.holds[:, [self.module_index[m] for m in task_module_ids(t)]].all(dim=1)
             for t in self.tasks], dim=1)
        return self.device_tasks & holds_both

    def loss(
        self,
        params: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor],
        modality_mask: torch.Tensor,
        task_mask: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One device's training loss on one mini-batch: the mean negative log-likelihood over
        the tasks in ``task_mask`` plus the MoE balance loss. Returns the loss and, detached,
        ``(loss, per-task loss (K,))``; a pure function of ``params`` (``grad``/``vmap`` map it
        over devices)."""
        logits, balance_loss = functional_call(
            self.model, params, (features, modality_mask, task_mask)
        )
        task_loss, per_task = masked_task_losses(logits, labels, task_mask)
        loss = task_loss + balance_loss
        return loss, (loss.detach(), per_task.detach())

    def draw_minibatch(self) -> torch.Tensor:
        """``(N, batch)`` sample indices of one local step: uniform draws over each device's
        own training samples, from the round's generator."""
        u = torch.rand((self.num_devices, self.scenario.fl.batch_size),
                       generator=self.generator, device=self.device)
        pick = (u * self.train_count.unsqueeze(1)).long()
        return self.train_idx.gather(1, pick)

    @float32_default()
    def local_training(
        self, trained: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """``local_steps`` AdamW steps for every device at once; returns per-device mean loss,
        per-device per-task mean loss ``(N, K)`` and the devices that went non-finite (already
        reset to their round-start state)."""
        fl = self.scenario.fl
        n, batch = self.num_devices, fl.batch_size
        snapshot = {k: v.clone() for k, v in self.params.items()}
        if fl.optimizer_state == "reset":
            self.optimizer.reset(self.params)
        task_mask = self.trainable_tasks()
        # a module held but not read (a task's prompt relayed before its head) gets no
        # gradient: AdamW's weight decay and step count must leave it alone too
        learns = self.holds & torch.as_tensor(self.reads_modules(task_mask), device=self.device)
        update = {
            name: trained & learns[:, self.param_module[name]] for name in self.params
        }
        step_grad = vmap(grad(self.loss, has_aux=True), in_dims=(0, 0, 0, 0, 0))
        modality = self.modality_mask.unsqueeze(1).expand(n, batch, -1)
        tasks = task_mask.unsqueeze(1).expand(n, batch, -1)
        loss_sum = torch.zeros(n, device=self.device)
        task_loss_sum = torch.zeros((n, len(self.tasks)), device=self.device)
        for _ in range(fl.local_steps):
            idx = self.draw_minibatch()
            feats = {m: f[idx] for m, f in self.features.items()}
            grads, (loss, task_loss) = step_grad(
                self.params, feats, modality, tasks, self.labels[idx]
            )
            self.params = self.optimizer.step(self.params, grads, update)
            loss_sum += loss
            task_loss_sum += task_loss
        finite = torch.isfinite(loss_sum)
        for value in self.params.values():
            finite &= torch.isfinite(value.flatten(1)).all(dim=1)
        failed = trained & ~finite
        if bool(failed.any()):
            shape_of = {k: (-1,) + (1,) * (v.dim() - 1) for k, v in self.params.items()}
            self.params = {
                k: torch.where(failed.view(shape_of[k]), snapshot[k], v)
                for k, v in self.params.items()
            }
            self.optimizer.reset(self.params, devices=failed)
        steps = fl.local_steps
        return (
            (loss_sum / steps).cpu().numpy(),
            (task_loss_sum / steps).cpu().numpy(),
            failed,
        )

    # ----------------------------------------------------------------------------------------
    # aggregation and relaying (the transfers themselves: hffm_env.fl.transfer_plan)

    def _aggregate_values(self, move: ModuleMove, layout: RoundLayout) -> None:
        """Aggregate one module's values as ``move`` plans it (its transfers are already
        recorded): average each successful D2D pair, or the weighted mean of the participants
        whose exchange succeeded at the move's tier, sent back to them (and kept at the edge
        servers and the cloud where the tier passes through them)."""
        tier, routes = move.tier, layout.routes
        names = self.inventory.by_id(move.module_id).param_names
        if tier == Tier.D2D_PAIRS:
            if move.pairs:
                first = torch.tensor([i for i, _ in move.pairs], device=self.device)
                second = torch.tensor([j for _, j in move.pairs], device=self.device)
                for name in names:
                    self.params[name] = pair_average(self.params[name], first, second,
                                                     received=self._wire(self.params[name]))
            return

        part = torch.as_tensor(move.joined, device=self.device)
        # the weights are the module's, not a parameter's: built once, used for each tensor
        dtype = self.params[names[0]].dtype
        by_cluster = group_weights(self.num_samples * part, self.cluster, self.num_clusters,
                                   dtype)
        totals = by_cluster.totals
        if tier == Tier.CLOUD:
            if not bool((totals > 0).any()):
                return
            one_group = torch.zeros(self.num_clusters, dtype=torch.long, device=self.device)
            to_cloud = group_weights(totals, one_group, 1, dtype)
            # the cloud's average comes back through the edge servers it passes
            reached = (totals > 0) & torch.tensor(
                [edge_holds_result(tier, r) for r in routes], device=self.device)
            device_group = torch.zeros_like(self.cluster)
        elif tier == Tier.EDGE:
            at_edge = torch.tensor(
                [edge_holds_result(tier, r) for r in routes], device=self.device) & (totals > 0)
        own_kept, result_kept = self._kept_at_heads(tier, layout)
        head_uploads = torch.tensor([exchange_via(tier, r) == "d2d+uplink" for r in routes],
                                    dtype=torch.bool, device=self.device)
        everyone = torch.arange(self.num_devices, device=self.device)
        for name in names:
            # what the devices send arrives at the model's precision (and so does what they
            # receive back); the servers and heads average and forward in float32
            means = group_mean(self._delivered(self.params[name], own_kept), by_cluster)
            if tier == Tier.CLOUD:
                # a head that gathered over D2D uploads its cluster's mean: on the wire too
                cloud = group_mean(self._delivered(means, ~head_uploads), to_cloud)
                self.cloud_params[name] = cloud[0]
                self.edge_params[name] = broadcast_to_members(
                    self.edge_params[name], cloud.expand(self.num_clusters, *cloud.shape[1:]),
                    one_group, reached,
                )
                self.params[name] = broadcast_to_members(self.params[name], self._wire(cloud),
                                                         device_group, part)
            else:
                arrived = self._delivered(means[self.cluster], result_kept)
                self.params[name] = broadcast_to_members(self.params[name], arrived, everyone,
                                                         part)
                if tier == Tier.EDGE:
                    self.edge_params[name] = torch.where(
                        at_edge.view((-1,) + (1,) * (means.dim() - 1)), means,
                        self.edge_params[name],
                    )

    def _kept_at_heads(self, tier: Tier, layout: RoundLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N,)`` bool twice: the cluster heads whose own copy enters the aggregate without a
        transfer (they gather over D2D), and those that compute the result themselves and so
        receive it over no link (an aggregation at the head: D2D_HEAD, or EDGE over D2D)."""
        own = torch.zeros(self.num_devices, dtype=torch.bool, device=self.device)
        result = torch.zeros_like(own)
        for head, route in zip(layout.heads, layout.routes, strict=True):
            if head >= 0:
                via = exchange_via(tier, route)
                own[head] = via in ("d2d", "d2d+uplink")
                result[head] = via == "d2d"
        return own, result

    def _delivered(self, values: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """``values`` (a copy a device row) as they reach the aggregate or the device: rounded
        by the wire (:meth:`_wire`) except the rows ``kept`` where they are (no transfer)."""
        if self.inventory.precision_bits == 32:
            return values
        return torch.where(kept.view((-1,) + (1,) * (values.dim() - 1)), values,
                           self._wire(values))

    def _wire(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (a copy a row) as a transfer to or from a device delivers them, at the
        model's ``precision_bits`` (:func:`~hffm_env.models.inventory.on_the_wire`; at 32 bits
        the same tensor)."""
        return on_the_wire(values, self.inventory.precision_bits)

    def _serve_requests(
        self,
        schedule: Schedule,
        available: torch.Tensor,
        table: TransferTable,
        flags: list[str],
    ) -> tuple[list[ModuleRequest], list[ModuleRequest]]:
        """Serve the schedule's relay requests whose requester and source are present: record
        the transfer, and when it arrives (a D2D relay can be lost to outage, and stays
        pending) copy the source's values to the requester and mark the module held. Returns
        the requests served and those lost to outage."""
        served: list[ModuleRequest] = []
        lost: list[ModuleRequest] = []
        for request, source in schedule.relay_sources.items():
            d, module_id = request.device, request.module_id
            c = int(self.cluster[d])
            if not bool(available[d]):
                flags.append(f"relay of {module_id} to device {d}: requester dropped out")
                continue
            names = self.inventory.by_id(module_id).param_names
            if source.kind == SourceKind.DEVICE:
                j = source.device
                if not bool(available[j]):
                    flags.append(f"relay of {module_id} to device {d}: source {j} dropped out")
                    continue
                values = {name: self.params[name][j] for name in names}
            elif source.kind == SourceKind.EDGE:
                values = {name: self.edge_params[name][c] for name in names}
            else:
                values = {name: self.cloud_params[name] for name in names}
            if not record_relay(table, self.network, request, source,
                                self.module_bits[module_id]):
                flags.append(f"relay of {module_id} to device {d}: lost to outage on the D2D "
                             f"path from device {source.device} (it stays pending)")
                lost.append(request)
                continue
            for name, value in values.items():
                self.params[name][d] = self._wire(value.unsqueeze(0))[0]
            self.holds[d, self.module_index[module_id]] = True
            self.pending.remove(request)
            served.append(request)
        return served, lost

    # ----------------------------------------------------------------------------------------
    # evaluation and observation helpers

    def takes_part(self, trained: torch.Tensor,
                   serving: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, M)`` bool: who takes part in each module's aggregation this round, sending its
        copy and receiving the aggregate: the devices that ``trained`` (``(N,)``: available,
        trained and not failed) and whose training read the module (:meth:`reads_modules`;
        ``serving``: :meth:`trainable_tasks`, when the caller has it already). A
        holder whose copy did not train (a task's prompt relayed before its head, so the task
        is not served yet) was averaged in with its full sample weight and pulled the trained
        copies back towards the initial ones; it takes part once it trains the module."""
        reads = torch.as_tensor(self.reads_modules(serving), device=self.device)
        return self.holds & reads & trained.unsqueeze(1)

    def reads_modules(self, serving: torch.Tensor | None = None) -> np.ndarray:
        """``(N, M)`` bool: the modules each device's forward pass reads (the encoders of its
        modalities, the prompts and heads of the tasks it serves, the shared fusion modules).
        A task whose prompt or head has not arrived yet is not served: its initial prompt must
        not enter the attention of the tasks the device does serve (training leaves it out
        too). ``serving``: :meth:`trainable_tasks`, when the caller has it already."""
        modality = self.modality_mask.cpu().numpy()
        tasks = (self.trainable_tasks() if serving is None else serving).cpu().numpy()
        out = np.ones((self.num_devices, len(self.module_ids)), dtype=bool)
        for k, module_id in enumerate(self.module_ids):
            kind, name = split_module_id(module_id)
            if kind == "encoder":
                out[:, k] = modality[:, self.modalities.index(name)]
            elif kind in ("prompt", "head"):
                out[:, k] = tasks[:, self.tasks.index(name)]
        return out

    def predict_rows(self, rows: torch.Tensor | None = None,
                     serving: torch.Tensor | None = None) -> torch.Tensor:
        """``(R, K)`` predicted class of every evaluation row (``self.evaluator.rows``), or of
        the rows indexed by ``rows``; -1 for tasks the row's device does not serve (the task
        mask of training: :meth:`trainable_tasks`, or ``serving`` when the caller has it)."""
        serving = self.trainable_tasks() if serving is None else serving
        return self.evaluator.predict(self.params, self.reads_modules(serving),
                                      self._params_of_module, self.modality_mask, serving, rows)

    def _evaluate(self, full: bool) -> Evaluation:
        serving = self.trainable_tasks()
        runs = self.device_tasks
        rows = None if full else self.evaluator.rows_of(SET_GLOBAL)
        per_set = self.evaluator.accuracy(self.predict_rows(rows, serving), rows)  # (N, sets, K)
        per_set = torch.where(serving.unsqueeze(1), per_set, torch.zeros_like(per_set))
        nan = {t: float("nan") for t in (*self.tasks, "mean")}

        def summarise(per_device: torch.Tensor) -> dict[str, float]:
            out: dict[str, float] = {}
            for k, task in enumerate(self.tasks):
                who = runs[:, k]
                out[task] = float(per_device[who, k].mean()) if bool(who.any()) else float("nan")
            out["mean"] = mean_over_tasks(out)
            return out

        accuracy = summarise(per_set[:, SET_GLOBAL])
        if not full:
            return Evaluation.unmeasured(self.tasks, self.num_devices, accuracy)
        held_out = summarise(per_set[:, SET_HELD_OUT]) if self.has_held_out else dict(nan)
        local = per_set[:, SET_LOCAL]
        per_device = torch.where(runs, local, torch.full_like(local, float("nan")))
        return Evaluation(accuracy, summarise(local), held_out, per_device.cpu().numpy())

    @torch.no_grad()
    @float32_default()
    def drift(self) -> dict[str, tuple[float, float]]:
        """Per module type, how far device copies have drifted: the mean over holders of
        ``||theta_d - cluster mean|| / ||global mean||`` and of ``||theta_d - global mean||``
        over the same norm. Zeros when nothing is held."""
        out: dict[str, tuple[float, float]] = {}
        zeros = torch.zeros(self.num_devices, dtype=torch.long, device=self.device)
        for module_type in MODULE_TYPES:
            to_cluster = torch.zeros(self.num_devices, device=self.device)
            to_global = torch.zeros(self.num_devices, device=self.device)
            norm = torch.zeros((), device=self.device)
            held_any = torch.zeros(self.num_devices, dtype=torch.bool, device=self.device)
            for spec in self.inventory.by_type(module_type):
                holds = self.holds[:, self.module_index[spec.module_id]]
                held_any |= holds
                w = holds.float()
                dtype = self.params[spec.param_names[0]].dtype
                by_cluster = group_weights(w, self.cluster, self.num_clusters, dtype)
                overall = group_weights(w, zeros, 1, dtype)
                for name in spec.param_names:
                    x = self.params[name]
                    cmean = group_mean(x, by_cluster)
                    gmean = group_mean(x, overall)
                    flat = x.flatten(1)
                    to_cluster += ((flat - cmean[self.cluster].flatten(1)) ** 2).sum(1) * w
                    to_global += ((flat - gmean[0].flatten().unsqueeze(0)) ** 2).sum(1) * w
                    norm += (gmean[0] ** 2).sum()
            if not bool(held_any.any()):
                out[module_type] = (0.0, 0.0)
                continue
            scale = norm.sqrt().clamp(min=1e-8)
            out[module_type] = (
                float(to_cluster.sqrt()[held_any].mean() / scale),
                float(to_global.sqrt()[held_any].mean() / scale),
            )
        return out

    def task_chance(self) -> dict[str, float]:
        """Chance accuracy per task."""
        specs = task_specs(self.scenario.data)
        return {t: specs[t].chance for t in self.tasks}

    def relay_candidates(self, request: ModuleRequest) -> list[RelaySource]:
        """Feasible sources for ``request`` now: available devices of the requester's cluster
        that hold the module, then the edge and the cloud; none while the requester itself
        is unavailable (it receives nothing this round: its relay slot can only wait)."""
        if not bool(self.network.available[request.device]):
            return []
        c = int(self.cluster[request.device])
        holds = self.holders(request.module_id)
        out = [
            RelaySource(SourceKind.DEVICE, int(j))
            for j in self.network.members(c)
            if holds[j] and self.network.available[j] and j != request.device
        ]
        return out + [RelaySource(SourceKind.EDGE), RelaySource(SourceKind.CLOUD)]

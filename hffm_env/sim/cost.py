"""What a round cost: the cost accountant and its report.

:class:`CostAccountant` charges the hops of a :class:`~hffm_env.sim.transfers.TransferTable`
(and the devices' local computation) with one round's link rates and returns a
:class:`CostReport`; the accounting rules are in its docstring. It reads the table only through
the table's public accessors (:meth:`~hffm_env.sim.transfers.TransferTable.columns`).

The table itself lives in :mod:`hffm_env.sim.transfers`; its names are re-exported here so that
``from hffm_env.sim.cost import TransferTable, Stage, LinkKind`` keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from hffm_env.config import ScenarioConfig
from hffm_env.sim.channel import LinkRates, backhaul_time_s
from hffm_env.sim.topology import Topology
from hffm_env.sim.transfers import (
    LINK_KINDS,
    STAGE_NAMES,
    LinkKind,
    Stage,
    TransferTable,
    cloud_node_id,
    edge_node_id,
    module_type_of,
)

__all__ = [
    "LINK_KINDS",
    "STAGE_NAMES",
    "CostAccountant",
    "CostReport",
    "LinkKind",
    "Stage",
    "TransferTable",
    "cloud_node_id",
    "edge_node_id",
    "module_type_of",
]

# Stages COMPUTE .. BACKHAUL_UP are a round's upward part, the rest its downward part (rule 6).
_NUM_UP_STAGES = int(Stage.BACKHAUL_UP) + 1
# The tier each LinkKind's energy is reported under (CostReport.energy_by_tier_j).
_TIER_OF_LINK = {LinkKind.UPLINK: "edge", LinkKind.DOWNLINK: "edge", LinkKind.D2D: "d2d",
                 LinkKind.BACKHAUL: "cloud", LinkKind.DEVICE_CLOUD: "cloud"}


@dataclass
class CostReport:
    """Latency and energy of one round (SI units: seconds, joules, bits).

    Attributes:
        latency_s: wall-clock latency of the round.
        energy_j: total energy (transfers + computation).
        compute_latency_s: slowest device's local computation.
        compute_energy_j: total computation energy.
        energy_by_tier_j: ``compute``, ``d2d``, ``edge`` (uplink + downlink), ``cloud`` (backhaul
            + device_cloud).
        latency_by_stage_s: per stage name, the slowest cluster's time in that stage.
        energy_by_module_type_j: transfer energy per module type.
        energy_by_device_j: ``(N,)`` energy paid by each device (its transmissions and its
            computation; edge- and cloud-side transmissions are in the totals only).
        energy_by_cluster_j: ``(S,)`` the energy each cluster's devices paid (the sum of
            ``energy_by_device_j`` over its members).
        energy_charged_to_cluster_j: ``(S,)`` the energy of each cluster's part of the round:
            its devices' computation and every hop of its flows, whoever transmits it (its
            edge server's downlinks and backhaul, the cloud's transmissions to it); sums to
            ``energy_j``.
        latency_by_cluster_s: ``(S,)`` each cluster's own up + down time.
        bits_by_link_kind: bits carried per link kind, counting every hop.
        num_flows: number of flows.
        num_hops: number of hops.
    """

    latency_s: float
    energy_j: float
    compute_latency_s: float
    compute_energy_j: float
    energy_by_tier_j: dict[str, float]
    latency_by_stage_s: dict[str, float]
    energy_by_module_type_j: dict[str, float]
    energy_by_device_j: np.ndarray
    energy_by_cluster_j: np.ndarray
    energy_charged_to_cluster_j: np.ndarray
    latency_by_cluster_s: np.ndarray
    bits_by_link_kind: dict[str, float]
    num_flows: int
    num_hops: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (arrays become lists)."""
        return {
            "latency_s": float(self.latency_s),
            "energy_j": float(self.energy_j),
            "compute_latency_s": float(self.compute_latency_s),
            "compute_energy_j": float(self.compute_energy_j),
            "energy_by_tier_j": {k: float(v) for k, v in self.energy_by_tier_j.items()},
            "latency_by_stage_s": {k: float(v) for k, v in self.latency_by_stage_s.items()},
            "energy_by_module_type_j": {
                k: float(v) for k, v in self.energy_by_module_type_j.items()
            },
            "energy_by_device_j": [float(v) for v in self.energy_by_device_j],
            "energy_by_cluster_j": [float(v) for v in self.energy_by_cluster_j],
            "energy_charged_to_cluster_j": [float(v) for v in self.energy_charged_to_cluster_j],
            "latency_by_cluster_s": [float(v) for v in self.latency_by_cluster_s],
            "bits_by_link_kind": {k: float(v) for k, v in self.bits_by_link_kind.items()},
            "num_flows": int(self.num_flows),
            "num_hops": int(self.num_hops),
        }


class CostAccountant:
    """Charges a :class:`TransferTable` (and optional local computation) for one round.

    Rules:

    1. **Hop time.** Wireless hops: ``bits / rate`` with this round's :class:`LinkRates`
       (uplink: the sender's uplink rate; downlink: the receiver's downlink rate; D2D: the pair's
       rate), times the link's transmission attempts this round (outage and retransmission,
       ``channel.outage_snr_db``; 1 without outage). Wired hops (``backhaul`` and
       ``device_cloud``): ``bits / rate_bps``, plus the fixed ``latency_s`` once per wide-area
       session, i.e. per (stage, src, dst): modules
       sent together over the same wired link share one delay.
    2. **Hop energy** = the link's ``energy_power_w`` x hop time, paid by the transmitter
       (uplink, downlink and D2D use their LinkConfig's ``energy_power_w``; backhaul and
       device_cloud the backhaul's). A relayed flow pays every hop.
    3. **No downlink charge.** With ``cost.charge_downlink = False`` every transmission by the
       infrastructure (edge -> device downlink, cloud -> edge backhaul, cloud -> device) costs
       zero time and zero energy, as in the prototype, which charged none of them. The rows stay
       in the table and their bits are still counted.
    4. **Flows in a stage.** A flow's route is cut into *segments*: maximal runs of consecutive
       hops in the same (stage, cluster); a segment takes the sum of its hop times. Within one
       (stage, cluster), segments with the same endpoints (src, dst) run one after another (their
       times add up: e.g. five modules on one uplink), and different endpoint pairs run in
       parallel (the stage takes the longest). Relayed flows of different origins therefore do
       not queue behind each other on a shared relay link (as in the prototype, where the D2D
       up-phase takes the slowest path). A flow with ``after_flow`` starts when the group holding
       that flow has finished (store-and-forward down a broadcast tree).
    5. **Computation** (``compute.enabled`` and ``compute_samples`` given): a device with ``n``
       samples takes ``cycles_per_sample * n / f`` seconds and ``kappa * f^2 *
       cycles_per_sample * n`` joules; a cluster's COMPUTE stage lasts as long as its slowest
       device.
    6. **Round latency.** A cluster's latency is the sum of its stage times (stages are
       barriers). Up = COMPUTE .. BACKHAUL_UP, down = BACKHAUL_DOWN .. D2D_DOWN. When clusters
       send up to the cloud (a BACKHAUL_UP-stage hop: they join a cloud aggregation), what the
       cloud sends down waits for the slowest of them: a cluster that sends up or receives
       from the cloud starts its down phase at max(its up, the slowest sender's up). Every
       other cluster (one left out of the cloud, say) takes its own up + down, and so does
       every cluster when none sends up (a module relayed from the cloud waits for nothing).
       Round latency is the slowest cluster's.

    Payload sizes are the callers' business (e.g. rescaling to ``cost.model_payload_bits``).

    Args:
        scenario: the scenario (channel powers, backhaul, compute and cost flags).
        topology: the network; only its clusters are read (which devices each holds), which
            stay as devices move, so the accountant of a network with mobility stays valid.
        cpu_freq_hz: ``(N,)`` CPU frequency of each device.
    """

    def __init__(self, scenario: ScenarioConfig, topology: Topology,
                 cpu_freq_hz: np.ndarray) -> None:
        self.scenario = scenario
        self.cluster_of_device = np.array(topology.cluster_of_device, dtype=np.int64)
        """``(N,)`` each device's cluster (edge server)."""
        self.num_clusters = int(topology.num_clusters)
        self.cpu_freq_hz = np.asarray(cpu_freq_hz, dtype=np.float64)
        ch = scenario.channel
        # indexed by LinkKind (keyed, so that the enum's order cannot mix them up)
        power_w = {LinkKind.UPLINK: ch.uplink.energy_power_w,
                   LinkKind.DOWNLINK: ch.downlink.energy_power_w,
                   LinkKind.D2D: ch.d2d.energy_power_w,
                   LinkKind.BACKHAUL: ch.backhaul.energy_power_w,
                   LinkKind.DEVICE_CLOUD: ch.backhaul.energy_power_w}
        self._power_w = np.array([power_w[kind] for kind in LinkKind])

    def compute_cost(self, compute_samples: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(latency_s, energy_j)`` per device of local computation (zeros when computation is
        disabled or ``compute_samples`` is None)."""
        n = len(self.cluster_of_device)
        cfg = self.scenario.compute
        if compute_samples is None or not cfg.enabled:
            return np.zeros(n), np.zeros(n)
        samples = np.broadcast_to(np.asarray(compute_samples, dtype=np.float64), (n,))
        bad = np.flatnonzero(~(np.isfinite(samples) & (samples >= 0)))
        if bad.size:  # (-100 samples gave negative energy, NaN a NaN cost)
            raise ValueError(f"compute_samples[{int(bad[0])}] = {float(samples[bad[0]])}: "
                             "must be a finite count >= 0 (one per device)")
        cycles = cfg.cycles_per_sample * samples
        return cycles / self.cpu_freq_hz, cfg.kappa * self.cpu_freq_hz**2 * cycles

    def hop_times_s(self, table: TransferTable, rates: LinkRates) -> np.ndarray:
        """``(H,)`` time of each hop before the ``charge_downlink`` rule."""
        cols = table.columns()
        link, bits = cols["link"], cols["size_bits"]
        src, dst = cols["src"], cols["dst"]
        times = np.empty(link.shape[0])
        # filled in by LinkRates.__post_init__ (all ones without outage)
        uplink_attempts = cast(np.ndarray, rates.uplink_attempts)
        d2d_attempts = cast(np.ndarray, rates.d2d_attempts)
        for kind in LinkKind:
            rows = np.flatnonzero(link == kind)
            if rows.size == 0:
                continue
            if kind == LinkKind.UPLINK:
                attempts = uplink_attempts[src[rows]]
                times[rows] = attempts * bits[rows] / rates.uplink_bps[src[rows]]
            elif kind == LinkKind.DOWNLINK:
                times[rows] = bits[rows] / rates.downlink_bps[dst[rows]]
            elif kind == LinkKind.D2D:
                pair = rates.pair_index(src[rows], dst[rows])
                if np.any(pair < 0):
                    rates.d2d_rates(src[rows], dst[rows])  # raises, naming the bad pair
                times[rows] = d2d_attempts[pair] * bits[rows] / rates.d2d_bps[pair]
            else:
                # One wide-area session per (stage, src, dst): several modules sent together
                # share its fixed delay, which only the session's first flow pays (and none
                # where nothing moves: a session of 0 bits is never opened, as a 0-bit
                # wireless hop costs nothing).
                backhaul = self.scenario.channel.backhaul
                times[rows] = backhaul_time_s(backhaul, bits[rows]) - backhaul.latency_s
                key = np.stack([cols["stage"][rows], src[rows], dst[rows]], axis=1)
                _, first, session = np.unique(key, axis=0, return_index=True,
                                              return_inverse=True)
                moves = np.bincount(session.reshape(-1), weights=bits[rows]) > 0
                times[rows[first[moves]]] += backhaul.latency_s
        return times

    def hop_energy_j(self, table: TransferTable, times_s: np.ndarray) -> np.ndarray:
        """``(H,)`` energy of each hop taking ``times_s``: its link's ``energy_power_w`` times
        the time, paid by the transmitter."""
        return self._power_w[table.columns()["link"]] * times_s

    def account(
        self,
        table: TransferTable,
        rates: LinkRates,
        compute_samples: np.ndarray | None = None,
    ) -> CostReport:
        """Latency and energy of ``table`` (plus computation of ``compute_samples`` per device)
        under this round's ``rates``; see the class docstring for the rules."""
        n, c = len(self.cluster_of_device), self.num_clusters
        if (table.num_devices, table.num_clusters) != (n, c):
            raise ValueError("transfer table and accountant describe different networks")
        cols = table.columns()
        link, src, flow = cols["link"], cols["src"], cols["flow"]

        times = self.hop_times_s(table, rates)
        if not self.scenario.cost.charge_downlink:
            # Downward infrastructure transmissions are free; edge -> cloud is still charged.
            downward = (link == LinkKind.DOWNLINK) | (src == table.cloud_node())
            times = np.where(downward, 0.0, times)
        energy = self.hop_energy_j(table, times)

        stage_lat = np.zeros((len(Stage), c))
        if flow.size:
            self._transfer_stage_latency(cols, times, stage_lat)
        comp_lat, comp_energy = self.compute_cost(compute_samples)
        np.maximum.at(stage_lat[Stage.COMPUTE], self.cluster_of_device, comp_lat)

        up = stage_lat[:_NUM_UP_STAGES].sum(axis=0)
        down = stage_lat[_NUM_UP_STAGES:].sum(axis=0)
        cluster, stage = cols["cluster"], cols["stage"]
        sends_up = np.zeros(c, dtype=bool)
        sends_up[cluster[stage == Stage.BACKHAUL_UP]] = True
        down_starts = up
        if sends_up.any():  # the cloud's answer leaves after the slowest sender's upload
            waits = sends_up.copy()
            waits[cluster[stage == Stage.BACKHAUL_DOWN]] = True
            down_starts = np.where(waits, np.maximum(up, up[sends_up].max()), up)
        latency = (down_starts + down).max()

        tier_names = ("compute", "d2d", "edge", "cloud")
        link_energy = np.bincount(link, weights=energy, minlength=len(LinkKind))
        tiers = dict.fromkeys(tier_names, 0.0)
        tiers["compute"] = float(comp_energy.sum())
        for kind, tier in _TIER_OF_LINK.items():
            tiers[tier] += float(link_energy[kind])
        num_types = len(table.module_type_names)
        type_energy = np.bincount(cols["module_type"], weights=energy, minlength=num_types)
        by_device = comp_energy.copy()
        from_device = src < n
        by_device += np.bincount(src[from_device], weights=energy[from_device], minlength=n)
        bits = np.bincount(link, weights=cols["size_bits"], minlength=len(LinkKind))
        return CostReport(
            latency_s=float(latency),
            energy_j=float(energy.sum() + comp_energy.sum()),
            compute_latency_s=float(comp_lat.max(initial=0.0)),
            compute_energy_j=float(comp_energy.sum()),
            energy_by_tier_j=tiers,
            latency_by_stage_s={name: float(stage_lat[s].max()) for s, name in
                                enumerate(STAGE_NAMES)},
            energy_by_module_type_j={name: float(type_energy[t]) for t, name in
                                     enumerate(table.module_type_names)},
            energy_by_device_j=by_device,
            energy_by_cluster_j=np.bincount(self.cluster_of_device, weights=by_device,
                                            minlength=c),
            # a hop's cluster: its sender's, or, for the cloud's hops, its receiver's
            energy_charged_to_cluster_j=(
                np.bincount(self.cluster_of_device, weights=comp_energy, minlength=c)
                + np.bincount(cluster, weights=energy, minlength=c)),
            latency_by_cluster_s=up + down,
            bits_by_link_kind={name: float(bits[k]) for k, name in enumerate(LINK_KINDS)},
            num_flows=table.num_flows,
            num_hops=int(flow.size),
        )

    def _transfer_stage_latency(
        self, cols: Mapping[str, np.ndarray], times: np.ndarray, stage_lat: np.ndarray
    ) -> None:
        """Fill ``stage_lat (stages, clusters)`` with the transfers' time per (stage, cluster)
        (rule 4), fully vectorised: segments -> (stage, cluster, src, dst) groups -> dependency
        relaxation -> max per (stage, cluster)."""
        c = stage_lat.shape[1]
        num_nodes = len(self.cluster_of_device) + c + 1
        order = np.lexsort((cols["hop"], cols["flow"]))  # route order within each flow
        flow = cols["flow"][order]
        stage, cluster = cols["stage"][order], cols["cluster"][order]
        src, dst, t = cols["src"][order], cols["dst"][order], times[order]

        # Segments: a new one starts at each flow start or (stage, cluster) change.
        starts = np.ones(flow.size, dtype=bool)
        starts[1:] = (flow[1:] != flow[:-1]) | (stage[1:] != stage[:-1]) | (
            cluster[1:] != cluster[:-1])
        seg_of_hop = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        last = np.append(first[1:], flow.size) - 1
        seg_time = np.bincount(seg_of_hop, weights=t)
        seg_stage, seg_cluster = stage[first], cluster[first]
        seg_key = ((seg_stage * c + seg_cluster) * num_nodes + src[first]) * num_nodes + dst[last]
        _, group = np.unique(seg_key, return_inverse=True)
        group = group.reshape(-1)
        duration = np.bincount(group, weights=seg_time)
        group_stage = np.zeros(duration.size, dtype=np.int64)
        group_cluster = np.zeros(duration.size, dtype=np.int64)
        group_stage[group] = seg_stage
        group_cluster[group] = seg_cluster

        finish = duration
        after = cols["flow_after"]
        seg_flow = flow[first]
        is_flow_start = first == np.searchsorted(flow, seg_flow)
        waiting = np.flatnonzero((after[seg_flow] >= 0) & is_flow_start)
        if waiting.size:
            # The predecessor's last segment: flows are contiguous in ``flow`` after the sort.
            flow_last_seg = seg_of_hop[np.searchsorted(flow, np.arange(after.size), "right") - 1]
            dep_group = group[waiting]
            pred_group = group[flow_last_seg[after[seg_flow[waiting]]]]
            keep = dep_group != pred_group  # same group: already sequential
            dep_group, pred_group = dep_group[keep], pred_group[keep]
            for _ in range(duration.size + 1):
                start = np.zeros_like(duration)
                np.maximum.at(start, dep_group, finish[pred_group])
                new = duration + start
                if np.array_equal(new, finish):
                    break
                finish = new
            else:
                raise ValueError("after_flow dependencies form a cycle")
        np.maximum.at(stage_lat, (group_stage, group_cluster), finish)

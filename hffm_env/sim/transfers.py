"""The transfer table: what moved where in a round, as columns of hops.

Nodes are integers: devices ``0 .. N-1``, edge server ``c`` is ``N + c``, the cloud is ``N + S``.

A *flow* is one module's payload going from a source to a destination along a route; each row
of a :class:`TransferTable` is one *hop* of a flow (one link). Every hop has a link kind
(:class:`LinkKind`), a stage (:class:`Stage`, the phase of the round it happens in) and a
cluster (inferred from its endpoints: the device's or edge server's cluster).

The table only records; what the hops cost is :mod:`hffm_env.sim.cost`'s business, which reads
the table through :meth:`TransferTable.columns` like any other user.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from types import MappingProxyType
from typing import Any, NamedTuple, cast, overload

import numpy as np

from hffm_env.config import split_module_id
from hffm_env.sim.topology import Topology

__all__ = [
    "LINK_KINDS",
    "STAGE_NAMES",
    "LinkKind",
    "Stage",
    "TransferTable",
    "cloud_node_id",
    "edge_node_id",
    "module_type_of",
]

class Stage(IntEnum):
    """Phases of a round, in time order. Stages ``COMPUTE .. BACKHAUL_UP`` are the upward part,
    ``BACKHAUL_DOWN .. D2D_DOWN`` the downward part."""

    COMPUTE = 0
    D2D_UP = 1
    UPLINK = 2
    BACKHAUL_UP = 3
    BACKHAUL_DOWN = 4
    DOWNLINK = 5
    D2D_DOWN = 6


STAGE_NAMES: tuple[str, ...] = tuple(s.name.lower() for s in Stage)
"""Stage names as used in reports: ``"compute"``, ``"d2d_up"``, ..., ``"d2d_down"``."""


class LinkKind(IntEnum):
    """Link kinds: ``UPLINK`` device -> own edge, ``DOWNLINK`` own edge -> device, ``D2D``
    device <-> device of the same cluster, ``BACKHAUL`` edge <-> cloud, ``DEVICE_CLOUD`` device
    <-> cloud (star topology; same wired model as the backhaul, as in the prototype)."""

    UPLINK = 0
    DOWNLINK = 1
    D2D = 2
    BACKHAUL = 3
    DEVICE_CLOUD = 4


LINK_KINDS: tuple[str, ...] = tuple(k.name.lower() for k in LinkKind)
"""Link kind names: ``"uplink"``, ``"downlink"``, ``"d2d"``, ``"backhaul"``, ``"device_cloud"``."""

_DEVICE, _EDGE, _CLOUD = 0, 1, 2

# _VALID_ENDPOINTS[link, src kind, dst kind]: which node kinds each link kind connects.
_VALID_ENDPOINTS = np.zeros((len(LinkKind), 3, 3), dtype=bool)
_VALID_ENDPOINTS[LinkKind.UPLINK, _DEVICE, _EDGE] = True
_VALID_ENDPOINTS[LinkKind.DOWNLINK, _EDGE, _DEVICE] = True
_VALID_ENDPOINTS[LinkKind.D2D, _DEVICE, _DEVICE] = True
_VALID_ENDPOINTS[LinkKind.BACKHAUL, _EDGE, _CLOUD] = True
_VALID_ENDPOINTS[LinkKind.BACKHAUL, _CLOUD, _EDGE] = True
_VALID_ENDPOINTS[LinkKind.DEVICE_CLOUD, _DEVICE, _CLOUD] = True
_VALID_ENDPOINTS[LinkKind.DEVICE_CLOUD, _CLOUD, _DEVICE] = True
# Wireless links stay inside one cluster (a device talks to its own edge server).
_SAME_CLUSTER = np.array([kind in (LinkKind.UPLINK, LinkKind.DOWNLINK, LinkKind.D2D)
                          for kind in LinkKind])


@overload
def edge_node_id(num_devices: int, cluster: int) -> int: ...
@overload
def edge_node_id(num_devices: int, cluster: np.ndarray) -> np.ndarray: ...
@overload
def edge_node_id(num_devices: int, cluster: int | np.ndarray) -> int | np.ndarray: ...
def edge_node_id(num_devices: int, cluster: int | np.ndarray) -> int | np.ndarray:
    """Node id of the edge server of ``cluster`` in transfer tables: devices are ``0..N-1``,
    edge servers ``N + cluster``, the cloud :func:`cloud_node_id`."""
    return num_devices + cluster


def cloud_node_id(num_devices: int, num_clusters: int) -> int:
    """Node id of the cloud in transfer tables: ``N + S``."""
    return num_devices + num_clusters


def module_type_of(module_id: str) -> str:
    """The module type of a module id: the part before the first ``"/"`` (``"adapter/fusion"``
    -> ``"adapter"``), or the whole id when it has none."""
    return split_module_id(module_id)[0]


def _as_link(kind: str | int | LinkKind) -> int:
    if isinstance(kind, (str, np.str_)):
        try:
            return LINK_KINDS.index(kind)
        except ValueError:
            raise ValueError(f"unknown link kind {kind!r}: expected one of {LINK_KINDS}") from None
    return int(LinkKind(kind))


class _Chunk(NamedTuple):
    """What one builder call appended, as given: scalars stay scalars until :func:`_expand`."""

    module: int | np.ndarray  # module index of every flow, or one per flow
    first_flow: int  # table-wide id of the chunk's first flow
    num_flows: int
    size: float | np.ndarray  # bits of every flow, or one per flow
    after: np.ndarray | None  # table-wide flow each flow waits for (-1: none); None: none at all
    hop_flow: np.ndarray | None  # chunk-local flow of each hop; None: one hop per flow, in order
    hop_index: np.ndarray | None  # position of each hop in its route; None: all 0
    src: np.ndarray
    dst: np.ndarray
    link: int | np.ndarray  # one LinkKind for every hop, or one per hop
    stage: int | np.ndarray  # one Stage for every hop, or one per hop


def _scalar_or_copy(values: np.ndarray | int) -> int | np.ndarray:
    """An int for a 0-d value, else an int64 copy (the caller may reuse its array)."""
    array = np.asarray(values, dtype=np.int64)
    return int(array) if array.ndim == 0 else array.copy()


def _low(values: np.ndarray | int) -> int:
    return values if isinstance(values, int) else int(values.min())


def _high(values: np.ndarray | int) -> int:
    return values if isinstance(values, int) else int(values.max())


def _spread(values: list[Any], counts: np.ndarray, dtype: type) -> np.ndarray:
    """One column from per-chunk values: a scalar fills its chunk's ``count`` rows, an array is
    copied into them. One ``np.repeat`` for the scalars, a slice assignment per array."""
    out: np.ndarray = np.repeat(
        np.array([0 if isinstance(v, np.ndarray) else v for v in values], dtype=dtype), counts)
    starts = np.cumsum(counts) - counts
    for k, value in enumerate(values):
        if isinstance(value, np.ndarray):
            out[starts[k]:starts[k] + counts[k]] = value
    return out


def _expand(chunks: Sequence[_Chunk], num_hops: int) -> dict[str, np.ndarray]:
    """The flow columns (``flow_module``, ``flow_size_bits``, ``flow_after``) and the hop
    columns that chunks hold directly (``flow``, ``hop``, ``src``, ``dst``, ``link``,
    ``stage``), each built in one pass over all chunks."""
    flows_per = np.array([c.num_flows for c in chunks], dtype=np.int64)
    hops_per = np.array([c.src.shape[0] for c in chunks], dtype=np.int64)
    hop_starts = np.cumsum(hops_per) - hops_per
    # chunk-local flow of each hop: its position in the chunk when there is one hop per flow
    local = np.arange(num_hops, dtype=np.int64) - np.repeat(hop_starts, hops_per)
    for k, chunk in enumerate(chunks):
        if chunk.hop_flow is not None:
            local[hop_starts[k]:hop_starts[k] + hops_per[k]] = chunk.hop_flow
    first = np.array([c.first_flow for c in chunks], dtype=np.int64)
    return {
        "flow": local + np.repeat(first, hops_per),
        "hop": _spread([0 if c.hop_index is None else c.hop_index for c in chunks], hops_per,
                       np.int64),
        "src": np.concatenate([c.src for c in chunks]) if chunks else np.empty(0, np.int64),
        "dst": np.concatenate([c.dst for c in chunks]) if chunks else np.empty(0, np.int64),
        "link": _spread([c.link for c in chunks], hops_per, np.int64),
        "stage": _spread([c.stage for c in chunks], hops_per, np.int64),
        "flow_module": _spread([c.module for c in chunks], flows_per, np.int64),
        "flow_size_bits": _spread([c.size for c in chunks], flows_per, np.float64),
        "flow_after": _spread([-1 if c.after is None else c.after for c in chunks], flows_per,
                              np.int64),
    }


class TransferTable:
    """Columnar table of transfer hops, built with bulk vectorised builders.

    Hop columns (read-only numpy arrays, one entry per hop, available after building; all of
    them at once, with the flow columns, from :meth:`columns`):
    :attr:`flow`, :attr:`hop`, :attr:`module`, :attr:`module_type`, :attr:`size_bits`,
    :attr:`src`, :attr:`dst`, :attr:`link`, :attr:`stage`, :attr:`cluster`. ``module`` indexes
    :attr:`module_names`, ``module_type`` indexes :attr:`module_type_names`, ``link`` is a
    :class:`LinkKind` and ``stage`` a :class:`Stage` value. Flow ids are ``0 .. len(flows)-1``
    in insertion order. Each builder returns the ids of the flows it added.

    A flow may name one earlier flow it must wait for (``after_flow``): used by broadcast trees,
    where a child's copy leaves only once its parent has received it. The two must meet in the
    same stage and cluster (different stages are ordered anyway).

    Args:
        num_devices: ``N``.
        num_clusters: ``S`` (one edge server per cluster).
        cluster_of_device: ``(N,)`` cluster of each device.
    """

    def __init__(self, num_devices: int, num_clusters: int, cluster_of_device: np.ndarray) -> None:
        self.num_devices = int(num_devices)
        self.num_clusters = int(num_clusters)
        cluster_of_device = np.asarray(cluster_of_device, dtype=np.int64)
        if cluster_of_device.shape != (self.num_devices,):
            raise ValueError("cluster_of_device must have one entry per device")
        outside = np.flatnonzero((cluster_of_device < 0)
                                 | (cluster_of_device >= self.num_clusters))
        if outside.size:  # its hops would name another node (an edge id past the last: cloud)
            d = int(outside[0])
            raise ValueError(f"cluster_of_device[{d}] = {int(cluster_of_device[d])}: allowed "
                             f"0..{self.num_clusters - 1}")
        self.cluster_of_device = cluster_of_device
        n, s = self.num_devices, self.num_clusters
        self._cluster_of_node = np.concatenate([cluster_of_device, np.arange(s), [-1]])
        self._kind_of_node = np.concatenate(
            [np.full(n, _DEVICE), np.full(s, _EDGE), [_CLOUD]]
        ).astype(np.int64)
        self.module_names: list[str] = []
        self.module_type_names: list[str] = []
        self._module_index: dict[str, int] = {}
        self._type_of_module: list[int] = []
        self._num_flows = 0
        # One _Chunk per builder call, turned into columns lazily and all at once: builders
        # are called about a hundred times per round, mostly with a handful of single hops
        # and scalar sizes, links and stages, so a chunk keeps those as scalars.
        self._chunks: list[_Chunk] = []
        self._num_hops = 0
        self._cache: Mapping[str, np.ndarray] | None = None

    # ---------------------------------------------------------------------------- nodes

    @classmethod
    def for_topology(cls, topology: Topology) -> TransferTable:
        """An empty table for ``topology``."""
        return cls(topology.num_devices, topology.num_clusters, topology.cluster_of_device)

    @overload
    def edge_node(self, cluster: int) -> int: ...
    @overload
    def edge_node(self, cluster: np.ndarray) -> np.ndarray: ...
    @overload
    def edge_node(self, cluster: int | np.ndarray) -> int | np.ndarray: ...
    def edge_node(self, cluster: int | np.ndarray) -> int | np.ndarray:
        """Node id of the edge server of ``cluster`` (:func:`edge_node_id`)."""
        return edge_node_id(self.num_devices, cluster)

    def cloud_node(self) -> int:
        """Node id of the cloud (:func:`cloud_node_id`)."""
        return cloud_node_id(self.num_devices, self.num_clusters)

    def node_place(self, node: int) -> tuple[str, int]:
        """What a node id stands for: ``("device", i)``, ``("edge", cluster)`` or
        ``("cloud", 0)`` (the inverse of :meth:`edge_node` and :meth:`cloud_node`)."""
        kind = self._kind_of_node[node]
        if kind == _DEVICE:
            return "device", int(node)
        if kind == _EDGE:
            return "edge", int(node) - self.num_devices
        return "cloud", 0

    def node_name(self, node: int) -> str:
        """Human-readable node name: ``"device 3"``, ``"edge 1"`` or ``"cloud"``."""
        kind, index = self.node_place(node)
        return "cloud" if kind == "cloud" else f"{kind} {index}"

    # ---------------------------------------------------------------------------- internals

    def _module(self, module_id: str) -> int:
        index = self._module_index.get(module_id)
        if index is None:
            index = len(self.module_names)
            self._module_index[module_id] = index
            self.module_names.append(module_id)
            mtype = module_type_of(module_id)
            if mtype not in self.module_type_names:
                self.module_type_names.append(mtype)
            self._type_of_module.append(self.module_type_names.index(mtype))
        return index

    def _append(
        self,
        module_id: str,
        size_bits: np.ndarray | float,
        num_flows: int,
        hop_flow: np.ndarray | None,
        hop_index: np.ndarray | None,
        hop_src: np.ndarray,
        hop_dst: np.ndarray,
        hop_link: np.ndarray | int,
        hop_stage: np.ndarray | int,
        after_flow: np.ndarray | None = None,
        trusted: bool = False,
    ) -> np.ndarray:
        """Append ``num_flows`` flows; ``hop_flow`` are local flow indices ``0..num_flows-1``
        (None: one hop per flow, in flow order, so ``hop_index`` is None too). ``trusted``:
        the hops are valid by construction (a builder derived them from checked device or
        cluster ids), so they are not checked again; the per-call checks are most of a
        cost-fidelity step's time otherwise. Nothing is copied or expanded here: see
        :meth:`columns`."""
        if isinstance(size_bits, (float, int)):  # the common case, checked without arrays
            if not (math.isfinite(size_bits) and size_bits >= 0):
                raise ValueError(f"size_bits of {module_id!r} must be finite and >= 0")
            size: float | np.ndarray = float(size_bits)
        else:
            size = np.asarray(size_bits, dtype=np.float64)
            if size.ndim == 0:
                size = float(size)
            elif size.shape != (num_flows,):
                raise ValueError(
                    f"size_bits of {module_id!r}: need a scalar or {num_flows} values")
            if not (np.isfinite(size).all() and (np.asarray(size) >= 0).all()):
                raise ValueError(f"size_bits of {module_id!r} must be finite and >= 0")
        hop_src = np.asarray(hop_src, dtype=np.int64)
        hop_dst = np.asarray(hop_dst, dtype=np.int64)
        link = hop_link if isinstance(hop_link, int) else _scalar_or_copy(hop_link)
        stage = hop_stage if isinstance(hop_stage, int) else _scalar_or_copy(hop_stage)
        if not trusted:
            self._check_hops(hop_src, hop_dst, link, stage, module_id)
        first = self._num_flows
        self._chunks.append(_Chunk(
            self._module(module_id), first, num_flows, size,
            None if after_flow is None else np.asarray(after_flow, dtype=np.int64),
            None if hop_flow is None else hop_flow.astype(np.int64),
            None if hop_index is None else hop_index.astype(np.int64),
            hop_src, hop_dst, link, stage,
        ))
        self._num_flows += num_flows
        self._num_hops += hop_src.shape[0]
        self._cache = None
        return np.arange(first, first + num_flows)

    def _check_hops(
        self, src: np.ndarray, dst: np.ndarray, link: np.ndarray | int, stage: np.ndarray | int,
        module: str,
    ) -> None:
        """Validate hops (node ranges, endpoint kinds per link kind, same cluster where needed).
        Table lookups keep this cheap for the many small chunks that builders append."""
        num_nodes = self.num_devices + self.num_clusters + 1
        if src.size == 0:
            return
        if min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= num_nodes:
            raise ValueError(f"{module!r}: node ids must be in 0..{num_nodes - 1}")
        if not 0 <= _low(link) <= _high(link) < len(LINK_KINDS):
            raise ValueError(f"{module!r}: unknown link kind")
        if not 0 <= _low(stage) <= _high(stage) <= int(Stage.D2D_DOWN):
            raise ValueError(f"{module!r}: unknown stage")
        ks, kd = self._kind_of_node[src], self._kind_of_node[dst]
        cs, cd = self._cluster_of_node[src], self._cluster_of_node[dst]
        ok = _VALID_ENDPOINTS[link, ks, kd] & ((cs == cd) | ~_SAME_CLUSTER[link]) & (src != dst)
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise ValueError(
                f"{module!r}: hop {self.node_name(int(src[k]))} -> {self.node_name(int(dst[k]))} "
                f"is not a valid {LINK_KINDS[int(np.broadcast_to(link, src.shape)[k])]} link "
                "(uplink/downlink/d2d stay "
                "inside one cluster; backhaul is edge<->cloud; device_cloud is device<->cloud)"
            )

    def _single_hops(
        self, module_id: str, size_bits: np.ndarray | float, src: np.ndarray, dst: np.ndarray,
        link: LinkKind, stage: Stage | int, trusted: bool = False,
    ) -> np.ndarray:
        return self._append(module_id, size_bits, src.shape[0], None, None, src, dst, int(link),
                            int(Stage(stage)), trusted=trusted)

    def _devices(self, devices: Iterable[int] | np.ndarray) -> np.ndarray:
        # a copy: the table keeps it until read, and the caller may reuse its array
        devices = np.array(devices, dtype=np.int64).reshape(-1)
        if devices.size and (devices.min() < 0 or devices.max() >= self.num_devices):
            raise ValueError(f"device ids must be in 0..{self.num_devices - 1}")
        return devices

    def _clusters(self, clusters: Iterable[int] | np.ndarray) -> np.ndarray:
        clusters = np.asarray(clusters, dtype=np.int64).reshape(-1)
        if clusters.size and (clusters.min() < 0 or clusters.max() >= self.num_clusters):
            raise ValueError(f"cluster ids must be in 0..{self.num_clusters - 1}")
        return clusters

    # ---------------------------------------------------------------------------- builders

    def add_single_hops(
        self, module_id: str, size_bits: float | np.ndarray, src: np.ndarray, dst: np.ndarray,
        link: np.ndarray, stage: np.ndarray,
    ) -> np.ndarray:
        """One single-hop flow per entry (``src[k] -> dst[k]`` over ``link[k]`` in
        ``stage[k]``), in that order, each hop checked like :meth:`add_flow`'s. For callers
        that would otherwise call several builders in a row for the same module: one call
        instead of one per cluster and link kind."""
        src = np.array(src, dtype=np.int64).reshape(-1)  # copies: kept until read
        dst = np.array(dst, dtype=np.int64).reshape(-1)
        link = np.asarray(link, dtype=np.int64).reshape(-1)
        stage = np.asarray(stage, dtype=np.int64).reshape(-1)
        if not src.shape == dst.shape == link.shape == stage.shape:
            raise ValueError(f"{module_id!r}: src, dst, link and stage need one entry per hop "
                             f"(got {src.size}, {dst.size}, {link.size}, {stage.size})")
        return self._append(module_id, size_bits, src.shape[0], None, None, src, dst, link, stage)

    def add_uplinks(
        self, module_id: str, size_bits: float | np.ndarray, devices: Iterable[int] | np.ndarray,
        stage: Stage = Stage.UPLINK,
    ) -> np.ndarray:
        """Each device sends ``size_bits`` (scalar or one per device) to its own edge server."""
        devices = self._devices(devices)
        edges = self.edge_node(self.cluster_of_device[devices])
        return self._single_hops(module_id, size_bits, devices, edges, LinkKind.UPLINK, stage,
                                 trusted=True)

    def add_downlinks(
        self, module_id: str, size_bits: float | np.ndarray, devices: Iterable[int] | np.ndarray,
        stage: Stage = Stage.DOWNLINK,
    ) -> np.ndarray:
        """Each device's edge server sends ``size_bits`` to it."""
        devices = self._devices(devices)
        edges = self.edge_node(self.cluster_of_device[devices])
        return self._single_hops(module_id, size_bits, edges, devices, LinkKind.DOWNLINK, stage,
                                 trusted=True)

    def add_backhaul_up(
        self, module_id: str, size_bits: float | np.ndarray, clusters: Iterable[int] | np.ndarray,
        stage: Stage = Stage.BACKHAUL_UP,
    ) -> np.ndarray:
        """Each cluster's edge server sends ``size_bits`` to the cloud."""
        clusters = self._clusters(clusters)
        cloud = np.full(clusters.size, self.cloud_node())
        return self._single_hops(
            module_id, size_bits, self.edge_node(clusters), cloud, LinkKind.BACKHAUL, stage,
            trusted=True,
        )

    def add_backhaul_down(
        self, module_id: str, size_bits: float | np.ndarray, clusters: Iterable[int] | np.ndarray,
        stage: Stage = Stage.BACKHAUL_DOWN,
    ) -> np.ndarray:
        """The cloud sends ``size_bits`` to each cluster's edge server."""
        clusters = self._clusters(clusters)
        cloud = np.full(clusters.size, self.cloud_node())
        return self._single_hops(
            module_id, size_bits, cloud, self.edge_node(clusters), LinkKind.BACKHAUL, stage,
            trusted=True,
        )

    def add_device_cloud(
        self, module_id: str, size_bits: float | np.ndarray, devices: Iterable[int] | np.ndarray,
        direction: str = "up", stage: Stage | None = None,
    ) -> np.ndarray:
        """Star topology: devices send to (``direction="up"``, stage ``BACKHAUL_UP``) or receive
        from (``"down"``, stage ``BACKHAUL_DOWN``) the cloud directly, over the wired model."""
        devices = self._devices(devices)
        cloud = np.full(devices.size, self.cloud_node())
        if direction == "up":
            return self._single_hops(module_id, size_bits, devices, cloud, LinkKind.DEVICE_CLOUD,
                                     Stage.BACKHAUL_UP if stage is None else stage, trusted=True)
        if direction == "down":
            return self._single_hops(module_id, size_bits, cloud, devices, LinkKind.DEVICE_CLOUD,
                                     Stage.BACKHAUL_DOWN if stage is None else stage,
                                     trusted=True)
        raise ValueError(f"direction = {direction!r}: must be 'up' or 'down'")

    def add_d2d_pairs(
        self, module_id: str, size_bits: float | np.ndarray,
        pairs: Sequence[tuple[int, int]] | np.ndarray, stage: Stage = Stage.D2D_UP,
    ) -> np.ndarray:
        """D2D exchange: for each pair ``(i, j)`` one flow ``i -> j`` and one ``j -> i``
        (returned in that order, pair by pair). ``size_bits``: scalar or one per pair."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        src = np.stack([pairs[:, 0], pairs[:, 1]], axis=1).reshape(-1)
        dst = np.stack([pairs[:, 1], pairs[:, 0]], axis=1).reshape(-1)
        size = np.asarray(size_bits, dtype=np.float64)
        if size.ndim:
            size = np.repeat(np.broadcast_to(size, (pairs.shape[0],)), 2)
        return self._single_hops(module_id, size, src, dst, LinkKind.D2D, stage)

    def _add_paths(
        self, module_id: str, size_bits: float | np.ndarray, paths: Sequence[Sequence[int]],
        link: np.ndarray | int, stage: np.ndarray | int, after_flow: np.ndarray | None = None,
    ) -> np.ndarray:
        lengths = np.fromiter((len(p) for p in paths), dtype=np.int64, count=len(paths))
        if np.any(lengths < 2):
            raise ValueError(f"{module_id!r}: every route needs at least two nodes")
        flat = np.fromiter((v for p in paths for v in p), dtype=np.int64, count=int(lengths.sum()))
        ends = np.cumsum(lengths)
        is_last = np.zeros(flat.size, dtype=bool)
        is_last[ends - 1] = True
        pos = np.flatnonzero(~is_last)
        hops_per_flow = lengths - 1
        hop_flow = np.repeat(np.arange(len(paths)), hops_per_flow)
        hop_index = np.arange(pos.size) - np.repeat(np.cumsum(hops_per_flow) - hops_per_flow,
                                                    hops_per_flow)
        return self._append(module_id, size_bits, len(paths), hop_flow, hop_index, flat[pos],
                            flat[pos + 1], link, stage, after_flow)

    def add_d2d_to_head(
        self, module_id: str, size_bits: float, cluster: int, head: int,
        devices: Iterable[int] | np.ndarray, relay_paths: Mapping[int, Sequence[int]],
        stage: Stage = Stage.D2D_UP,
    ) -> np.ndarray:
        """Each device (the head itself excluded) sends ``size_bits`` to ``head`` along its relay
        path (``relay_paths[d] = [d, ..., head]``); every link of the path is one hop row, so
        relays pay for forwarding."""
        paths = []
        for d in self._devices(devices).tolist():
            if d == head:
                continue
            if int(self.cluster_of_device[d]) != cluster:
                raise ValueError(f"device {d} is not in cluster {cluster}")
            path = relay_paths.get(d)
            if path is None or path[-1] != head:
                raise ValueError(f"no relay path from device {d} to head {head}")
            paths.append(path)
        if not paths:
            return np.empty(0, dtype=np.int64)
        return self._add_paths(module_id, size_bits, paths, int(LinkKind.D2D), int(stage))

    def add_d2d_to_heads(
        self, module_id: str, size_bits: float, heads: Sequence[int] | np.ndarray,
        relay_paths: Sequence[Mapping[int, Sequence[int]]],
        devices: Iterable[int] | np.ndarray | None = None, stage: Stage = Stage.D2D_UP,
    ) -> np.ndarray:
        """Bulk :meth:`add_d2d_to_head` over all clusters in one append: in every cluster ``c``
        with ``heads[c] >= 0``, each device of ``relay_paths[c]`` (restricted to ``devices``
        when given) other than the head sends ``size_bits`` to the head along its path."""
        keep = None if devices is None else set(self._devices(devices).tolist())
        paths = []
        for c, head in enumerate(np.asarray(heads, dtype=np.int64).tolist()):
            if head < 0:
                continue
            for d, path in relay_paths[c].items():
                if d == head or (keep is not None and d not in keep):
                    continue
                if path[-1] != head or int(self.cluster_of_device[d]) != c:
                    raise ValueError(f"relay path of device {d} does not end at head {head} of "
                                     f"its cluster {c}")
                paths.append(path)
        if not paths:
            return np.empty(0, dtype=np.int64)
        return self._add_paths(module_id, size_bits, paths, int(LinkKind.D2D), int(stage))

    def add_d2d_broadcast(
        self, module_id: str, size_bits: float, cluster: int, head: int,
        devices: Iterable[int] | np.ndarray | None, tree: Sequence[tuple[int, int]],
        stage: Stage = Stage.D2D_DOWN,
    ) -> np.ndarray:
        """``head`` broadcasts ``size_bits`` down the shortest-path ``tree`` (edges ``(parent,
        child)``): one single-hop flow per tree edge needed to reach ``devices`` (``None``: the
        whole tree), each waiting for the flow into its parent (store and forward). Each edge is
        paid once, whatever the number of devices behind it."""
        parent_of = {child: parent for parent, child in tree}
        needed: set[tuple[int, int]] = set()
        targets = parent_of.keys() if devices is None else self._devices(devices).tolist()
        for d in targets:
            if d == head:
                continue
            if int(self.cluster_of_device[d]) != cluster:
                raise ValueError(f"device {d} is not in cluster {cluster}")
            node = d
            while node != head:
                if node not in parent_of:
                    raise ValueError(f"device {d} is not reached by the broadcast tree of {head}")
                needed.add((parent_of[node], node))
                node = parent_of[node]
        edges = [e for e in tree if e in needed]  # tree order: parents before children
        if not edges:
            return np.empty(0, dtype=np.int64)
        local = {child: k for k, (_, child) in enumerate(edges)}
        first = self._num_flows
        after = np.array([first + local[p] if p != head else -1 for p, _ in edges], dtype=np.int64)
        return self._add_paths(module_id, size_bits, [list(e) for e in edges], int(LinkKind.D2D),
                               int(stage), after)

    def add_flow(
        self, module_id: str, size_bits: float, path_nodes: Sequence[int],
        link_kinds: str | LinkKind | Sequence[str | LinkKind],
        stage: Stage | int | Sequence[Stage | int], cluster: int | None = None,
        after_flow: int = -1,
    ) -> int:
        """One flow along ``path_nodes`` (``len >= 2``); ``link_kinds`` and ``stage`` are one
        value for every hop or one per hop (stages must not decrease along the route).

        ``cluster`` is optional: each hop's cluster is inferred from its endpoints; when given
        it must agree with every hop. ``after_flow``: an earlier flow this one waits for (same
        stage and cluster as this flow's first hop). Returns the flow id.
        """
        nodes = [int(v) for v in path_nodes]
        hops = len(nodes) - 1
        if hops < 1:
            raise ValueError(f"{module_id!r}: a route needs at least two nodes")
        # np.ndim tells one value for every hop (a str or an enum member: 0-d) from one per
        # hop; the casts record which branch holds which
        kinds: list[str | LinkKind] = (
            [cast("str | LinkKind", link_kinds)] * hops if np.ndim(link_kinds) == 0
            else list(cast("Sequence[str | LinkKind]", link_kinds)))
        stages: list[Stage | int] = (
            [cast("Stage | int", stage)] * hops if np.ndim(stage) == 0
            else list(cast("Sequence[Stage | int]", stage)))
        if len(kinds) != hops or len(stages) != hops:
            raise ValueError(f"{module_id!r}: need one link kind and one stage per hop ({hops})")
        link = np.array([_as_link(k) for k in kinds], dtype=np.int64)
        stage_arr = np.array([int(Stage(s)) for s in stages], dtype=np.int64)
        if np.any(np.diff(stage_arr) < 0):
            raise ValueError(f"{module_id!r}: stages must not decrease along a route")
        if cluster is not None:
            if np.any(self._hop_cluster(np.array(nodes[:-1]), np.array(nodes[1:])) != cluster):
                raise ValueError(f"{module_id!r}: route leaves cluster {cluster}")
        if after_flow >= 0:
            self._check_after(after_flow, nodes[0], nodes[1], int(stage_arr[0]))
        return int(self._add_paths(module_id, size_bits, [nodes], link, stage_arr,
                                   np.array([after_flow]))[0])

    def repeat_flows(
        self, start: int, end: int, module_id: str, size_bits: float
    ) -> np.ndarray:
        """Append a copy of flows ``start .. end-1`` (the flows some builder calls added; both
        must be :attr:`num_flows` as it stood between builder calls) for ``module_id``, every
        copied flow carrying ``size_bits``: same routes, links and stages, in the same order,
        and a flow that waited for one inside the range waits for its copy. For another module
        that moves exactly like one already recorded, at a fraction of building it again.
        Returns the new flow ids."""
        bounds = [c.first_flow for c in self._chunks] + [self._num_flows]
        if not (0 <= start <= end <= self._num_flows) or start not in bounds or end not in bounds:
            raise ValueError(
                f"repeat_flows({start}, {end}): need 0 <= start <= end <= num_flows "
                f"({self._num_flows}), each where one builder call's flows began or ended")
        if not (isinstance(size_bits, (int, float)) and math.isfinite(size_bits)
                and size_bits >= 0):
            raise ValueError(f"size_bits of {module_id!r} must be finite and >= 0")
        module, offset, first = self._module(module_id), self._num_flows - start, self._num_flows
        for chunk in self._chunks[bounds.index(start):bounds.index(end)]:
            after = chunk.after
            if after is not None:
                after = np.where(after >= start, after + offset, after)
            self._chunks.append(chunk._replace(
                module=module, first_flow=chunk.first_flow + offset, size=float(size_bits),
                after=after))
            self._num_hops += chunk.src.shape[0]
        self._num_flows += end - start
        self._cache = None
        return np.arange(first, self._num_flows)

    def _hop_cluster(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """The cluster of each hop ``src -> dst``: its sender's, or, for the cloud's hops
        (which have none), its receiver's."""
        return np.where(self._kind_of_node[src] == _CLOUD, self._cluster_of_node[dst],
                        self._cluster_of_node[src])

    def _check_after(self, after_flow: int, src: int, dst: int, stage: int) -> None:
        if not 0 <= after_flow < self._num_flows:
            raise ValueError(f"after_flow = {after_flow}: no such earlier flow")
        cols = self.columns()
        rows = np.flatnonzero(cols["flow"] == after_flow)
        last = rows[np.argmax(cols["hop"][rows])]
        first_cluster = self._hop_cluster(np.array([src]), np.array([dst]))[0]
        if cols["stage"][last] != stage or cols["cluster"][last] != first_cluster:
            raise ValueError(
                f"after_flow = {after_flow}: must end in the same stage and cluster as this "
                "flow starts (stages are ordered anyway)"
            )

    # ---------------------------------------------------------------------------- columns

    def __getstate__(self) -> dict[str, Any]:
        """The table without its read cache (a ``mappingproxy`` does not pickle: a round's
        result could not be deep-copied or sent from a subprocess vector env's worker); the
        next :meth:`columns` rebuilds it."""
        return {**self.__dict__, "_cache": None}

    def columns(self) -> Mapping[str, np.ndarray]:
        """Every column by name, read-only and without copying: the hop columns ``flow``,
        ``hop``, ``module``, ``module_type``, ``size_bits``, ``src``, ``dst``, ``link``,
        ``stage`` and ``cluster`` (one entry per hop, in the order the hops were added) and the
        flow columns ``flow_module``, ``flow_size_bits`` and ``flow_after`` (one entry per flow;
        ``-1``: waits for no flow).

        Every reader reads these arrays (the column properties below return them too). The
        chunks the builders appended are concatenated on the first read after a change, and
        every read until the next change returns the same arrays, so reading is free on the
        accounting path. Because they are shared, the arrays (and the mapping) are read-only:
        writing into one would silently change the table for every other reader. Copy one to
        modify it.
        """
        if self._cache is None:
            cols = _expand(self._chunks, self._num_hops)
            type_of_module = np.asarray(self._type_of_module, dtype=np.int64)
            cols["cluster"] = self._hop_cluster(cols["src"], cols["dst"])
            cols["module"] = cols["flow_module"][cols["flow"]]
            cols["module_type"] = type_of_module[cols["module"]]
            cols["size_bits"] = cols["flow_size_bits"][cols["flow"]]
            # Every array here is a fresh concatenation or gather, never a builder's array,
            # so freezing them leaves the builders' arrays (and later appends) writable.
            for column in cols.values():
                column.flags.writeable = False
            self._cache = MappingProxyType(cols)
        return self._cache

    @property
    def flow(self) -> np.ndarray:
        """``(H,)`` flow id of each hop."""
        return self.columns()["flow"]

    @property
    def hop(self) -> np.ndarray:
        """``(H,)`` position of each hop in its flow's route (0 = first)."""
        return self.columns()["hop"]

    @property
    def module(self) -> np.ndarray:
        """``(H,)`` module index of each hop (into :attr:`module_names`)."""
        return self.columns()["module"]

    @property
    def module_type(self) -> np.ndarray:
        """``(H,)`` module type index of each hop (into :attr:`module_type_names`)."""
        return self.columns()["module_type"]

    @property
    def size_bits(self) -> np.ndarray:
        """``(H,)`` payload of each hop's flow in bits."""
        return self.columns()["size_bits"]

    @property
    def src(self) -> np.ndarray:
        """``(H,)`` transmitting node of each hop."""
        return self.columns()["src"]

    @property
    def dst(self) -> np.ndarray:
        """``(H,)`` receiving node of each hop."""
        return self.columns()["dst"]

    @property
    def link(self) -> np.ndarray:
        """``(H,)`` :class:`LinkKind` of each hop."""
        return self.columns()["link"]

    @property
    def stage(self) -> np.ndarray:
        """``(H,)`` :class:`Stage` of each hop."""
        return self.columns()["stage"]

    @property
    def cluster(self) -> np.ndarray:
        """``(H,)`` cluster of each hop."""
        return self.columns()["cluster"]

    @property
    def num_flows(self) -> int:
        """Number of flows."""
        return self._num_flows

    def __len__(self) -> int:
        """Number of hop rows."""
        return self._num_hops

    # ---------------------------------------------------------------------------- views

    def flows(self) -> list[dict[str, Any]]:
        """One dict per flow, for humans and ``info``: ``flow``, ``module``, ``module_type``,
        ``bits``, ``src``, ``dst``, ``route`` (node ids), ``link_kinds``, ``stages``, ``after``."""
        cols = self.columns()
        order = np.lexsort((cols["hop"], cols["flow"]))
        flow = cols["flow"][order]
        bounds = np.searchsorted(flow, np.arange(self._num_flows + 1))
        src, dst = cols["src"][order].tolist(), cols["dst"][order].tolist()
        link, stage = cols["link"][order].tolist(), cols["stage"][order].tolist()
        out = []
        for f in range(self._num_flows):
            lo, hi = int(bounds[f]), int(bounds[f + 1])
            module = int(cols["flow_module"][f])
            out.append({
                "flow": f,
                "module": self.module_names[module],
                "module_type": self.module_type_names[self._type_of_module[module]],
                "bits": float(cols["flow_size_bits"][f]),
                "src": src[lo],
                "dst": dst[hi - 1],
                "route": [src[lo], *dst[lo:hi]],
                "link_kinds": [LINK_KINDS[k] for k in link[lo:hi]],
                "stages": [STAGE_NAMES[s] for s in stage[lo:hi]],
                "after": int(cols["flow_after"][f]),
            })
        return out

    def summary(self) -> dict[str, Any]:
        """Counts and bits: ``by_link_kind`` (hops and bits carried, counting every hop; every
        link kind, unused ones at 0) and ``by_module_type`` (flows and payload bits, counting
        each flow once, for the module types in the table)."""
        cols = self.columns()
        hops = np.bincount(cols["link"], minlength=len(LINK_KINDS))
        bits = np.bincount(cols["link"], weights=cols["size_bits"], minlength=len(LINK_KINDS))
        num_types = len(self.module_type_names)
        flow_type = np.asarray(self._type_of_module, dtype=np.int64)[cols["flow_module"]] if (
            self._num_flows) else np.empty(0, dtype=np.int64)
        type_flows = np.bincount(flow_type, minlength=num_types)
        type_bits = np.bincount(flow_type, weights=cols["flow_size_bits"], minlength=num_types)
        return {
            "num_flows": self._num_flows,
            "num_hops": len(self),
            "by_link_kind": {
                name: {"hops": int(hops[k]), "bits": float(bits[k])}
                for k, name in enumerate(LINK_KINDS)
            },
            "by_module_type": {
                name: {"flows": int(type_flows[t]), "bits": float(type_bits[t])}
                for t, name in enumerate(self.module_type_names)
            },
        }

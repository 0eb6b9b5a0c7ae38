"""Where the edge servers and devices are, and which cluster each device belongs to.

Two placements (:class:`~hffm_env.config.PlacementConfig`):

``clustered`` (the M3T-FFM prototype of arXiv 2509.03695)
    1. Edge servers uniform over the square area with a minimum spacing, by rejection sampling:
       each server draws candidates until one is at least ``min_server_spacing_m`` from every
       server already placed, at most ``max_placement_attempts`` candidates per server. When a
       server finds no room (the first ones can sit so that the rest do not fit, although
       another layout would take them all) the placement starts over, up to
       ``SERVER_PLACEMENT_RESTARTS`` times; then the servers take the first sites of the
       denser of a hexagonal and a square lattice at that spacing, shifted at random
       (:class:`~hffm_env.config.ServerLattice`; two servers: opposite corners), which the
       config checks hold them all, so no seed's reset fails.
    2. For each server a cluster centre uniform in the disc of radius ``cluster_centre_radius_m``
       around it, and ``devices_per_cluster`` devices uniform in the disc of radius
       ``device_radius_m`` around that centre. A point is uniform in a disc with
       ``r = R sqrt(u)``, ``theta = 2 pi v``. Points that fall outside the area are *redrawn*
       (as the prototype does), so they stay uniform over the part of the disc inside the area;
       after ``max_placement_attempts`` redraws the few points still outside are clipped to the
       border (this only happens for discs that barely touch the area).
    Devices of cluster ``c`` get the consecutive ids ``c * k .. c * k + k - 1``.

``uniform``
    Servers as above; devices uniform over the area, each associated with its nearest server.
    A cluster left empty takes the device nearest to its server among the devices whose own
    cluster has more than one member (empty clusters are fixed in ascending order), so every
    cluster has at least one device (the config guarantees ``num_devices >= num_edge_servers``).

Every cluster also records a *home disc* (``cluster_centre_xy_m``, ``cluster_radius_m``) that the
mobility model keeps its devices in: the device disc for ``clustered``; for ``uniform`` the disc
around the server that holds all the cluster's devices at placement time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hffm_env.config import ConfigError, PlacementConfig, ServerLattice

__all__ = [
    "SERVER_PLACEMENT_RESTARTS",
    "PlacementError",
    "Topology",
    "associate",
    "place_network",
    "sample_in_disc",
]


SERVER_PLACEMENT_RESTARTS = 20
"""How often the edge servers' placement starts over when a server finds no room."""


class PlacementError(ConfigError):
    """Placement could not satisfy the configured constraints within the allowed attempts."""


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Topology:
    """Positions of edge servers and devices and the device -> cluster map.

    Cluster ``c`` is the cluster of edge server ``c`` (one cluster per server). Arrays are stored
    read-only; derive a moved topology with :meth:`with_device_xy`.

    Attributes:
        server_xy_m: ``(S, 2)`` edge server positions.
        device_xy_m: ``(N, 2)`` device positions.
        cluster_of_device: ``(N,)`` cluster (= edge server) index of each device.
        area_side_m: side of the square area ``[0, area_side_m]^2``.
        cluster_centre_xy_m: ``(S, 2)`` centre of each cluster's home disc (for mobility).
        cluster_radius_m: ``(S,)`` radius of each cluster's home disc.
    """

    server_xy_m: np.ndarray
    device_xy_m: np.ndarray
    cluster_of_device: np.ndarray
    area_side_m: float
    cluster_centre_xy_m: np.ndarray | None = None
    cluster_radius_m: np.ndarray | None = None
    _members: tuple[np.ndarray, ...] = field(init=False, repr=False)
    _pairs: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        server = np.asarray(self.server_xy_m, dtype=np.float64).reshape(-1, 2)
        device = np.asarray(self.device_xy_m, dtype=np.float64).reshape(-1, 2)
        cluster = np.asarray(self.cluster_of_device, dtype=np.int64).reshape(-1)
        if cluster.shape[0] != device.shape[0]:
            raise ValueError(
                f"cluster_of_device has {cluster.shape[0]} entries for {device.shape[0]} devices"
            )
        if cluster.size and (cluster.min() < 0 or cluster.max() >= server.shape[0]):
            raise ValueError("cluster_of_device must index edge servers 0..S-1")
        centre = server if self.cluster_centre_xy_m is None else self.cluster_centre_xy_m
        centre = np.asarray(centre, dtype=np.float64).reshape(-1, 2)
        if self.cluster_radius_m is None:
            radius = np.zeros(server.shape[0])
            dist = np.hypot(*(device - centre[cluster]).T)
            np.maximum.at(radius, cluster, dist)
        else:
            radius = np.broadcast_to(
                np.asarray(self.cluster_radius_m, dtype=np.float64), (server.shape[0],)
            )
        # Frozen dataclass: normalised copies go in through object.__setattr__.
        object.__setattr__(self, "server_xy_m", _readonly(server))
        object.__setattr__(self, "device_xy_m", _readonly(device))
        object.__setattr__(self, "cluster_of_device", _readonly(cluster))
        object.__setattr__(self, "area_side_m", float(self.area_side_m))
        object.__setattr__(self, "cluster_centre_xy_m", _readonly(centre))
        object.__setattr__(self, "cluster_radius_m", _readonly(radius))
        order = np.argsort(cluster, kind="stable")  # stable: members come out sorted by id
        bounds = np.searchsorted(cluster[order], np.arange(server.shape[0] + 1))
        members = tuple(
            _readonly(order[bounds[c] : bounds[c + 1]]) for c in range(server.shape[0])
        )
        object.__setattr__(self, "_members", members)
        object.__setattr__(self, "_pairs", _intra_cluster_pairs(members, device.shape[0]))

    @property
    def num_devices(self) -> int:
        """Number of devices ``N``."""
        return int(self.device_xy_m.shape[0])

    @property
    def num_clusters(self) -> int:
        """Number of clusters = number of edge servers ``S``."""
        return int(self.server_xy_m.shape[0])

    def members(self, cluster: int) -> np.ndarray:
        """Device ids of ``cluster``, sorted ascending (read-only array)."""
        return self._members[cluster]

    def cluster_sizes(self) -> np.ndarray:
        """``(S,)`` number of devices per cluster."""
        return np.bincount(self.cluster_of_device, minlength=self.num_clusters)

    def intra_cluster_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All same-cluster device pairs ``(pair_i, pair_j)`` with ``pair_i < pair_j``, sorted by
        ``(pair_i, pair_j)`` (so ``pair_i * N + pair_j`` is sorted: lookups use searchsorted)."""
        return self._pairs

    def with_device_xy(self, device_xy_m: np.ndarray) -> Topology:
        """The same network with devices moved to ``device_xy_m`` (clusters unchanged)."""
        return Topology(
            server_xy_m=self.server_xy_m,
            device_xy_m=device_xy_m,
            cluster_of_device=self.cluster_of_device,
            area_side_m=self.area_side_m,
            cluster_centre_xy_m=self.cluster_centre_xy_m,
            cluster_radius_m=self.cluster_radius_m,
        )


def _intra_cluster_pairs(
    members: tuple[np.ndarray, ...], num_devices: int
) -> tuple[np.ndarray, np.ndarray]:
    # Vectorised per cluster size: clusters of equal size share one triu index pattern, so the
    # Python loop runs over distinct sizes (one for clustered placement), not over clusters.
    by_size: dict[int, list[np.ndarray]] = {}
    for m in members:
        if m.size > 1:
            by_size.setdefault(int(m.size), []).append(m)
    parts_i, parts_j = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for size, group in by_size.items():
        stacked = np.stack(group)  # (clusters, size), rows sorted
        a, b = np.triu_indices(size, k=1)
        parts_i.append(stacked[:, a].reshape(-1))
        parts_j.append(stacked[:, b].reshape(-1))
    pair_i, pair_j = np.concatenate(parts_i), np.concatenate(parts_j)
    order = np.argsort(pair_i * num_devices + pair_j, kind="stable")
    return _readonly(pair_i[order]), _readonly(pair_j[order])


def associate(device_xy_m: np.ndarray, server_xy_m: np.ndarray) -> np.ndarray:
    """``(N,)`` index of the nearest server of each device (ties go to the lower index)."""
    device = np.asarray(device_xy_m, dtype=np.float64).reshape(-1, 2)
    server = np.asarray(server_xy_m, dtype=np.float64).reshape(-1, 2)
    out = np.empty(device.shape[0], dtype=np.int64)
    # Chunked so that 10^4 devices x 10^3 servers does not build one huge temporary; squared
    # distances give the same argmin without a sqrt.
    step = 4096
    for start in range(0, device.shape[0], step):
        block = device[start : start + step]
        d2 = ((block[:, None, :] - server[None, :, :]) ** 2).sum(axis=-1)
        out[start : start + step] = np.argmin(d2, axis=1)
    return out


def sample_in_disc(
    centres_xy_m: np.ndarray,
    radius_m: float | np.ndarray,
    area_side_m: float,
    rng: np.random.Generator,
    max_attempts: int,
) -> np.ndarray:
    """One point uniform in the disc around each centre, kept inside ``[0, area_side_m]^2``.

    Points outside the area are redrawn (uniform over disc ∩ area); after ``max_attempts``
    rounds of redraws any point still outside is clipped to the border.
    """
    centres = np.asarray(centres_xy_m, dtype=np.float64).reshape(-1, 2)
    radius = np.broadcast_to(np.asarray(radius_m, dtype=np.float64), (centres.shape[0],))
    out = np.empty_like(centres)
    pending = np.arange(centres.shape[0])
    for _ in range(max_attempts):
        if pending.size == 0:
            break
        r = radius[pending] * np.sqrt(rng.random(pending.size))
        theta = 2.0 * np.pi * rng.random(pending.size)
        xy = centres[pending] + np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
        out[pending] = xy
        inside = np.all((xy >= 0.0) & (xy <= area_side_m), axis=1)
        pending = pending[~inside]
    return np.clip(out, 0.0, area_side_m)


def _place_servers(config: PlacementConfig, rng: np.random.Generator) -> np.ndarray:
    for _ in range(SERVER_PLACEMENT_RESTARTS + 1):
        servers = _try_to_place_servers(config, rng)
        if servers is not None:
            return servers
    servers = _servers_on_a_lattice(config, rng)
    if servers is not None:
        return servers
    raise PlacementError(
        f"placement: could not place {config.num_edge_servers} edge servers at least "
        f"{config.min_server_spacing_m} m apart in a {config.area_side_m} m square in "
        f"{SERVER_PLACEMENT_RESTARTS + 1} tries of max_placement_attempts = "
        f"{config.max_placement_attempts} draws per server (the spacing is near the densest "
        "packing); enlarge placement.area_side_m, or reduce placement.num_edge_servers or "
        "placement.min_server_spacing_m"
    )


def _servers_on_a_lattice(config: PlacementConfig, rng: np.random.Generator
                          ) -> np.ndarray | None:
    """When random placement jammed (a spacing near the densest packing: the first servers
    can sit so that the rest find no room on most seeds): the first sites of the densest
    lattice (:class:`~hffm_env.config.ServerLattice`), shifted at random within the room the
    block leaves and handed to the servers in random order; two servers at opposite corners.
    None when neither holds them (the config refuses such layouts)."""
    side, count = config.area_side_m, config.num_edge_servers
    lattice = ServerLattice.densest(side, config.min_server_spacing_m)
    if count <= lattice.capacity:
        sites = lattice.first_sites(count)
    elif count == 2 and config.min_server_spacing_m <= side * np.sqrt(2):
        sites = np.array([[0.0, 0.0], [side, side]])
        if rng.random() < 0.5:  # the other diagonal
            sites[:, 0] = side - sites[:, 0]
    else:
        return None
    room = side - sites.max(axis=0)
    return (sites + rng.uniform(0.0, 1.0, size=2) * room)[rng.permutation(count)]


def _try_to_place_servers(config: PlacementConfig, rng: np.random.Generator
                          ) -> np.ndarray | None:
    """One sequential rejection-sampling pass; None when a server found no room."""
    servers = np.empty((config.num_edge_servers, 2))
    spacing2 = config.min_server_spacing_m**2
    for s in range(config.num_edge_servers):
        for _ in range(config.max_placement_attempts):
            candidate = rng.uniform(0.0, config.area_side_m, size=2)
            if s == 0 or ((servers[:s] - candidate) ** 2).sum(axis=1).min() >= spacing2:
                servers[s] = candidate
                break
        else:
            return None
    return servers


def _fill_empty_clusters(
    cluster: np.ndarray, device_xy_m: np.ndarray, server_xy_m: np.ndarray
) -> np.ndarray:
    cluster = cluster.copy()
    num_clusters = server_xy_m.shape[0]
    for c in range(num_clusters):
        sizes = np.bincount(cluster, minlength=num_clusters)
        if sizes[c] > 0:
            continue
        donors = np.flatnonzero(sizes[cluster] > 1)
        dist = np.hypot(*(device_xy_m[donors] - server_xy_m[c]).T)
        cluster[donors[np.argmin(dist)]] = c
    return cluster


def place_network(config: PlacementConfig, rng: np.random.Generator) -> Topology:
    """Place edge servers and devices as described in the module docstring.

    Raises:
        PlacementError: the servers could not be spaced, neither within
            ``max_placement_attempts`` draws per server in ``SERVER_PLACEMENT_RESTARTS + 1``
            tries nor on the lattice (a layout the config would refuse).
    """
    servers = _place_servers(config, rng)
    side = config.area_side_m
    if config.placement == "clustered":
        centres = sample_in_disc(
            servers, config.cluster_centre_radius_m, side, rng, config.max_placement_attempts
        )
        cluster = np.repeat(np.arange(config.num_edge_servers), config.devices_per_cluster)
        devices = sample_in_disc(
            centres[cluster], config.device_radius_m, side, rng, config.max_placement_attempts
        )
        return Topology(
            server_xy_m=servers,
            device_xy_m=devices,
            cluster_of_device=cluster,
            area_side_m=side,
            cluster_centre_xy_m=centres,
            cluster_radius_m=np.full(config.num_edge_servers, config.device_radius_m),
        )
    devices = rng.uniform(0.0, side, size=(config.num_devices, 2))
    cluster = _fill_empty_clusters(associate(devices, servers), devices, servers)
    # Home disc radius None -> the disc around the server that holds all its members.
    return Topology(
        server_xy_m=servers, device_xy_m=devices, cluster_of_device=cluster, area_side_m=side
    )

"""The provisioner's Prometheus metrics, in their own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                   0.5, 0.75, 1, 2, 5, 10, 30)


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.latency = Histogram(
            "local_ssd_provision_seconds",
            "From the scheduler's node choice seen to the PersistentVolume created",
            buckets=LATENCY_BUCKETS, registry=r)
        self.provisioned = Counter("local_ssd_volumes_provisioned",
                                   "PersistentVolumes created", registry=r)
        self.released = Counter("local_ssd_reservations_released",
                                "Reservations released (volume deleted or node lost)",
                                registry=r)
        self.failures = Counter("local_ssd_provision_failures",
                                "Claims that could not be provisioned", ["reason"], registry=r)
        self.handbacks = Counter("local_ssd_claims_rescheduled",
                                 "Claims handed back to the scheduler", ["reason"], registry=r)
        self.capacity = Gauge("local_ssd_capacity_bytes", "What a disk can give to volumes",
                              ["node", "disk"], registry=r)
        self.reserved = Gauge("local_ssd_reserved_bytes", "Bytes reserved on a disk",
                              ["node", "disk"], registry=r)
        self.leader = Gauge("local_ssd_controller_leader", "1 while this instance leads",
                            registry=r)
        self.nodes_lost = Counter("local_ssd_nodes_lost", "Nodes whose volumes were released",
                                  registry=r)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's port
        start_http_server(port, addr=addr, registry=self.registry)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.capacity = Gauge("local_ssd_disk_allocatable_bytes",
                              "What a disk can give to volumes", ["node", "disk"], registry=r)
        self.free = Gauge("local_ssd_disk_free_bytes", "Free bytes on a disk",
                          ["node", "disk"], registry=r)
        self.used = Gauge("local_ssd_used_bytes", "Bytes used by volumes on a disk",
                          ["node", "disk"], registry=r)
        self.volumes = Gauge("local_ssd_volumes", "Volumes on a disk", ["node", "disk"],
                             registry=r)
        self.over_size = Gauge("local_ssd_volume_over_size",
                               "1 when a volume uses more than its size (no quota)",
                               ["node", "volume"], registry=r)
        self.wiped = Counter("local_ssd_volumes_wiped", "Volume directories wiped",
                             ["why"], registry=r)
        self.quota = Gauge("local_ssd_quota_enforced",
                           "1 when the disk enforces project quotas", ["node", "disk"],
                           registry=r)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's port
        start_http_server(port, addr=addr, registry=self.registry)

"""A private Redis Cluster for tests: 3 masters and 3 replicas of ``redis-server --cluster-enabled yes``.

The nodes listen on 127.0.0.1 on ports of the tests' own (7100-7105 when free, else another free run of six ports
whose cluster bus ports, +10000, are free too), keep their files in a temporary directory and are created with
``redis-cli --cluster create --cluster-replicas 1``. A smaller cluster (``RedisCluster(..., masters=1)``: one master
holding all 16384 slots, and its replica) is assembled by hand (``CLUSTER ADDSLOTSRANGE``, ``MEET``, ``REPLICATE``),
since ``redis-cli --cluster create`` wants three masters at least. ``start`` returns once every node reports
``cluster_state:ok`` and knows every node and every replica finished its first sync, so a test never meets a
cluster still agreeing on its slots or a replica that cannot acknowledge a ``WAIT`` yet.
"""

from __future__ import annotations

import functools
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

#: The first port tried; the cluster bus of a node listens on its port + ``BUS_OFFSET``.
BASE_PORT = 7100
BUS_OFFSET = 10_000
NODES = 6
#: Hash slots of a Redis Cluster.
SLOTS = 16_384
#: The fewest masters ``redis-cli --cluster create`` accepts.
CREATE_MIN_MASTERS = 3


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base(first: int = BASE_PORT, nodes: int = NODES) -> int:
    """A first port such that the node ports and their bus ports are all free."""
    candidates = [first, *random.sample(range(20_000, 29_000, 10), 50)]
    for base in candidates:
        if all(_free(port) and _free(port + BUS_OFFSET) for port in range(base, base + nodes)):
            return base
    raise RuntimeError("no free run of ports for the test Redis Cluster")


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds, else ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout_s:.0f} s")


class RedisCluster:
    """``redis-server`` processes in cluster mode under ``directory``: 3 masters + 3 replicas unless told otherwise
    (``masters`` masters with ``replicas`` replicas each)."""

    def __init__(self, directory: Path, base_port: int | None = None, masters: int = 3, replicas: int = 1) -> None:
        self.directory = directory
        self.master_count = masters
        self.replicas = replicas
        self.nodes = masters * (1 + replicas)
        self.base_port = base_port or free_base(nodes=self.nodes)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def ports(self) -> list[int]:
        return list(range(self.base_port, self.base_port + self.nodes))

    @property
    def url(self) -> str:
        """The cluster URL cio-fleet reads: any one node, ``redis+cluster://``."""
        return f"redis+cluster://127.0.0.1:{self.base_port}"

    def start_node(self, port: int) -> None:
        """Start (or restart, keeping its node file) the node on ``port``."""
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)]
        command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        command += ["--cluster-node-timeout", "2000", "--appendonly", "no", "--save", ""]
        command += ["--logfile", str(node_dir / "redis.log")]
        self.processes[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        node = redis.Redis(port=port, socket_connect_timeout=1)
        try:
            wait_until(lambda: bool(node.ping()), 10, f"cluster node {port} did not answer")
        finally:
            node.close()

    def start(self, timeout_s: float = 60.0) -> None:
        """Start six nodes, create the cluster and wait until every node agrees it is ready."""
        for port in self.ports:
            self.start_node(port)
        if self.master_count >= CREATE_MIN_MASTERS:
            self._create(timeout_s)
        else:
            self._assemble(timeout_s)
        for port in self.ports:
            wait_until(functools.partial(self.node_ready, port), timeout_s, f"cluster node {port} was not ready")
        for port in self.masters() if self.replicas else []:
            wait_until(
                functools.partial(self.replica_online, port), timeout_s, f"the replica of {port} was not in sync"
            )

    def _create(self, timeout_s: float) -> None:
        """``redis-cli --cluster create`` over every node."""
        create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports)]
        create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout.decode()[-2000:]}")

    def _assemble(self, timeout_s: float) -> None:
        """Form a cluster of fewer than three masters by hand: slots split over the masters, every node met, each
        replica attached to a master."""
        masters, replicas = self.ports[: self.master_count], self.ports[self.master_count :]
        share = SLOTS // len(masters)
        for n, port in enumerate(masters):
            last = SLOTS - 1 if n == len(masters) - 1 else (n + 1) * share - 1
            self._node_command(port, "CLUSTER", "ADDSLOTSRANGE", n * share, last)
        for port in self.ports[1:]:
            self._node_command(port, "CLUSTER", "MEET", "127.0.0.1", self.base_port)
        for n, port in enumerate(replicas):
            master = masters[n % len(masters)]
            master_id = self._node_command(master, "CLUSTER", "MYID")
            wait_until(functools.partial(self._knows, port, master_id), timeout_s, f"node {port} did not meet {master}")
            self._node_command(port, "CLUSTER", "REPLICATE", master_id)

    def _node_command(self, port: int, *args: object) -> str:
        node = redis.Redis(port=port, socket_connect_timeout=1, decode_responses=True)
        try:
            return str(node.execute_command(*args))
        finally:
            node.close()

    def _knows(self, port: int, node_id: str) -> bool:
        return node_id in self._node_command(port, "CLUSTER", "NODES")

    def replica_online(self, port: int) -> bool:
        """The master on ``port`` has a replica that finished its sync (``state=online``)."""
        return self.replica_of(port) is not None

    def replica_of(self, port: int) -> int | None:
        """The port of the master's replica, once in sync, else None."""
        node = redis.Redis(port=port, socket_connect_timeout=1, decode_responses=True)
        try:
            replica = node.info("replication").get("slave0")
        finally:
            node.close()
        if isinstance(replica, dict) and replica.get("state") == "online":
            return int(replica["port"])
        return None

    def node_ready(self, port: int) -> bool:
        """The node says ``cluster_state:ok`` and knows every node."""
        node = redis.Redis(port=port, socket_connect_timeout=1, decode_responses=True)
        try:
            info = node.cluster("info")
            return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == self.nodes
        finally:
            node.close()

    def masters(self) -> list[int]:
        """The ports of the nodes that are masters now."""
        found = []
        for port, process in self.processes.items():
            if process.poll() is not None:
                continue
            node = redis.Redis(port=port, socket_connect_timeout=1, decode_responses=True)
            try:
                if node.info("replication").get("role") == "master":
                    found.append(port)
            except redis.RedisError:
                pass
            finally:
                node.close()
        return sorted(found)

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash: nothing is written on the way out)."""
        process = self.processes.get(port)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def flush(self) -> None:
        """Delete every key on every master."""
        for port in self.masters():
            node = redis.Redis(port=port, socket_connect_timeout=1)
            try:
                node.flushall()
            finally:
                node.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every node and remove its files."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

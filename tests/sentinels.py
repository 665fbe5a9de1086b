"""A Redis Sentinel set of real processes on loopback: a master, replicas, three sentinels.

Used by ``tests/test_sentinel.py`` and ``bench/soak.py --sentinel``. Every process gets an
ephemeral port on 127.0.0.1 and its files (configs: a sentinel rewrites its own) under one
directory; :meth:`SentinelSet.stop` kills them all. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from tests.support import free_port, poll_until

MASTER_NAME = "m"
DOWN_AFTER_MS = 1000
"""A master silent this long is subjectively down (then the quorum makes it objectively)."""
FAILOVER_TIMEOUT_MS = 3000
"""Also the pause before a sentinel retries a failed election (twice this): kept small."""


@dataclass
class Node:
    """One ``redis-server`` process (data node or sentinel) with its log file."""

    name: str
    port: int
    args: list[str]
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def start(self) -> None:
        self.runs += 1
        with (self.dir / f"{self.name}.{self.runs}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                ["redis-server", *self.args],
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap (no-op when not running)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self, timeout: float = 1.0) -> redis.Redis:
        """A short-timeout synchronous client of this node (caller closes it)."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )


def _master_addr(c: redis.Redis) -> tuple[str, int] | None:
    """``(host, port)`` of the master as this sentinel names it (None: it names none)."""
    return cast("tuple[str, int] | None", c.sentinel_get_master_addr_by_name(MASTER_NAME) or None)


def data_args(port: int, workdir: Path, replica_of: int | None) -> list[str]:
    args = [
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no", "--loglevel", "notice",
    ]  # fmt: skip
    if replica_of is not None:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    return args


@dataclass
class SentinelSet:
    """A master, ``replicas`` replicas and three sentinels (quorum 2) under ``workdir``.

    ``url`` is the ``redis+sentinel://`` URL of the set. :meth:`kill_master` and
    :meth:`wait_failover` drive a failover; :meth:`restart_as_replica` brings a killed node
    back as a replica of the current master.
    """

    workdir: Path
    replicas: int = 1
    data: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start every process and wait (bounded) until each sentinel sees the master, every
        replica and the two other sentinels. Raises RuntimeError on timeout."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        master_port = free_port()
        master = Node(
            "master", master_port, data_args(master_port, self.workdir, None), self.workdir
        )
        self.data = [master]
        for i in range(self.replicas):
            port = free_port()
            self.data.append(
                Node(
                    f"replica{i + 1}",
                    port,
                    data_args(port, self.workdir, master_port),
                    self.workdir,
                )
            )
        for node in self.data:
            node.start()
        for i in range(3):
            port = free_port()
            conf = self.workdir / f"sentinel{i + 1}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                "sentinel resolve-hostnames no\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n",
                encoding="utf-8",
            )
            node = Node(f"sentinel{i + 1}", port, [str(conf), "--sentinel"], self.workdir)
            node.start()
            self.sentinels.append(node)

        def settled() -> bool:
            for node in self.data + self.sentinels:
                if not node.alive():
                    raise RuntimeError(f"{node.name} exited; see {self.workdir}")
            return self._settled(master_port)

        if not poll_until(settled, timeout=timeout, interval=0.1):
            raise RuntimeError(f"sentinel set not settled within {timeout} s ({self.workdir})")

    def _settled(self, master_port: int) -> bool:
        for s in self.sentinels:
            c = s.client()
            try:
                st = cast(dict[str, Any], c.sentinel_master(MASTER_NAME))
                ok = (
                    int(st["port"]) == master_port
                    and st["num-other-sentinels"] == 2
                    and st["num-slaves"] == self.replicas
                    and not st["is_sdown"]
                )
                if ok:
                    ok = all(
                        not r["is_sdown"] and r["master-link-status"] == "ok"
                        for r in c.sentinel_slaves(MASTER_NAME)
                    )
            except (redis.RedisError, OSError, KeyError):
                ok = False
            finally:
                c.close()
            if not ok:
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the first answering sentinel reports it (None: none answers)."""
        for s in self.sentinels:
            c = s.client(0.5)
            try:
                got = _master_addr(c)
                if got:
                    return int(got[1])
            except (redis.RedisError, OSError):
                continue
            finally:
                c.close()
        return None

    def master(self) -> Node:
        """The data node the sentinels currently call master."""
        port = self.master_port()
        return next(n for n in self.data if n.port == port)

    def kill_master(self) -> Node:
        """SIGKILL the current master; returns it."""
        node = self.master()
        node.kill()
        return node

    def wait_failover(self, old_port: int, timeout: float = 25.0) -> int:
        """Wait (bounded) until every sentinel names a new master that answers as master;
        returns its port. Raises RuntimeError on timeout."""

        def promoted() -> int | None:
            ports = set()
            for s in self.sentinels:
                c = s.client(0.5)
                try:
                    got = _master_addr(c)
                    ports.add(int(got[1]) if got else None)
                except (redis.RedisError, OSError):
                    ports.add(None)
                finally:
                    c.close()
            if len(ports) == 1 and (port := ports.pop()) not in (None, old_port):
                c = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
                try:
                    if c.info("replication")["role"] == "master":
                        return port
                except (redis.RedisError, OSError):
                    pass
                finally:
                    c.close()
            return None

        port = poll_until(promoted, timeout=timeout)
        if port is None:
            raise RuntimeError(f"no failover within {timeout} s ({self.workdir})")
        return port

    def restart_as_replica(self, node: Node) -> None:
        """Start a killed data node again as a replica of the current master (empty: no
        persistence; it resyncs from the master). The sentinels adopt it as a replica."""
        master = self.master_port()
        assert master is not None
        assert master != node.port
        node.args = data_args(node.port, self.workdir, master)
        node.start()

    def stop(self) -> None:
        """Kill every process (sentinels first, so none fails over a dying set)."""
        for node in self.sentinels + self.data:
            with contextlib.suppress(Exception):
                node.kill()

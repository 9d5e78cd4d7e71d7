"""A running service and a state bucket an older poller wrote with raw entity names: the first
cycles change nothing, yet the source's state is committed anew, every name redacted."""

from __future__ import annotations

import msgspec
import nats
from nats.js.errors import KeyNotFoundError

from poller.pipeline.redact import Redactor
from poller.pipeline.state import EntityState
from poller.pipeline.store import Meta
from poller.runtime.kv_keys import kv_keys
from poller.tools.natsserver import NatsServer
from tests.helpers import bucket_bytes, make_config, polls_done, running, wait_until
from tests.vendors.test_huawei import huawei_source, simulator

RAW = "回访 13800138000 客户姓名：王小明"
_chunk = msgspec.msgpack.Decoder(dict[str, EntityState])


async def test_a_state_written_with_raw_names_is_committed_anew_redacted(nats_server: NatsServer) -> None:
    # a detail-only source: a steady sweep moves no cursor, so nothing but the raw names asks for a commit
    async with simulator() as sim:
        task = sim.add_task(title=RAW, status="Processing")
        config = make_config(nats_server.url, [huawei_source(sim, [task])], coordination={"mode": "static"})
        async with running(config) as service:
            await polls_done(service, 2)
        nc = await nats.connect(nats_server.url)
        try:
            kv = await nc.jetstream().key_value(config.nats.state_bucket)
            # the bucket as an older poller left it: the same state, names raw, no names_kept
            for key in await kv_keys(kv):
                try:
                    value = (await kv.get(key)).value
                except KeyNotFoundError:
                    continue  # a chunk of an older generation, purged
                if key.endswith(".meta"):
                    meta = msgspec.msgpack.decode(value, type=Meta)
                    await kv.put(key, msgspec.msgpack.encode(msgspec.structs.replace(meta, names_kept=False)))
                else:
                    raw = {i: msgspec.structs.replace(e, name=RAW) for i, e in _chunk.decode(value).items()}
                    await kv.put(key, msgspec.msgpack.encode(raw))

            async def bucket() -> bytes:
                return await bucket_bytes(kv)

            assert RAW.encode() in await bucket()
            async with running(config) as service:
                await polls_done(service, 2)

                async def rewritten() -> bool:
                    return b"13800138000" not in await bucket()

                await wait_until(rewritten, timeout=10)
            data = await bucket()
            assert "王小明".encode() not in data and Redactor().kept(RAW).encode() in data
        finally:
            await nc.close()

from __future__ import annotations

from collections.abc import Iterator

import pytest

from poller.tools.natsserver import NatsServer


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server

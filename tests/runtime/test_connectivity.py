"""Production connectivity on real processes: NATS over mutual TLS with an NKey user, several server
URLs, and vendor HTTP through the proxy named by the environment."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

import nats
import nkeys
import pytest
from aiohttp import ClientSession, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer, free_port
from tests.helpers import make_config, polls_done, running
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000001


def _write_pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    """A CA made for this test, a server certificate for 127.0.0.1 and a client certificate."""
    ca_key = _key()
    ca = _cert("aicc-test-ca", ca_key, None, ca=True)
    files = {"ca": _write_pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))}
    for who in ("server", "client"):
        key = _key()
        cert = _cert(f"aicc-test-{who}", key, (ca, ca_key), server=who == "server")
        files[f"{who}_cert"] = _write_pem(
            tmp_path / f"{who}.pem", cert.public_bytes(serialization.Encoding.PEM)
        )
        files[f"{who}_key"] = _write_pem(tmp_path / f"{who}-key.pem", _key_pem(key))
    return files


def _client_tls(pki: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    context.load_cert_chain(pki["client_cert"], pki["client_key"])
    return context


async def test_mutual_tls_and_an_nkey_user_against_a_server_that_demands_both(
    pki: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(seed).public_key.decode()
    conf = f"""
tls {{
  cert_file: "{pki["server_cert"]}"
  key_file: "{pki["server_key"]}"
  ca_file: "{pki["ca"]}"
  verify: true
}}
authorization {{ users = [ {{ nkey: "{public}" }} ] }}
"""
    monkeypatch.setenv("TEST_NKEY_SEED", seed.decode())
    with NatsServer(config=conf) as server:
        # without a client certificate, or without the NKey, the server turns us away
        with pytest.raises(Exception):  # noqa: B017 - nats-py raises several kinds for a refused handshake
            await nats.connect(
                server.url,
                tls=ssl.create_default_context(cafile=pki["ca"]),
                allow_reconnect=False,
                connect_timeout=2,
            )
        async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=5) as sim:
            task = sim.add_task(APP, state=0)
            config = make_config(
                "nats://127.0.0.1:1",  # replaced by servers below
                [tencent_source(sim, [APP])],
                nats={
                    # the first server is down: a cluster's other URLs are tried in turn
                    "servers": [f"tls://127.0.0.1:{free_port()}", server.url.replace("nats://", "tls://")],
                    "tls": {
                        "ca_file": pki["ca"],
                        "cert_file": pki["client_cert"],
                        "key_file": pki["client_key"],
                    },
                    "nkey_seed": {"env": "TEST_NKEY_SEED"},
                },
            )
            async with running(config) as service:
                await polls_done(service, 1)
        nc = await nats.connect(server.url, tls=_client_tls(pki), nkeys_seed_str=seed.decode())
        try:
            msg = await nc.jetstream().get_last_msg("AICC", "aicc.tencent-ccc.tc-main.task-appeared")
        finally:
            await nc.close()
    assert str(task) in msg.data.decode()


def test_unreadable_tls_files_are_a_configuration_error_before_connecting(tmp_path: Path) -> None:
    config = tmp_path / "poller.toml"
    config.write_text(f"""
[nats]
url = "tls://127.0.0.1:{free_port()}"
tls = {{ ca_file = "{tmp_path / "missing-ca.pem"}" }}

[[sources]]
vendor = "tencent-ccc"
account = "acme"
secret_id = "AKIDx"
secret_key = {{ env = "NO_SUCH_SECRET_NEEDED" }}
sdk_app_ids = [1400000001]
""")
    done = subprocess.run(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "NO_SUCH_SECRET_NEEDED": "x"},
    )
    assert done.returncode == 2, done.stderr
    assert "nats.tls" in done.stderr and "Traceback" not in done.stderr


async def test_vendor_requests_go_through_the_proxy_the_environment_names(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwarded: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        """A plain HTTP forward proxy: absolute-form request line in, the origin's answer out."""
        forwarded.append(str(request.url))
        async with (
            ClientSession() as session,
            session.request(
                request.method,
                str(request.url),
                headers={
                    k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-connection")
                },
                data=await request.read(),
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                headers={"Content-Type": answer.headers.get("Content-Type", "")},
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=6) as sim:
            sim.add_task(APP, state=0)
            config = make_config(nats_server.url, [tencent_source(sim, [APP])])
            async with running(config) as service:
                await polls_done(service, 2)
    finally:
        await runner.cleanup()
    assert forwarded and all(url.startswith(sim.url) for url in forwarded)

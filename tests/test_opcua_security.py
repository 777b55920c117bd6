"""Secure sessions against a real asyncua server that checks users and client certificates.

The server offers only signed/encrypted endpoints, authenticates users by password or
X.509 user certificate, and accepts a client only if its application instance certificate
is in the server's trust folder and carries the application URI the client announces.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from test_opcua_support import PlantServer, make_server_certificate, node_id, plant_server

from edge_agent.config import parse_config
from edge_agent.drivers.opcua import OpcUaDeviceConfig, OpcUaDriver, create_certificate
from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.certs import CERT_FILE, KEY_FILE
from edge_agent.errors import DeviceConnectError
from edge_agent.validate import dump_config

pytestmark = pytest.mark.asyncio(loop_scope="module")
APP_URI = "urn:edge-agent:test:client"
PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    paths = {
        "server": root / "server",
        "server_trusts": root / "server-trusted-clients",
        "client": root / "client",
        "trusted": root / "client" / "trusted",
        "user": root / "user",
    }
    paths["server_trusts"].mkdir(parents=True)
    return paths


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_plant(pki: dict[str, Path]) -> AsyncIterator[PlantServer]:
    security = make_server_certificate(pki["server"])
    security.users = {"operator": PASSWORD}
    security.trusted_client_dir = pki["server_trusts"]
    client = create_certificate(pki["client"], APP_URI)
    shutil.copy(client.cert_path, pki["server_trusts"] / "agent.der")  # the server admin trusts the agent
    pki["trusted"].mkdir(parents=True, exist_ok=True)
    shutil.copy(security.cert_path, pki["trusted"] / "plant.der")  # and the agent trusts the server
    user = create_certificate(pki["user"], "urn:edge-agent:test:user")
    security.user_cert_ders.append(user.cert_path.read_bytes())
    async with plant_server(security=security) as plant:
        yield plant


def secure_device(plant: PlantServer, pki: dict[str, Path], **overrides: Any) -> OpcUaDeviceConfig:
    cfg: dict[str, Any] = {
        "name": "secure-cnc",
        "driver": "opcua",
        "endpoint": plant.endpoint,
        "timeout": "3s",
        "security": {
            "mode": "SignAndEncrypt",
            "policy": "Basic256Sha256",
            "cert_dir": str(pki["client"]),
            "trust_dir": str(pki["trusted"]),
            "application_uri": APP_URI,
        },
        "auth": {"type": "username", "username": "operator", "password": PASSWORD},
        "tags": [
            {"name": "power", "asset": "cnc1", "role": "power", "unit": "kW", "node_id": node_id("power_kw")}
        ],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and "type" not in value:
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return OpcUaDeviceConfig.model_validate(cfg)


async def test_sign_and_encrypt_with_username_from_the_environment(
    secure_plant: PlantServer, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPCUA_PASSWORD", PASSWORD)
    text = f"""
assets:
  - {{id: cnc1, site: s1, area: a1, line: l1, rated_power_kw: 20}}
devices:
  - name: secure-cnc
    driver: opcua
    endpoint: {secure_plant.endpoint}
    security:
      mode: SignAndEncrypt
      policy: Basic256Sha256
      cert_dir: {pki["client"]}
      trust_dir: {pki["trusted"]}
      application_uri: {APP_URI}
    auth: {{type: username, username: operator, password: "${{OPCUA_PASSWORD}}"}}
    tags:
      - {{name: power, asset: cnc1, role: power, unit: kW, node_id: "{node_id("power_kw")}"}}
"""
    config = parse_config(text)
    device = config.devices[0]
    assert isinstance(device, OpcUaDeviceConfig)
    assert PASSWORD not in dump_config(config) and PASSWORD not in repr(device)
    async with OpcUaDriver(device) as driver:
        conn = driver.connection
        assert conn is not None
        policy = conn.client.security_policy
        assert policy.URI.endswith("#Basic256Sha256")
        assert policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
        batch = await driver.read()
    assert batch.values["power"][0] == 12.5 and batch.good("power").all()


@pytest.mark.parametrize(
    ("mode", "policy"),
    [
        ("Sign", "Basic256Sha256"),
        ("SignAndEncrypt", "Aes128_Sha256_RsaOaep"),
        ("SignAndEncrypt", "Aes256_Sha256_RsaPss"),
    ],
)
async def test_other_modes_and_policies(
    secure_plant: PlantServer, pki: dict[str, Path], mode: str, policy: str
) -> None:
    cfg = secure_device(secure_plant, pki, security={"mode": mode, "policy": policy})
    async with OpcUaDriver(cfg) as driver:
        assert driver.connection is not None
        assert driver.connection.client.security_policy.URI.endswith("#" + policy)
        batch = await driver.read()
    assert batch.values["power"][0] == 12.5


async def test_wrong_password_is_refused_clearly(secure_plant: PlantServer, pki: dict[str, Path]) -> None:
    cfg = secure_device(secure_plant, pki, auth={"password": "not-it"})
    driver = OpcUaDriver(cfg)
    with pytest.raises(DeviceConnectError) as info:
        await driver.connect()
    message = str(info.value)
    assert "secure-cnc" in message and "refused user 'operator'" in message
    assert "BadUserAccessDenied" in message and "auth.password" in message
    assert "not-it" not in message and PASSWORD not in message
    assert driver.connection is None


async def test_untrusted_server_is_refused_and_the_message_says_which_file_to_copy(
    secure_plant: PlantServer, pki: dict[str, Path], tmp_path: Path
) -> None:
    trust_dir = tmp_path / "pki" / "trusted"
    cfg = secure_device(secure_plant, pki, security={"trust_dir": str(trust_dir)})
    with pytest.raises(DeviceConnectError) as info:
        await OpcUaDriver(cfg).connect()
    message = str(info.value)
    rejected = list((tmp_path / "pki" / "rejected").glob("*.der"))
    assert len(rejected) == 1
    assert "not trusted" in message and str(rejected[0]) in message and str(trust_dir) in message
    assert rejected[0].read_bytes() == (pki["server"] / "server_cert.der").read_bytes()
    # Following the instruction is enough: the next attempt connects.
    trust_dir.mkdir(parents=True)
    shutil.copy(rejected[0], trust_dir)
    async with OpcUaDriver(cfg) as driver:
        assert (await driver.read()).good("power").all()


async def test_server_refusing_our_certificate_says_which_file_to_trust(
    secure_plant: PlantServer, pki: dict[str, Path], tmp_path: Path
) -> None:
    cfg = secure_device(secure_plant, pki, security={"cert_dir": str(tmp_path / "new-client")})
    with pytest.raises(DeviceConnectError) as info:
        await OpcUaDriver(cfg).connect()
    message = str(info.value)
    assert "BadCertificateUntrusted" in message or "BadSecurityChecksFailed" in message
    assert str(tmp_path / "new-client" / CERT_FILE) in message and "trusted certificates" in message


async def test_client_certificate_is_created_once_and_reused_across_restarts(
    secure_plant: PlantServer, pki: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent")
    cert_dir = tmp_path / "agent-pki"
    cfg = secure_device(secure_plant, pki, security={"cert_dir": str(cert_dir)})
    with pytest.raises(DeviceConnectError):  # first start: created, not yet trusted by the server
        await OpcUaDriver(cfg).connect()
    created = [r.getMessage() for r in caplog.records if "created client certificate" in r.getMessage()]
    assert len(created) == 1
    cert_bytes, key_bytes = (cert_dir / CERT_FILE).read_bytes(), (cert_dir / KEY_FILE).read_bytes()
    assert (cert_dir / KEY_FILE).stat().st_mode & 0o077 == 0
    shutil.copy(cert_dir / CERT_FILE, pki["server_trusts"] / "agent2.der")
    for _restart in range(2):  # agent restarts: new driver objects, same files
        driver = OpcUaDriver(cfg)
        for _reconnect in range(2):
            async with driver:
                assert (await driver.read()).good("power").all()
    assert (cert_dir / CERT_FILE).read_bytes() == cert_bytes
    assert (cert_dir / KEY_FILE).read_bytes() == key_bytes
    assert len([r for r in caplog.records if "created client certificate" in r.getMessage()]) == 1


async def test_client_certificate_with_another_application_uri_is_refused(
    secure_plant: PlantServer, pki: dict[str, Path]
) -> None:
    cfg = secure_device(secure_plant, pki, security={"application_uri": "urn:someone-else"})
    with pytest.raises(DeviceConnectError) as info:
        await OpcUaDriver(cfg).connect()
    assert (
        APP_URI in str(info.value) and "urn:someone-else" in str(info.value) and "--force" in str(info.value)
    )


async def test_x509_user_authentication(
    secure_plant: PlantServer, pki: dict[str, Path], tmp_path: Path
) -> None:
    user = {
        "type": "certificate",
        "cert_file": str(pki["user"] / CERT_FILE),
        "key_file": str(pki["user"] / KEY_FILE),
    }
    async with OpcUaDriver(secure_device(secure_plant, pki, auth=user)) as driver:
        assert (await driver.read()).good("power").all()
    stranger = create_certificate(tmp_path / "stranger", "urn:stranger")
    other = {"type": "certificate", "cert_file": str(stranger.cert_path), "key_file": str(stranger.key_path)}
    with pytest.raises(DeviceConnectError, match=r"refused user certificate .*BadUserAccessDenied"):
        await OpcUaDriver(secure_device(secure_plant, pki, auth=other)).connect()


async def test_requesting_an_endpoint_the_server_lacks_lists_what_it_offers(
    secure_plant: PlantServer, pki: dict[str, Path]
) -> None:
    cfg = secure_device(secure_plant, pki, security={"mode": "None"}, auth={"type": "anonymous"})
    with pytest.raises(DeviceConnectError) as info:
        await OpcUaDriver(cfg).connect()
    message = str(info.value)
    assert "no endpoint with security None" in message
    assert "SignAndEncrypt/Basic256Sha256" in message and "Sign/Basic256Sha256" in message

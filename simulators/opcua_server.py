"""OPC UA face of the plant: an asyncua 2.1 server with one object per asset.

Address space: ``Objects/Plant/<asset>/<signal>``, string NodeIds ``<asset>.<signal>`` in
namespace ``urn:edge-agent:simulator``. Analog values are Double with an EngineeringUnits
property (UNECE codes); counters are UInt32 raw counts, identical to the Modbus registers,
so rollover and reset behave the same on both protocols. Each tick writes every variable
straight into the address space with a source timestamp (≈4 µs per write).
"""

from __future__ import annotations

__all__ = ["OpcUaSimServer", "free_port", "node_key", "status_code"]

import asyncio
import socket
from datetime import UTC, datetime

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from .catalog import NAMESPACE_URI, SIGNALS, SignalSpec, signal, unece
from .plant import Snapshot

_UNECE_NS = "http://www.opcfoundation.org/UA/units/un/cefact"
_VTYPES = {
    "float32": ua.VariantType.Double,
    "uint32": ua.VariantType.UInt32,
    "uint16": ua.VariantType.UInt16,
}
_DISPLAY = {"degC": "°C", "m3/min": "m³/min"}


def free_port(host: str) -> int:
    """A port that was free a moment ago (asyncua advertises its port, so 0 won't do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def status_code(status: int | str | ua.StatusCode) -> ua.StatusCode:
    """Accept 0x80000000-style ints, names like 'BadSensorFailure', or a StatusCode."""
    if isinstance(status, ua.StatusCode):
        return status
    if isinstance(status, str):
        try:
            return ua.StatusCode(ua.UInt32(getattr(StatusCodes, status)))
        except AttributeError:
            raise ValueError(
                f"unknown OPC UA status name {status!r}; use e.g. 'BadSensorFailure', "
                "'BadCommunicationError' or 'UncertainLastUsableValue'"
            ) from None
    return ua.StatusCode(ua.UInt32(int(status)))


def _unit_id(code: str) -> int:
    """OPC UA Part 8: the UNECE common code packed into an Int32, one byte per character."""
    value = 0
    for ch in code:
        value = (value << 8) | ord(ch)
    return value


class OpcUaSimServer:
    """Start/stop/restart an asyncua server and feed it snapshots."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: Server | None = None
        self._running = False
        self._nodeids: dict[str, ua.NodeId] = {}
        self._status: dict[str, ua.StatusCode] = {}
        self._last: Snapshot | None = None
        self.frozen: set[str] = set()  # keys of nodes no longer updated (never change)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/edge-agent/simulator/"

    @property
    def running(self) -> bool:
        return self._running

    async def _build(self) -> Server:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("edge-agent plant simulator")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE_URI)
        plant = await server.nodes.objects.add_folder(f"ns={idx};s=Plant", f"{idx}:Plant")
        folders = {}
        for s in SIGNALS:
            if s.asset not in folders:
                folders[s.asset] = await plant.add_object(f"ns={idx};s={s.asset}", f"{idx}:{s.asset}")
            node = await folders[s.asset].add_variable(
                f"ns={idx};s={s.key}",
                f"{idx}:{s.name}",
                ua.Variant(0.0 if s.data_type == "float32" else 0, _VTYPES[s.data_type]),
            )
            await node.write_attribute(
                AttributeIds.Description,
                ua.DataValue(ua.Variant(ua.LocalizedText(self._describe(s)))),
            )
            eu = unece(s.unit) if s.is_analog else None
            if eu is not None:
                info = ua.EUInformation(
                    NamespaceUri=_UNECE_NS,
                    UnitId=ua.Int32(_unit_id(eu[0])),
                    DisplayName=ua.LocalizedText(_DISPLAY.get(s.unit, s.unit)),
                    Description=ua.LocalizedText(eu[1]),
                )
                await node.add_property(
                    f"ns={idx};s={s.key}.EngineeringUnits",
                    "0:EngineeringUnits",
                    info,
                    datatype=ua.NodeId(ua.Int32(ObjectIds.EUInformation)),
                )
            self._nodeids[s.key] = node.nodeid
        return server

    @staticmethod
    def _describe(s: SignalSpec) -> str:
        if s.scale != 1.0:
            return f"{s.description}; engineering value = raw × {s.scale:g} {s.unit}"
        return s.description

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._running:
            return
        if self._server is None:
            want_free = self.port == 0
            for attempt in range(3):
                if want_free:
                    self.port = free_port(self.host)
                self._server = await self._build()
                try:
                    await self._server.start()
                    break
                except OSError as exc:
                    self._server = None
                    if not want_free or attempt == 2:
                        raise OSError(
                            f"OPC UA simulator could not listen on {self.host}:{self.port} "
                            f"({exc}); pick another port or pass 0 for a free one"
                        ) from exc
        else:
            await self._server.start()  # restart: same object, same address space and port
        self._running = True
        if self._last is not None:
            await self.update(self._last)

    async def stop(self) -> None:
        if self._server is not None and self._running:
            self._running = False
            await self._server.stop()

    async def restart(self, down_s: float = 0.0) -> None:
        """Stop (clients lose their session), stay down ``down_s`` s, start on the same port."""
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()

    # ---- values ---------------------------------------------------------------------------------
    async def update(self, snapshot: Snapshot, when: datetime | None = None) -> None:
        """Write every variable from ``snapshot`` with one source timestamp."""
        self._last = snapshot
        server = self._server
        if server is None:
            return
        ts = ua.DateTime.fromtimestamp((when or datetime.now(UTC)).timestamp(), UTC)
        good = ua.StatusCode(ua.UInt32(StatusCodes.Good))
        frozen = self.frozen
        for s in SIGNALS:
            if s.key in frozen:
                continue
            dv = ua.DataValue(
                ua.Variant(snapshot.values[s.key], _VTYPES[s.data_type]),
                StatusCode=self._status.get(s.key, good),
                SourceTimestamp=ts,
                ServerTimestamp=ts,
            )
            await server.write_attribute_value(self._nodeids[s.key], dv)

    def set_status(self, key: str, status: ua.StatusCode) -> None:
        self._status[node_key(key)] = status

    def clear_status(self, key: str) -> None:
        self._status.pop(node_key(key), None)


def node_key(node: str) -> str:
    """'cnc1.power_kw', 's=cnc1.power_kw' or the full nsu= id → catalogue key (validated)."""
    ident = node.rsplit("s=", 1)[-1]
    asset, _, name = ident.partition(".")
    return signal(asset, name).key

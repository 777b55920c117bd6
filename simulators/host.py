"""The live simulator: one model, advanced in real time, exposed over Modbus and OPC UA.

Every tick the model advances and one snapshot is pushed to both servers, so the two
protocols never disagree about the plant. ``pause()`` freezes the model between ticks;
the faults are injected where a real network or device would produce them.
"""

from __future__ import annotations

__all__ = ["Simulator", "serve"]

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import tzinfo
from types import TracebackType
from typing import Literal

from asyncua import ua

from .catalog import SIGNALS, UNIT_IDS
from .config import PlantConfig, RetrofitConfig
from .faults import Fault
from .modbus_server import ExceptionRule, ModbusSimServer
from .opcua_server import OpcUaSimServer, node_key, status_code
from .plant import PlantModel, Snapshot
from .truth import COUNTER_MODULUS, PlantTruth

_log = logging.getLogger(__name__)
_MAX_CATCH_UP_TICKS = 50  # after a longer stall the model time simply lags the wall clock


class Simulator:
    """Async context manager owning the plant model and both protocol servers.

    Ports: pass 0 for a free port (the bound port is then in :attr:`modbus_port` /
    :attr:`opcua_port`), or None to not start that server.
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        time_scale: float = 1.0,
        modbus_port: int | None = 0,
        opcua_port: int | None = 0,
        host: str = "127.0.0.1",
        tick_s: float = 0.1,
        retrofit_at: float | None = None,
        schedule_start: float | None = None,
        start: float | None = None,
        config: PlantConfig | None = None,
        retrofit: RetrofitConfig | None = None,
        tz: str | tzinfo = "UTC",
        main_rollover_s: float | None = 10.0,
        state_codes: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.model = PlantModel(
            seed=seed,
            start=start,
            tick_s=tick_s,
            time_scale=time_scale,
            schedule_start=schedule_start,
            retrofit_at=retrofit_at,
            retrofit=retrofit,
            config=config,
            tz=tz,
            main_rollover_s=main_rollover_s,
            state_codes=state_codes,
        )
        self.host = host
        self.modbus = ModbusSimServer(host=host, port=modbus_port) if modbus_port is not None else None
        self.opcua = OpcUaSimServer(host=host, port=opcua_port) if opcua_port is not None else None
        self._lock = asyncio.Lock()
        self._running = asyncio.Event()
        self._running.set()
        self._task: asyncio.Task[None] | None = None
        self._snapshot: Snapshot | None = None
        self._faults: list[Fault] = []
        self._background: set[asyncio.Task[None]] = set()
        #: called with (wall ns, truth) on every publish: what a client can read from then on
        self.on_publish: list[Callable[[int, PlantTruth], None]] = []

    # ---- ports -----------------------------------------------------------------------------------
    @property
    def modbus_port(self) -> int | None:
        return self.modbus.port if self.modbus else None

    @property
    def opcua_port(self) -> int | None:
        return self.opcua.port if self.opcua else None

    @property
    def opcua_endpoint(self) -> str | None:
        return self.opcua.endpoint if self.opcua else None

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        self.model.advance(1)
        self._snapshot = self.model.snapshot()
        try:
            if self.modbus:
                self.modbus.update(self._snapshot)
                await self.modbus.start()
            if self.opcua:
                await self.opcua.update(self._snapshot)
                await self.opcua.start()
        except BaseException:
            await self._stop_servers()
            raise
        self._task = asyncio.create_task(self._run(), name="plant-simulator-ticks")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_servers()

    async def _stop_servers(self) -> None:
        if self.modbus:
            await self.modbus.stop()
        if self.opcua:
            await self.opcua.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.model.tick_s
        deadline = loop.time() + tick
        while True:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if not self._running.is_set():
                await self._running.wait()
                deadline = loop.time() + tick
                continue
            late = loop.time() - deadline
            due = 1 + int(late / tick)
            if due > _MAX_CATCH_UP_TICKS:
                _log.warning("simulator stalled %.1f s; model time now lags the wall clock", late)
                due, deadline = 1, loop.time()
            deadline += due * tick
            async with self._lock:
                if not self._running.is_set():
                    continue
                self.model.advance(due)
                try:
                    await self._publish()
                except Exception:  # keep the plant ticking; the next tick publishes again
                    _log.exception("simulator: publishing tick %d failed", self.model.ticks)

    async def _publish(self) -> None:
        snap = self._snapshot = self.model.snapshot()
        if self.modbus:
            self.modbus.update(snap)
        if self.on_publish:  # tests: the truth exactly as served, stamped when it is served
            served_ns, truth = time.time_ns(), self.model.truth()
            for hook in self.on_publish:
                hook(served_ns, truth)
        if self.opcua:
            await self.opcua.update(snap)

    async def pause(self) -> None:
        """Freeze the plant. On return both servers hold the same, final snapshot."""
        async with self._lock:
            self._running.clear()

    async def resume(self) -> None:
        """Continue from where the plant stood; paused time is not caught up."""
        async with self._lock:
            self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # ---- state ---------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The values both servers are serving right now."""
        if self._snapshot is None:
            raise RuntimeError("Simulator.snapshot(): enter 'async with Simulator(...)' first")
        return self._snapshot

    def truth(self) -> PlantTruth:
        return self.model.truth()

    # ---- faults --------------------------------------------------------------------------------------
    def _track(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def _need_modbus(self) -> ModbusSimServer:
        if self.modbus is None:
            raise RuntimeError("this Simulator runs without a Modbus server (modbus_port=None)")
        return self.modbus

    def _need_opcua(self) -> OpcUaSimServer:
        if self.opcua is None:
            raise RuntimeError("this Simulator runs without an OPC UA server (opcua_port=None)")
        return self.opcua

    @staticmethod
    def _unit(unit: int | str) -> int:
        if isinstance(unit, str):
            if unit not in UNIT_IDS:
                raise ValueError(f"unknown asset {unit!r}; Modbus units are {UNIT_IDS}")
            return UNIT_IDS[unit]
        return unit

    def modbus_timeout(self, unit: int | str) -> Fault:
        """Stop answering requests for one unit id (or asset name) until cleared."""
        mb, uid = self._need_modbus(), self._unit(unit)
        mb.timeouts.append(uid)
        return self._track(Fault(f"modbus timeout unit {uid}", lambda: mb.timeouts.remove(uid)))

    def modbus_exception(
        self,
        unit: int | str,
        address: int,
        count: int = 1,
        *,
        code: int = 0x02,
        register_type: Literal["holding", "input"] | None = None,
    ) -> Fault:
        """Answer reads overlapping ``[address, address+count)`` with exception ``code``."""
        mb, uid = self._need_modbus(), self._unit(unit)
        if not 1 <= code <= 0x0B:
            raise ValueError(f"Modbus exception code must be 1 … 0x0B, got {code:#x}")
        rule = ExceptionRule(uid, address, count, code, register_type)
        mb.exception_rules.append(rule)
        desc = f"modbus exception {code:#04x} unit {uid} registers {address}..{address + count - 1}"
        return self._track(Fault(desc, lambda: mb.exception_rules.remove(rule)))

    def drop_connections(self) -> int:
        """Close every Modbus client connection now. Returns how many were open."""
        return self._need_modbus().drop_connections()

    async def restart_modbus(self, down_s: float = 0.0) -> None:
        """Stop the Modbus server and start it again on the same port."""
        await self._need_modbus().restart(down_s)

    async def restart_opcua(self, down_s: float = 0.0) -> None:
        """Stop the OPC UA server (sessions die) and start it again on the same port."""
        await self._need_opcua().restart(down_s)

    def counter_reset(self, asset: str, name: str) -> None:
        """The counter reads 0 from now on, like a meter swap; the truth is unchanged."""
        self.model.counter_reset(asset, name)
        self._refresh()

    def counter_set(self, asset: str, name: str, value: int) -> None:
        """The counter reads ``value`` from now on and counts on; the truth is unchanged."""
        self.model.counter_set(asset, name, value)
        self._refresh()

    async def restart_device(
        self, asset: str, *, counters: Literal["reset", "jump"], down_s: float = 1.0, to: int | None = None
    ) -> dict[str, tuple[int, int]]:
        """A PLC or meter restart: silent for ``down_s`` s (Modbus unit times out, its OPC UA
        nodes read BadNotConnected), then every counter of the asset comes back changed.

        ``counters="reset"``: restarted from a stale non-zero value (``to``, default 1002 —
        below the reading, like the issue's 1024 → 1002). ``"jump"``: jumped far up
        (``to``, default 2³² − 4, like 18 → 4 294 967 292). The truth keeps counting, so a
        test compares against it. Returns counter → (before, after) raw values.
        """
        faults = []
        if self.modbus:
            faults.append(self.modbus_timeout(asset))
        if self.opcua:
            faults.extend(
                self.opcua_set_status(f"{s.asset}.{s.name}", "BadNotConnected")
                for s in SIGNALS
                if s.asset == asset
            )
        await asyncio.sleep(down_s)
        changed: dict[str, tuple[int, int]] = {}
        for name in self.model.counters_of(asset):
            before = self.model.counter(asset, name)
            after = (to if to is not None else 1002) if counters == "reset" else (to or COUNTER_MODULUS - 4)
            if counters == "reset":
                after = min(after, max(before - 1, 0))  # a fall, never a rise
            self.model.counter_set(asset, name, after)
            changed[name] = (before, self.model.counter(asset, name))
        for fault in faults:
            fault.clear()
        self._refresh()
        return changed

    def opcua_freeze(self, node: str) -> Fault:
        """The server stops updating ``node`` (value and timestamps stay), until cleared —
        a node that never changes, as a subscription sees it."""
        ua_srv, key = self._need_opcua(), node_key(node)
        ua_srv.frozen.add(key)
        return self._track(Fault(f"opcua frozen {key}", lambda: ua_srv.frozen.discard(key)))

    def opcua_set_status(self, node: str, status: int | str | ua.StatusCode) -> Fault:
        """Serve ``node`` ('cnc1.power_kw' or its nsu= id) with a Bad/Uncertain status."""
        ua_srv, code = self._need_opcua(), status_code(status)
        key = node_key(node)
        ua_srv.set_status(key, code)
        self._refresh()

        def undo() -> None:
            ua_srv.clear_status(key)
            self._refresh()

        return self._track(Fault(f"opcua status {code.name} on {key}", undo))

    def clear_faults(self) -> None:
        """Undo every fault still active."""
        for fault in self._faults:
            fault.clear()
        self._faults.clear()

    def _refresh(self) -> None:
        """Re-publish now so a fault shows even while paused (before any later request)."""
        if self._snapshot is None:
            return
        snap = self._snapshot = self.model.snapshot()
        if self.modbus:
            self.modbus.update(snap)
        if self.opcua:
            task = asyncio.get_running_loop().create_task(self.opcua.update(snap))
            self._background.add(task)
            task.add_done_callback(self._background.discard)


async def serve(
    *,
    modbus_port: int | None = 5020,
    opcua_port: int | None = 4840,
    seed: int = 42,
    time_scale: float = 1.0,
    host: str = "127.0.0.1",
    tick_s: float = 0.1,
    retrofit_at: float | None = None,
    tz: str = "UTC",
    ready: Callable[[Simulator], None] | None = None,
) -> None:
    """Run the simulator until cancelled (Ctrl-C in the CLI). ``ready`` gets the live
    Simulator once both servers listen; by default the endpoints are logged."""
    async with Simulator(
        seed=seed,
        time_scale=time_scale,
        modbus_port=modbus_port,
        opcua_port=opcua_port,
        host=host,
        tick_s=tick_s,
        retrofit_at=retrofit_at,
        tz=tz,
    ) as sim:
        if ready is not None:
            ready(sim)
        else:
            _log.info(
                "plant simulator running: modbus %s:%s, opcua %s (seed %d, time_scale %g)",
                host,
                sim.modbus_port,
                sim.opcua_endpoint,
                seed,
                time_scale,
            )
        await asyncio.Event().wait()

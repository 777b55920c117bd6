"""Polled tags: prebuilt Read requests split to the server's MaxNodesPerRead, sent together.

The request objects are built once per session, so a poll only encodes, sends and decodes.
A server that enforces a lower limit than it advertises answers BadTooManyOperations; the
plan then halves its chunk size and retries, and keeps the smaller size for the session.
"""

from __future__ import annotations

__all__ = ["ReadPlan", "chunk"]

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from asyncua.client.client import Client

from edge_agent.drivers.opcua._ua import ua

log = logging.getLogger("edge_agent.drivers.opcua")
T = TypeVar("T")


def chunk(items: Sequence[T], limit: int) -> list[Sequence[T]]:
    """Split into slices of at most ``limit`` items (``limit`` 0 = one slice)."""
    if limit <= 0 or len(items) <= limit:
        return [items] if items else []
    return [items[i : i + limit] for i in range(0, len(items), limit)]


class ReadPlan:
    """The polled tags' Read requests for one session."""

    def __init__(self, device: str, tags: Sequence[int], node_ids: Sequence[ua.NodeId], limit: int) -> None:
        self.device = device
        self.tags = list(tags)
        self.node_ids = list(node_ids)
        self.limit = limit
        self.requests: list[ua.ReadParameters] = []
        self._build()

    def _build(self) -> None:
        self.requests = []
        for part in chunk(self.node_ids, self.limit):
            params = ua.ReadParameters()
            # Rows are stamped with the agent clock, so the server need not send timestamps.
            params.TimestampsToReturn = ua.TimestampsToReturn.Neither
            params.NodesToRead = [
                ua.ReadValueId(NodeId=nid, AttributeId=ua.AttributeIds.Value) for nid in part
            ]
            self.requests.append(params)

    def __len__(self) -> int:
        return len(self.tags)

    def describe(self) -> str:
        per = f"<= {self.limit}" if self.limit else "all"
        return f"{len(self.tags)} polled node(s) in {len(self.requests)} Read request(s) of {per} node(s)"

    async def read(self, client: Client) -> tuple[list[Any], list[int]]:
        """Values and raw status codes in ``self.tags`` order."""
        while True:
            try:
                results = await asyncio.gather(*(client.uaclient.read(p) for p in self.requests))
            except ua.UaStatusCodeError as exc:
                if exc.code != ua.StatusCodes.BadTooManyOperations or self._shrink() is None:
                    raise
                continue
            values: list[Any] = []
            statuses: list[int] = []
            for dvs in results:
                for dv in dvs:
                    var, sc = dv.Value, dv.StatusCode
                    values.append(var.Value if var is not None else None)
                    statuses.append(sc.value if sc is not None else 0)
            return values, statuses

    def _shrink(self) -> int | None:
        """Halve the chunk size after BadTooManyOperations; None when already at one node."""
        current = self.limit or len(self.node_ids)
        if current <= 1:
            return None
        self.limit = max(1, current // 2)
        log.warning(
            "device %r: server refused %d nodes per Read (BadTooManyOperations) although it did not "
            "advertise that limit; using %d per request. Set max_nodes_per_read to skip this probe.",
            self.device,
            current,
            self.limit,
        )
        self._build()
        return self.limit

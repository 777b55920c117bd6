"""The asyncio runtime: device pollers, the analytics stage and delivery, under one TaskGroup."""

from edge_agent.runtime.poller import BatchHandler, DevicePoller, PollerStats

__all__ = ["BatchHandler", "DevicePoller", "PollerStats"]

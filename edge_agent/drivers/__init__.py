"""Device drivers. Built-ins register through entry points exactly like third-party plugins."""

from edge_agent.drivers.base import Driver

__all__ = ["Driver"]

"""Public conformance kit for driver authors (pytest).

Guide: docs/tutorials/write-a-driver-plugin.md. The kit needs pytest, which a production
gateway does not install; ``pip install 'edge-agent[testing]'`` brings it.
"""

try:
    import pytest  # noqa: F401
    import pytest_asyncio  # noqa: F401
except ImportError as exc:  # a production install: say which extra brings the kit's needs
    raise ImportError(
        f"edge_agent.testing (the driver conformance kit) needs {exc.name!r}, which is not "
        "installed. Install the testing extra: pip install 'edge-agent[testing]'"
    ) from exc

from edge_agent.testing.conformance import DriverConformance, check_batch

__all__ = ["DriverConformance", "check_batch"]

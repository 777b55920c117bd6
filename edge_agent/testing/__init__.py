"""Public conformance kit for driver authors (pytest). See README, 'Writing a driver'."""

from edge_agent.testing.conformance import DriverConformance, check_batch

__all__ = ["DriverConformance", "check_batch"]

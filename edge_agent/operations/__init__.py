"""Operating a gateway: status page, /metrics and /healthz, status topic, stats line, sd_notify.

``edge-agent run`` is :func:`edge_agent.operations.run.run_operated`.
"""

from edge_agent.operations.run import run_operated

__all__ = ["run_operated"]

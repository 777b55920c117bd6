"""The one-command demo: simulated plant, embedded broker, agent and live KPI table."""

from edge_agent.demo.run import run_demo

__all__ = ["run_demo"]

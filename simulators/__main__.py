"""Allow ``python -m edge_agent_simulators``."""

__all__: list[str] = []

import sys

from .cli import main

sys.exit(main())

"""yaml-rs, imported with its allocator told to hand freed memory back to the system at once.

yaml-rs is built with mimalloc, which by default keeps freed pages for reuse. The document of a
50,000-tag file (~120 MB while yaml-rs builds the Python objects) then stayed in the agent's
RSS for as long as it ran: ~40 MB, 0.8 kB per tag. mimalloc reads its options from the
environment when the library is loaded, so the option is set before the first import; an
operator's own ``MIMALLOC_PURGE_DELAY`` wins. No other installed library uses mimalloc.
"""

from __future__ import annotations

__all__ = ["yaml_rs"]

import os

os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")  # milliseconds before freed pages are returned

import yaml_rs  # after the option above

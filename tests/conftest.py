"""Shared test configuration."""

import os

# Keep matplotlib headless and torch small on a 2-core machine.
os.environ.setdefault("MPLBACKEND", "Agg")

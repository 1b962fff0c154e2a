"""The sipppy version (backend packages must carry the same one)."""

__version__ = "0.2.0"

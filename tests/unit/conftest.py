"""Fixtures of the unit tests: the in-memory API of tests/unit/fakekube.py."""

from .fakekube import fake  # noqa: F401  (a fixture, used by name)

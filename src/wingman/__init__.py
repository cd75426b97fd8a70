"""Wingman: the backend of an AI conversation assistant, shipped as a single-node appliance."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wingman")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

"""The ``vinr api`` role: the usage ingest hot path and the control plane."""

from ingest.app import create_app

__all__ = ["create_app"]

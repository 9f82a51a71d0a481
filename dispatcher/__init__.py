"""The ``vinr dispatcher`` role: delivers the outbox's events to webhook endpoints."""

from dispatcher.worker import Dispatcher

__all__ = ["Dispatcher"]

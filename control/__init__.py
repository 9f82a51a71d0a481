"""The control plane role: the REST API for the catalog, customers, subscriptions, invoices,
webhook endpoints and dead letters, behind authentication and POST idempotency."""

from control.app import create_control_plane
from control.middleware import ControlMiddleware

__all__ = ["ControlMiddleware", "create_control_plane"]

"""The Dashboard role: the web pages the guide sends people to, served by ``vinr api`` at
``/dashboard`` (``Dashboard``). It talks to ``domain`` as the control plane does and imports
no other role."""

from dashboard.app import PREFIX, Dashboard

__all__ = ["PREFIX", "Dashboard"]

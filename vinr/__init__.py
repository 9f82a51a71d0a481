"""vinr: the entry points — the ``vinr`` command, the role runners, ``vinr up`` and the demo.

The layers below, top to bottom: the roles (``ingest``, ``control``, ``aggregator``,
``invoicer``, ``dispatcher``), the shared domain (``domain``) and infrastructure (``infra``).
"""

__version__ = "0.1.0"

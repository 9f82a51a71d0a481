"""vinr: the shared package — settings, ids, schema, event format, clock, telemetry, CLI, SDK."""

__version__ = "0.1.0"

"""Infrastructure: settings, Postgres, Kafka, Redis, HTTP plumbing, telemetry, lifecycle.
Imports nothing of the domain or the roles."""

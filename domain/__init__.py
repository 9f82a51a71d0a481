"""The shared domain: pure billing rules, the billing operations several roles need, and
storage behind narrow interfaces. Imports infrastructure (``infra``) only, never a role."""

"""The ``vinr invoicer`` and ``vinr dispatcher`` roles: invoices, payments, webhooks."""

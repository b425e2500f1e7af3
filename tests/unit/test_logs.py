"""raylane's JSON log lines, as an operator reads them from a replica's stderr."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from raylane.cluster import logs


@pytest.fixture
def fresh() -> Iterator[None]:
    """raylane's loggers as a new process has them, restored afterwards."""
    logger = logging.getLogger("raylane")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers.clear()
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_a_record_is_one_json_line_with_its_fields(
    fresh: None, capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure()
    logs.configure()  # a second call adds no second handler
    log = logging.getLogger("raylane.worker")
    log.info("job finished", extra={"request_id": "r-1", "attempt": 2, "runtime_ms": 12.5})
    log.debug("not at INFO")
    try:
        raise RuntimeError("engine broke")
    except RuntimeError:
        log.exception("generation failed", extra={"request_id": "r-2"})
    first, second = lines(capsys)
    assert first["msg"] == "job finished" and first["level"] == "INFO"
    assert first["logger"] == "raylane.worker" and first["ts"].endswith("Z")
    assert (first["request_id"], first["attempt"], first["runtime_ms"]) == ("r-1", 2, 12.5)
    assert second["request_id"] == "r-2" and "RuntimeError: engine broke" in second["exc"]


def test_the_level_comes_from_the_environment(
    fresh: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(logs.LEVEL_ENV, "warning")
    logs.configure()
    logging.getLogger("raylane.router").info("request finished")
    logging.getLogger("raylane.router").warning("inbox read failed")
    assert [line["msg"] for line in lines(capsys)] == ["inbox read failed"]

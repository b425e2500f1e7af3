"""Stop strings over streamed text."""

from __future__ import annotations

import pytest

from raylane.workers.stops import StopMatcher


def run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces)
    stopped = matcher.stopped
    return out + ("" if stopped else matcher.flush()), stopped


@pytest.mark.parametrize(
    ("stops", "pieces", "text", "stopped"),
    [
        (["END"], ["Hello ", "wor", "ld"], "Hello world", False),
        (["END"], ["Hello E", "N", "D and more"], "Hello ", True),
        (["\n\n"], ["a\n", "\nb"], "a", True),
        (["stop", "halt"], ["please ha", "lt now"], "please ", True),
        (["abc"], ["ab", "x"], "abx", False),
        ([], ["free", " text"], "free text", False),
        (["x"], ["x"], "", True),
    ],
)
def test_text_is_cut_before_the_first_stop(
    stops: list[str], pieces: list[str], text: str, stopped: bool
) -> None:
    assert run(stops, pieces) == (text, stopped)


def test_text_that_may_start_a_stop_is_held_back_until_decided() -> None:
    matcher = StopMatcher(["END"])
    assert matcher.feed("the E") == "the "
    assert matcher.feed("N") == ""
    assert matcher.feed("ormous") == "ENormous"

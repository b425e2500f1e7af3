"""Stop strings over streamed text: emit what is safe, hold back what may become a stop."""

from __future__ import annotations


class StopMatcher:
    """Cuts a text stream at the first stop string.

    Text that could still turn out to be the start of a stop string is held back
    until more text decides it, so a stop string never reaches the caller.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False
        self.matched: str | None = None
        """The stop string that ended the text, once one did."""

    def feed(self, text: str) -> str:
        """Add generated text; return the part that is safe to send."""
        if self.stopped:
            return ""
        buf = self.held + text
        found = [(i, s) for s in self.stops if (i := buf.find(s)) >= 0]
        if found:
            cut, self.matched = min(found)
            self.stopped = True
            self.held = ""
            return buf[:cut]
        keep = self._partial_suffix(buf)
        self.held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """The held-back text, once generation ended without a stop."""
        held, self.held = self.held, ""
        return held

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest end of `buf` that begins some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if stop.startswith(buf[-n:]):
                    best = n
                    break
        return best

"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Weighted stages: ``with p.stage("plots", 3): ... p.update(0.5)``.

    ``enabled=None`` draws only when ``stream`` is a TTY.  Redraws at most
    ten times a second; :meth:`close` erases the line.
    """

    def __init__(self, stages: dict[str, float] | None = None, *, enabled: bool | None = None, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = bool(enabled)
        self.weights = dict(stages or {})
        self.total = sum(self.weights.values()) or 1.0
        self.done = 0.0
        self.name = ""
        self.frac = 0.0
        self._last = 0.0
        self._drawn = False

    def stage(self, name: str, weight: float | None = None) -> "_Stage":
        return _Stage(self, name, self.weights.get(name, 1.0) if weight is None else weight)

    def update(self, frac: float) -> None:
        """Progress inside the current stage, 0..1."""
        self.frac = min(max(float(frac), 0.0), 1.0)
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        cur = self.weights.get(self.name, 0.0) * self.frac
        pct = min(100.0, 100.0 * (self.done + cur) / self.total)
        width = 30
        fill = int(width * pct / 100)
        self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {pct:3.0f}% {self.name:<32.32}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()
            self._drawn = False


class _Stage:
    def __init__(self, p: Progress, name: str, weight: float) -> None:
        self.p, self.name, self.weight = p, name, weight

    def __enter__(self) -> Progress:
        self.p.name, self.p.frac = self.name, 0.0
        self.p.weights.setdefault(self.name, self.weight)
        self.p._draw(force=True)
        return self.p

    def __exit__(self, *exc) -> None:
        self.p.done += self.p.weights.get(self.name, self.weight)
        self.p.frac = 0.0
        self.p._draw(force=True)

"""Progress a person can follow on long work, in one place.

On a terminal (stderr is a TTY) a tqdm bar; otherwise (Airflow task logs, CI, a pipe) plain log lines
with counts, elapsed time and an estimate of what is left, at most one every `every_s` seconds plus the
first and the last, so a log stays readable however many steps there are.

    for name in track(candidates, "train", unit="model"):
        ...
    with steps("world", total=9, unit="table") as advance:
        ...; advance("items")
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("echelon.progress")


def interactive() -> bool:
    return sys.stderr.isatty()


class _LogLines:
    """The non-terminal face: one log line per step, throttled to one every `every_s` seconds."""

    def __init__(self, description: str, total: int | None, unit: str, every_s: float):
        self.description, self.total, self.unit, self.every_s = description, total, unit, every_s
        self.done, self.started, self.last = 0, time.monotonic(), float("-inf")

    def update(self, label: str | None = None) -> None:
        self.done += 1
        now = time.monotonic()
        final = self.total is not None and self.done >= self.total
        if not (final or self.done == 1 or now - self.last >= self.every_s):
            return
        self.last = now
        elapsed = now - self.started
        if self.total:
            left = elapsed / self.done * (self.total - self.done)
            count = f"{self.done}/{self.total} {self.unit}s ({100 * self.done / self.total:.0f}%)"
            timing = f"{elapsed:.1f} s elapsed, ~{left:.0f} s left"
        else:
            count, timing = f"{self.done} {self.unit}s", f"{elapsed:.1f} s elapsed"
        log.info("%s: %s, %s%s", self.description, count, timing, f" [{label} done]" if label else "")


@contextmanager
def steps(description: str, total: int | None, unit: str = "step",
          every_s: float = 10.0) -> Iterator[Callable[..., None]]:
    """A progress counter: call the yielded `advance(label=None)` after each step."""
    if interactive():
        from tqdm.auto import tqdm

        with tqdm(total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True) as bar:
            def advance(label: str | None = None) -> None:
                if label:
                    bar.set_postfix_str(str(label), refresh=False)
                bar.update(1)

            yield advance
    else:
        lines = _LogLines(description, total, unit, every_s)
        yield lines.update


def track(items: Iterable[T], description: str, total: int | None = None, unit: str = "step",
          every_s: float = 10.0, label: Callable[[T], str] | None = str) -> Iterator[T]:
    """Yield from `items`, counting each one as done when the loop asks for the next."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with steps(description, total, unit, every_s) as advance:
        for item in items:
            yield item
            advance(label(item) if label else None)

"""Progress of long steps that a person can follow: a live bar on a terminal, periodic lines elsewhere.

A :class:`Progress` is told where a unit of work stands (``progress(done)``, or ``progress.advance()``)
between the compiled blocks of a long step: ALS iterations with their loss, users evaluated, blocks of
recommendations or related items, bytes scanned at ingest; a step made of stages (alias candidates:
neighbours, then listener overlaps, ...) names each one (``progress(done, total, stage=..., unit=...)``) and
gets a fresh count, rate and time left per stage. It renders

* on a terminal (the stream's ``isatty()``): a `rich <https://rich.readthedocs.io>`_ progress bar with
  done/total, rate and time left, redrawn at most every ``min_interval`` seconds (0.5 s);
* elsewhere (CI, cron, a file): one plain line every ``line_interval`` seconds (10 s) and a last line
  when the step ends, e.g. ``evaluate als: 12,000/60,000 users (20%), 1,480 users/s, 32 s left``;
* into a log (``log=``, any ``str -> None`` callable such as a Dagster ``context.log.info``): the same
  plain lines at the same pace, whatever the stream, so a run's log in the UI shows them too.

Cost: a call that does not redraw is a clock read and a comparison (well under a microsecond, see
``tests/test_progress.py``); callers report between numba blocks, never from inside a kernel, so the
kernels themselves run exactly as without progress. Dagster-free: the pipeline layer, the CLI and the
benchmarks use it alike.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

Display = Literal["auto", "bar", "lines", "off"]

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def _count(value: float, unit: str) -> str:
    """``value`` for a person: bytes in binary units, other counts with thousands separators."""
    if unit == "B":
        for name in _SIZE_UNITS:
            if abs(value) < 1024 or name == _SIZE_UNITS[-1]:
                return f"{value:,.0f} B" if name == "B" else f"{value:.1f} {name}"
            value /= 1024
    text = f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def _duration(seconds: float) -> str:
    """``seconds`` as ``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _info_text(info: dict[str, Any]) -> str:
    parts = []
    for key, value in info.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, int):
            value = f"{value:,}"
        parts.append(f"{key} {value}")
    return ", ".join(parts)


_terminal: TextIO | None = None


def claim_terminal() -> None:
    """Keep a handle on the terminal behind standard error, the default stream of every later
    :class:`Progress`, so bars still reach it while Dagster captures a run's output.

    During a run, Dagster's compute-log capture points descriptor 2 at a file (mirrored back to the
    terminal by a ``tail`` process), so a bar created inside an asset would find no terminal and fall back
    to lines. ``recsys refresh`` calls this before its runs: when standard error is a terminal, a
    duplicate of its descriptor is kept and bars draw there; otherwise (cron, CI, the daemon) nothing
    changes.
    """
    global _terminal
    if _terminal is None and sys.stderr is not None and sys.stderr.isatty():
        _terminal = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8")


class Progress:
    """Where one long step stands; see the module docstring for what is shown where.

    ``label``: what the step is (``"als fit"``, ``"evaluate lsa"``); ``total``: the units of work
    (None: unknown, then no percentage or time left); ``unit``: their name, plural (``"iterations"``,
    ``"users"``), or ``"B"`` for bytes; ``display``: ``"auto"`` (a bar when ``stream`` is a terminal,
    lines otherwise), ``"bar"``, ``"lines"`` or ``"off"`` (nothing on the stream; ``log`` still gets
    lines); ``stream``: default the terminal kept by :func:`claim_terminal`, else ``sys.stderr``, so
    piped standard output stays clean. ``clock`` is for
    tests. Use as a context manager, or call :meth:`close` when the step ends.
    """

    def __init__(
        self,
        label: str,
        total: float | None = None,
        *,
        unit: str = "",
        log: Callable[[str], None] | None = None,
        display: Display = "auto",
        stream: TextIO | None = None,
        min_interval: float = 0.5,
        line_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stage: str | None = None
        self._name, self._unit = label, unit
        self.done: float = 0
        self.info: dict[str, Any] = {}
        self._log = log
        self._stream = stream if stream is not None else (_terminal or sys.stderr)
        if display == "auto":
            isatty = getattr(self._stream, "isatty", None)
            display = "bar" if isatty is not None and isatty() else "lines"
        self.display: Display = display
        self._min_interval = min_interval
        self._line_interval = line_interval
        self._clock = clock
        self.started = clock()
        self._last_draw = -math.inf
        self._last_line = self.started  # the first line comes one interval in: short steps stay quiet
        self._closed = False
        self._bar = _BarTask(self) if display == "bar" else None

    # -- reporting ------------------------------------------------------------------------------------

    def __call__(
        self,
        done: float,
        total: float | None = None,
        *,
        stage: str | None = None,
        unit: str | None = None,
        **info: Any,
    ) -> None:
        """The step has done ``done`` units (of ``total``, if it changed); ``info``: extra values to show
        (``loss=...``). Cheap unless a redraw or a line is due.

        A step made of stages (alias candidates: neighbours, then listener overlaps of pairs...) names
        them: a new ``stage`` ends the previous one (its last line) and starts counting afresh, shown as
        ``label (stage)``, in ``unit`` when given (else the step's unit), with its own rate and time left.
        """
        if stage is not None and stage != self.stage:
            self._start_stage(stage, unit)
        self.done = done
        if total is not None:
            self.total = total
        if info:
            self.info.update(info)
        now = self._clock()
        if self._bar is not None and now - self._last_draw >= self._min_interval:
            self._last_draw = now
            self._bar.draw()
        if now - self._last_line >= self._line_interval:
            self._last_line = now
            self._emit(self.line(now))

    def _start_stage(self, stage: str, unit: str | None) -> None:
        now = self._clock()
        if self.stage is not None:
            self._emit(self.line(now, final=True))
        self.stage = stage
        self.label = f"{self._name} ({stage})"
        self.unit = self._unit if unit is None else unit
        self.started = self._last_line = now
        self.done, self.total, self.info = 0, None, {}

    def advance(self, n: float = 1, **info: Any) -> None:
        """``n`` more units done."""
        self(self.done + n, **info)

    def fit_callback(self) -> Callable[[int, int, float | None, float], None]:
        """A callback for a model's fit (``recsys_assets.core.models.Progress``: step, total, loss or None,
        seconds of the step) that reports the iteration and its loss here."""

        def callback(step: int, total: int, loss: float | None, seconds: float) -> None:
            info = {"loss": float(loss)} if loss is not None else {}
            self(step, total, **info)

        return callback

    def close(self) -> None:
        """End the step: the bar shows its final state, and a last line goes to the stream (lines mode)
        and the log."""
        if self._closed:
            return
        self._closed = True
        now = self._clock()
        if self._bar is not None:
            self._bar.finish()
        self._emit(self.line(now, final=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- text -------------------------------------------------------------------------------------

    def status(self, now: float | None = None, final: bool = False) -> str:
        """Done/total, percentage, rate and time left (or elapsed time when ``final``), and the info."""
        now = self._clock() if now is None else now
        elapsed = now - self.started
        done = _count(self.done, self.unit)
        if self.total:
            parts = [
                f"{_count(self.done, '')}/{_count(self.total, self.unit)} ({self.done / self.total:.0%})"
            ]
            if self.unit == "B":
                parts = [f"{done} of {_count(self.total, 'B')} ({self.done / self.total:.0%})"]
        else:
            parts = [done]
        rate = self.done / elapsed if elapsed > 0 else math.nan
        if math.isfinite(rate) and self.done:
            parts.append(f"{_count(rate, self.unit or 'units')}/s")
        if final:
            parts.append(f"in {_duration(elapsed)}")
        elif self.total and math.isfinite(rate) and rate > 0:
            parts.append(f"{_duration((self.total - self.done) / rate)} left")
        else:
            parts.append(f"{_duration(elapsed)} elapsed")
        if self.info:
            parts.append(_info_text(self.info))
        return ", ".join(parts)

    def line(self, now: float | None = None, final: bool = False) -> str:
        """The plain line: ``label: status`` (``label: done ...`` when ``final``)."""
        return f"{self.label}: {'done ' if final else ''}{self.status(now, final)}"

    def _emit(self, text: str) -> None:
        if self.display == "lines":
            print(text, file=self._stream, flush=True)
        if self._log is not None:
            self._log(text)


class _BarTask:
    """One :class:`Progress` as a task of the process's one rich display (rich allows one live display
    per console: steps running at the same time share it, one row each)."""

    _lock = threading.Lock()
    _shared: dict[int, Any] = {}  # id(stream) -> (rich Progress, number of open tasks)

    def __init__(self, owner: Progress) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as RichProgress

        self.owner = owner
        stream = owner._stream
        with self._lock:
            entry = self._shared.get(id(stream))
            if entry is None:
                console = Console(file=stream, force_terminal=True)
                # No refresh thread: a redraw happens only when a step reports (throttled by the owner).
                bar = RichProgress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TextColumn("{task.fields[status]}"),
                    console=console,
                    auto_refresh=False,
                )
                bar.start()
                entry = [bar, 0]
                self._shared[id(stream)] = entry
            entry[1] += 1
            self.entry = entry
            self.task = entry[0].add_task(owner.label, total=owner.total, status=owner.status())

    def draw(self) -> None:
        bar = self.entry[0]
        owner = self.owner
        bar.update(
            self.task, description=owner.label, completed=owner.done, total=owner.total, status=owner.status()
        )
        bar.refresh()

    def finish(self) -> None:
        bar = self.entry[0]
        owner = self.owner
        bar.update(
            self.task,
            description=owner.label,
            completed=owner.done,
            total=owner.total or owner.done,
            status=owner.status(final=True),
        )
        bar.refresh()
        with self._lock:
            self.entry[1] -= 1
            if self.entry[1] == 0:
                bar.stop()  # leaves the last drawing on the terminal
                self._shared.pop(id(owner._stream), None)

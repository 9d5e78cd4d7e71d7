"""How the demo shows events: aligned columns, colour on a terminal, and a closing summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TextIO

from poller.tools.render import what_happened
from poller.tools.table import Palette, display_width, wants_colour
from schemas import CallFinished, CallOutcome, Event
from schemas.events import event_type

__all__ = ["DemoView"]

_TYPE_COLOUR = {
    "source-degraded": "red",
    "source-recovered": "green",
    "task-appeared": "cyan",
    "task-vanished": "yellow",
}
_TYPE_WIDTH = max(len("task-status-changed"), len("source-recovered"))


class DemoView:
    """Formats each event as one aligned line and keeps the counts for the summary."""

    def __init__(self, out: TextIO, sources: Iterable[str], colour: bool | None = None) -> None:
        self.out = out
        self.paint = Palette(wants_colour(out) if colour is None else colour)
        self.source_width = max((display_width(name) for name in sources), default=0)
        self.by_type: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()

    def line(self, event: Event) -> str:
        """One event as ``time  vendor/account  type  what``; counted for the summary."""
        kind = event_type(event)
        self.by_type[kind] += 1
        colour = _TYPE_COLOUR.get(kind)
        if isinstance(event, CallFinished):
            self.outcomes[event.outcome.value] += 1
            colour = "green" if event.outcome is CallOutcome.ANSWERED else None
        source = f"{event.vendor}/{event.account}"
        pad = " " * max(0, self.source_width - display_width(source))
        stamp = event.observed_at.astimezone().strftime("%H:%M:%S")
        return (
            f"{self.paint(stamp, 'dim')}  {source}{pad}  "
            f"{self.paint(kind.ljust(_TYPE_WIDTH), colour)}  {what_happened(event)}"
        )

    def note(self, text: str) -> None:
        """A line of the demo's own (the scripted episode, start and stop)."""
        print(self.paint(f"demo: {text}", "yellow"), file=self.out, flush=True)

    def summary(self) -> list[str]:
        total = sum(self.by_type.values())
        lines = [self.paint(f"demo: summary: {total} event(s)", "bold")]
        for kind, count in sorted(self.by_type.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {kind.ljust(_TYPE_WIDTH)}  {count:>6}")
        if self.outcomes:
            calls = sum(self.outcomes.values())
            lines.append(self.paint(f"demo: calls by outcome ({calls})", "bold"))
            for outcome, count in sorted(self.outcomes.items(), key=lambda item: (-item[1], item[0])):
                share = f"{100 * count / calls:.0f}%"
                lines.append(f"  {outcome.ljust(_TYPE_WIDTH)}  {count:>6}  {share:>4}")
        return lines

"""One step counter shared by making and measuring, so that a progress bar shows one count for the whole compress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Progress = Callable[[str, int, int], None]  # (what is happening, steps done, steps in all)
Say = Callable[[str], None]


@dataclass
class Steps:
    progress: Progress | None
    total: int = 1
    done: int = 0

    def step(self, message: str) -> None:
        """Announce the step that starts now (counted as done once the next one starts)."""
        self.show(message)
        self.done += 1

    def show(self, message: str) -> None:
        """Update the message within a step (fine-tune batches) without counting a step."""
        if self.progress is not None:
            self.progress(message, self.done, self.total)

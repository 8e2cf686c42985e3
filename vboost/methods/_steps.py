"""Which denoising step a pipeline is on, read from its scheduler: one tracker per scheduler, shared by every method
attached to the pipeline."""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class StepTracker:
    """Follows a pipeline's denoising loop through its scheduler.

    ``scheduler.set_timesteps`` starts a loop (``num_steps = len(scheduler.timesteps)``, index 0) and each
    ``scheduler.step`` advances the index, so the denoiser always sees the zero-based index of the step it is
    computing. With no pipeline (a bare module called directly) both stay ``None`` and every window is active.
    """

    step_index: int | None = None
    num_steps: int | None = None

    def in_window(self, start: float, end: float) -> bool:
        """True iff ``start <= i / num_steps <= end`` (inclusive), or when no step information exists."""
        if self.step_index is None or not self.num_steps:
            return True
        return start <= self.step_index / self.num_steps <= end

    def in_first(self, fraction: float) -> bool:
        """True during the first ``round(fraction * num_steps)`` steps, or when no step information exists."""
        if self.step_index is None or not self.num_steps:
            return True
        return self.step_index < round(fraction * self.num_steps)


@dataclasses.dataclass
class _Tracked:
    tracker: StepTracker
    users: int
    untrack: Callable[[], None]


# Scheduler -> its tracker and how many attached methods use it. Weak keys: a dropped pipeline takes its entry along.
_TRACKED: "weakref.WeakKeyDictionary[Any, _Tracked]" = weakref.WeakKeyDictionary()


def shared_tracker(pipe: Any) -> tuple[StepTracker, Callable[[], None]]:
    """The step tracker of ``pipe.scheduler`` and the callable that releases it.

    The first user wraps the scheduler's ``set_timesteps`` and ``step``; later users share that tracker, so methods
    stacked on one pipeline see the same step whichever detaches first; the last release unwraps the scheduler.
    Releasing twice is a no-op.
    """
    scheduler = pipe.scheduler
    entry = _TRACKED.get(scheduler)
    if entry is None:
        tracker = StepTracker()
        entry = _TRACKED[scheduler] = _Tracked(tracker, 0, _wrap(scheduler, tracker))
    entry.users += 1
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        entry.users -= 1
        if entry.users == 0:
            entry.untrack()
            _TRACKED.pop(scheduler, None)

    return entry.tracker, release


def _wrap(scheduler: Any, tracker: StepTracker) -> Callable[[], None]:
    """Wrap ``scheduler``'s ``set_timesteps`` and ``step`` to drive ``tracker``; returns the callable that unwraps."""
    set_timesteps, step = scheduler.set_timesteps, scheduler.step

    # functools.wraps keeps the signatures: pipelines inspect set_timesteps for "sigmas"/"timesteps".
    @functools.wraps(set_timesteps)
    def tracked_set_timesteps(*args: Any, **kwargs: Any) -> Any:
        out = set_timesteps(*args, **kwargs)
        tracker.num_steps, tracker.step_index = len(scheduler.timesteps), 0
        return out

    @functools.wraps(step)
    def tracked_step(*args: Any, **kwargs: Any) -> Any:
        out = step(*args, **kwargs)
        if tracker.step_index is not None:
            tracker.step_index += 1
        return out

    scheduler.set_timesteps, scheduler.step = tracked_set_timesteps, tracked_step

    def untrack() -> None:
        # Instance attributes shadow the class methods; deleting them restores the originals.
        for name in ("set_timesteps", "step"):
            scheduler.__dict__.pop(name, None)
        tracker.step_index = tracker.num_steps = None

    return untrack

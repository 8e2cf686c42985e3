"""Which denoising step a pipeline is on, read from its scheduler: one tracker per scheduler, shared by every method
attached to the pipeline."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
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

    def started() -> None:
        tracker.num_steps, tracker.step_index = len(scheduler.timesteps), 0

    def stepped() -> None:
        if tracker.step_index is not None:
            tracker.step_index += 1

    for name, after in (("set_timesteps", started), ("step", stepped)):
        # Bound to the scheduler, so a deep copy of it gets methods bound to the copy (LTX-2's pipeline copies its
        # scheduler to step the audio latents), which run the class's own method and leave the tracker alone.
        method = _tracked(scheduler, name, getattr(scheduler, name), after)
        setattr(scheduler, name, types.MethodType(method, scheduler))

    def untrack() -> None:
        # Instance attributes shadow the class methods; deleting them restores the originals.
        for name in ("set_timesteps", "step"):
            scheduler.__dict__.pop(name, None)
        tracker.step_index = tracker.num_steps = None

    return untrack


def _tracked(scheduler: Any, name: str, original: Callable[..., Any], after: Callable[[], None]) -> Callable[..., Any]:
    """The method ``name`` of ``scheduler``: ``original`` (what ``scheduler.<name>`` was), then ``after``; on a copy of
    the scheduler, the class's own method."""

    @functools.wraps(original)
    def tracked(owner: Any, *args: Any, **kwargs: Any) -> Any:
        if owner is not scheduler:
            return getattr(type(owner), name)(owner, *args, **kwargs)
        out = original(*args, **kwargs)
        after()
        return out

    # Pipelines inspect set_timesteps for "sigmas"/"timesteps": once bound, it shows the original's parameters.
    signature = inspect.signature(original)
    owner = inspect.Parameter("owner", inspect.Parameter.POSITIONAL_ONLY)
    tracked.__signature__ = signature.replace(parameters=[owner, *signature.parameters.values()])
    return tracked

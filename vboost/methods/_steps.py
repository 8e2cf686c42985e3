"""Which denoising step a pipeline is on, read from its scheduler."""

from __future__ import annotations

import dataclasses
import functools
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

    def track_pipeline(self, pipe: Any) -> Callable[[], None]:
        """Wrap ``pipe.scheduler``'s ``set_timesteps`` and ``step``; returns the callable that unwraps them."""
        scheduler = pipe.scheduler
        set_timesteps, step = scheduler.set_timesteps, scheduler.step

        # functools.wraps keeps the signatures: pipelines inspect set_timesteps for "sigmas"/"timesteps".
        @functools.wraps(set_timesteps)
        def tracked_set_timesteps(*args: Any, **kwargs: Any) -> Any:
            out = set_timesteps(*args, **kwargs)
            self.num_steps, self.step_index = len(scheduler.timesteps), 0
            return out

        @functools.wraps(step)
        def tracked_step(*args: Any, **kwargs: Any) -> Any:
            out = step(*args, **kwargs)
            if self.step_index is not None:
                self.step_index += 1
            return out

        scheduler.set_timesteps, scheduler.step = tracked_set_timesteps, tracked_step

        def untrack() -> None:
            # Instance attributes shadow the class methods; deleting them restores the originals.
            for name in ("set_timesteps", "step"):
                scheduler.__dict__.pop(name, None)
            self.step_index = self.num_steps = None

        return untrack

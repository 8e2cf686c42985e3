"""Open-Sora v1.2's rectified-flow sampler (``RFLOW`` in ``opensora/schedulers/rf/``), as its inference runs it.

The model predicts the velocity from noise to data (``x0 - noise``). Timesteps start uniform,
``t_i = (1 - i / N) * 1000``, and are shifted toward the noise end by Open-Sora's resolution and duration rule::

    ratio = sqrt(height * width / 512**2) * sqrt(num_frames // 17 * 5)      (1 instead of the second root for images)
    t'    = ratio * t / (1 + (ratio - 1) * t)                               (t in [0, 1])

then each step moves ``z += v * (t'_i - t'_{i+1}) / 1000`` (``t'_N = 0``). As in the original, ``ratio`` is
computed from the conditioning tensors, which inference makes in the model dtype: with bfloat16 weights the
ratio is rounded to bfloat16 (at 720p and 102 frames 10.25 instead of 10.27), and that is the schedule the
released setting samples with.

diffusers' ``FlowMatchEulerDiscreteScheduler`` computes the same shift, but takes its step from differences of
``t'/1000`` instead of ``(t'_i - t'_{i+1}) / 1000`` and returns the sample in the model output's dtype, so its
trajectory differs from Open-Sora's in the last bits; this small module reproduces Open-Sora's exactly.
"""

from __future__ import annotations

import torch


def timestep_transform(
    timesteps: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    num_frames: torch.Tensor,
    num_train_timesteps: int = 1000,
    base_resolution: int = 512 * 512,
) -> torch.Tensor:
    """Open-Sora's resolution- and length-dependent shift of ``timesteps`` (in ``[0, num_train_timesteps]``).

    ``height``, ``width`` (pixels) and ``num_frames`` are 1-element tensors in the dtype the model runs in.
    """
    t = timesteps / num_train_timesteps
    ratio_space = (height * width / base_resolution).sqrt()
    # Open-Sora's VAE gives 5 latent frames per 17 frames; the rule uses that count, rounded down.
    frames = torch.ones_like(num_frames) if num_frames[0] == 1 else num_frames // 17 * 5
    ratio = ratio_space * frames.sqrt()
    return ratio * t / (1 + (ratio - 1) * t) * num_train_timesteps


class RFlowScheduler:
    """Euler sampling of Open-Sora's rectified flow over the shifted schedule (``use_timestep_transform=True``).

    ``set_timesteps`` fixes the schedule for one clip shape; ``step`` advances the sample one Euler step along the
    model's velocity. ``timesteps`` (float32) are what the model is called with.
    """

    def __init__(self, num_train_timesteps: int = 1000, use_timestep_transform: bool = True) -> None:
        self.num_train_timesteps = num_train_timesteps
        self.use_timestep_transform = use_timestep_transform
        self.timesteps = torch.empty(0)
        self._step_index = 0

    def set_timesteps(
        self,
        num_inference_steps: int,
        *,
        height: torch.Tensor,
        width: torch.Tensor,
        num_frames: torch.Tensor,
        device: torch.device | str | None = None,
    ) -> None:
        """``num_inference_steps`` timesteps for a clip of ``num_frames`` frames at ``height x width`` pixels.

        Raises ``ValueError`` naming the value when ``num_inference_steps < 1``, and for 2 to 16 frames, where the
        shift's frame term ``num_frames // 17 * 5`` is 0 and Open-Sora's schedule starts with 0 / 0.
        """
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1; got {num_inference_steps}")
        if self.use_timestep_transform and 1 < int(num_frames[0]) < 17:
            raise ValueError(
                f"Open-Sora's timestep shift needs 1 or at least 17 frames; got num_frames={int(num_frames[0])}"
            )
        n = num_inference_steps
        timesteps = torch.tensor([(1.0 - i / n) * self.num_train_timesteps for i in range(n)], device=device)
        if self.use_timestep_transform:
            timesteps = timestep_transform(timesteps, height, width, num_frames, self.num_train_timesteps)
        self.timesteps = timesteps
        self._step_index = 0

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """``sample + velocity * dt`` with ``dt = (t_i - t_{i+1}) / 1000`` for the current step ``i`` (``t_N = 0``).

        Raises ``RuntimeError`` when called more often than there are timesteps.
        """
        i, timesteps = self._step_index, self.timesteps
        if i >= len(timesteps):
            raise RuntimeError(
                f"step {i} called, but the schedule has {len(timesteps)} steps; call set_timesteps first"
            )
        dt = timesteps[i] - timesteps[i + 1] if i < len(timesteps) - 1 else timesteps[i]
        self._step_index += 1
        return sample + velocity * (dt / self.num_train_timesteps)

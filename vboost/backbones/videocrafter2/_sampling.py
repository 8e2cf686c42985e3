"""VideoCrafter2's DDIM sampler (``lvdm/models/samplers/ddim.py``) as diffusers' ``DDIMScheduler`` plus its latent scale.

The original schedule is LDM's "linear" one (``linspace(sqrt(start), sqrt(end))**2``, diffusers' ``scaled_linear``),
DDIM steps at ``range(0, T, T // steps) + 1`` (diffusers' ``leading`` spacing with ``steps_offset=1``) and the last
step going to ``alphas_cumprod[0]`` (``set_alpha_to_one=False``). Its one addition, the latent scale of
:class:`LatentScale`, multiplies the x0 term of each update by ``scale(t_prev) / scale(t)``.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from vboost.backbones.videocrafter2._config import LatentScale, Settings


def ddim_scheduler(settings: Settings) -> DDIMScheduler:
    """diffusers' DDIM scheduler with the original sampler's schedule and step placement."""
    return DDIMScheduler(
        num_train_timesteps=settings.num_train_timesteps,
        beta_start=settings.beta_start,
        beta_end=settings.beta_end,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )


def check_steps(steps: int, num_train_timesteps: int) -> None:
    """Raise ``ValueError`` naming ``steps`` unless the original sampler takes exactly that many steps.

    It places its steps at ``range(0, T, T // steps)``, which holds more than ``steps`` entries when ``steps``
    does not divide ``T`` evenly enough (30 of 1000 gives 31); diffusers would take ``steps`` and so differ.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps={steps} must be in [1, {num_train_timesteps}]")
    taken = len(range(0, num_train_timesteps, num_train_timesteps // steps))
    if taken != steps:
        raise ValueError(
            f"steps={steps}: the original DDIM sampler would take {taken} steps (every "
            f"{num_train_timesteps // steps}th of {num_train_timesteps}); choose e.g. 50, 25, 20 or 10"
        )


def ddim_step(
    scheduler: DDIMScheduler,
    latent_scale: LatentScale | None,
    noise: torch.Tensor,
    timestep: torch.Tensor | int,
    latents: torch.Tensor,
    *,
    eta: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The latents of the next step: ``scheduler.step`` (noise of ``eta`` drawn from ``generator``), its x0 term
    then rescaled by ``scale(t_prev) / scale(t)`` when the model uses VideoCrafter's latent scale."""
    out = scheduler.step(noise, timestep, latents, eta=eta, generator=generator)
    if latent_scale is None:
        return out.prev_sample
    t = int(timestep)
    # The scheduler's own previous step and its alpha (the final step goes to alphas_cumprod[0]).
    t_prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alpha_prev = scheduler.alphas_cumprod[t_prev] if t_prev >= 0 else scheduler.final_alpha_cumprod
    ratio = latent_scale(t_prev) / latent_scale(t)
    return out.prev_sample + ((ratio - 1.0) * alpha_prev.sqrt().item()) * out.pred_original_sample

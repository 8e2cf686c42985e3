"""Text to video with Open-Sora v1.2, as ``scripts/inference.py`` of hpcai-tech/Open-Sora (v1.2) runs it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from vboost.backbones.opensora._rflow import RFlowScheduler
from vboost.backbones.opensora._stdit3 import STDiT3
from vboost.backbones.opensora._vae import OpenSoraVAE


class OpenSoraPipeline:
    """T5 prompt features, STDiT3 sampled by RFLOW with classifier-free guidance, the two-stage VAE.

    Classifier-free guidance batches ``[prompt, no prompt]`` in one forward; "no prompt" is the model's learned
    ``y_embedding`` under the prompt's own token mask, and the velocity is ``u + g * (c - u)``. Inputs the model
    is conditioned on (fps, height, width, frame count) are made in the model dtype, as the original does; they
    also set the sampler's timestep shift.
    """

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: torch.nn.Module,
        transformer: STDiT3,
        vae: OpenSoraVAE,
        scheduler: RFlowScheduler,
    ) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.vae = vae
        self.scheduler = scheduler
        self._guidance_scale = 1.0

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the running call batches ``[prompt, no prompt]`` through the transformer."""
        return self._guidance_scale > 1.0

    @property
    def components(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer,
            "text_encoder": self.text_encoder,
            "transformer": self.transformer,
            "vae": self.vae,
            "scheduler": self.scheduler,
        }

    def to(self, device: str | torch.device) -> "OpenSoraPipeline":
        """Move the three networks to ``device`` (each keeps its dtype); returns the pipeline."""
        for module in (self.text_encoder, self.transformer, self.vae):
            module.to(device)
        return self

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 features ``[1, 1, L, C]`` of ``prompt`` padded to ``L`` tokens (the model's), and the mask ``[1, L]``."""
        tokens = self.tokenizer(
            [prompt],
            max_length=self.transformer.config.model_max_length,
            padding="max_length",
            truncation=True,
            return_attention_mask=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        device = self.text_encoder.device
        input_ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        features = self.text_encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return features[:, None], mask

    def latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """``(batch, 4, t, height // 8, width // 8)`` with ``t`` the VAE's latent frames for ``num_frames``."""
        return (batch, self.vae.out_channels, self.vae.latent_frames(num_frames), height // 8, width // 8)

    @torch.no_grad()
    def __call__(
        self,
        prompt_embeds: torch.Tensor,
        prompt_attention_mask: torch.Tensor,
        *,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        fps: float,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
    ) -> torch.Tensor:
        """Videos ``[B, 3, num_frames, 8*(height//8), 8*(width//8)]`` (about [-1, 1], model dtype), or the final
        latents (float32) with ``output_type="latent"``.

        ``prompt_embeds``/``prompt_attention_mask`` come from :meth:`encode_prompt` (stacked for several prompts);
        the initial noise is drawn in the model dtype from ``generator`` on its device (one generator per video when
        it is a list, so a video's noise does not depend on the others), unless ``latents`` gives it.
        Guidance above 1 runs classifier-free guidance. Raises ``ValueError`` naming the bad value.
        """
        if output_type not in ("pt", "latent"):
            raise ValueError(f"output_type must be 'pt' or 'latent'; got {output_type!r}")
        if num_frames < 1 or height < 8 or width < 8:
            raise ValueError(f"need num_frames >= 1 and height, width >= 8; got {num_frames}, {height}, {width}")
        device, dtype = self.transformer.device, self.transformer.dtype
        batch = prompt_embeds.shape[0]
        # prepare_multi_resolution_info("STDiT2", ...): one value per prompt, in the model dtype.
        condition = {
            name: torch.tensor([value], device=device, dtype=dtype).repeat(batch)
            for name, value in (("fps", fps), ("height", height), ("width", width), ("num_frames", num_frames))
        }
        # One schedule for the call: its videos share one size (the first's values, as the sampler takes them).
        self.scheduler.set_timesteps(
            num_inference_steps,
            height=condition["height"][:1],
            width=condition["width"][:1],
            num_frames=condition["num_frames"][:1],
            device=device,
        )
        shape = self.latent_shape(batch, num_frames, height, width)
        if latents is None:
            first = generator[0] if isinstance(generator, list) else generator
            latents = randn_tensor(shape, generator=generator, dtype=dtype, device=first.device if first else None)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}; this clip needs {shape}")
        z = latents.to(device)
        self._guidance_scale = guidance_scale
        cfg = self.do_classifier_free_guidance
        y = prompt_embeds.to(device)
        if cfg:
            null = self.transformer.y_embedder.y_embedding[None].repeat(batch, 1, 1)[:, None]
            y = torch.cat([y, null])
        mask = prompt_attention_mask.to(device)

        channels = self.transformer.config.in_channels
        for t in self.scheduler.timesteps:
            z_in = torch.cat([z, z]) if cfg else z
            out = self.transformer(
                z_in,
                t.repeat(z_in.shape[0]),
                y,
                mask=mask,
                fps=condition["fps"],
                height=condition["height"],
                width=condition["width"],
            )
            velocity = out[:, :channels]  # with pred_sigma the last channels are the (unused) variance
            if cfg:
                cond, uncond = velocity.chunk(2)
                velocity = uncond + guidance_scale * (cond - uncond)
            z = self.scheduler.step(velocity, z)
        if output_type == "latent":
            return z
        return self.vae.decode(z.to(dtype), num_frames=num_frames)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """One video ``[3, T, H, W]`` (about [-1, 1]) as uint8 ``[T, H, W, 3]``, rounded as Open-Sora's ``save_sample``
    does it: clamped, mapped to [0, 1], times 255 plus 0.5, truncated, all in the video's own dtype."""
    x = video.clamp(-1, 1).add(1).div(2)
    return x.mul(255).add(0.5).clamp(0, 255).permute(1, 2, 3, 0).to("cpu", torch.uint8).numpy()

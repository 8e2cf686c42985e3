"""VideoCrafter2 text-to-video sampling as the original ``batch_ddim_sampling`` does it (``scripts/evaluation``).

Classifier-free guidance ``u + g (c - u)`` with the empty prompt as the unconditional text, both halves conditioned
on the same frame rate, DDIM with ``eta`` noise, each latent frame decoded by the image autoencoder, and frames
written to uint8 as the original script writes its videos. The two predictions come from one batched U-Net call
(``[uncond, cond]``) where the original makes two calls; every layer of the U-Net treats videos independently,
so the predictions are the same, and attention methods see the batched layout that diffusers pipelines use.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from vboost.backbones.videocrafter2._config import LatentScale
from vboost.backbones.videocrafter2._sampling import check_steps, ddim_step
from vboost.backbones.videocrafter2._unet import VideoCrafter2UNet

# open_clip.tokenize pads with token id 0, whatever pad token a tokenizer folder names.
_OPEN_CLIP_PAD_ID = 0


@dataclasses.dataclass
class VideoCrafter2PipelineOutput(BaseOutput):
    """``frames``: uint8 ``[videos, frames, height, width, 3]`` (or the final latents for ``output_type="latent"``)."""

    frames: np.ndarray | torch.Tensor


class VideoCrafter2Pipeline(DiffusionPipeline):
    """U-Net, autoencoder, OpenCLIP text encoder (as ``CLIPTextModel``), tokenizer and DDIM scheduler of VideoCrafter2.

    ``latent_scale`` is VideoCrafter's latent scale (``None`` for a model trained without it).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(
        self,
        unet: VideoCrafter2UNet,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: DDIMScheduler,
        latent_scale: LatentScale | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self.latent_scale = latent_scale
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self._guidance_scale = 1.0

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the running call batches ``[uncond, cond]`` through the U-Net."""
        return self._guidance_scale > 1.0

    def tokenize(self, prompt: str | list[str]) -> torch.Tensor:
        """``[prompts, 77]`` token ids as ``open_clip.tokenize`` makes them: CLIP BPE, truncated to the text encoder's
        77 positions with the end token kept, padded with id 0 (whatever pad token the tokenizer folder names)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        length = self.text_encoder.config.max_position_embeddings
        ids = self.tokenizer(prompts, truncation=True, max_length=length).input_ids
        return torch.tensor([seq + [_OPEN_CLIP_PAD_ID] * (length - len(seq)) for seq in ids])

    @torch.no_grad()
    def encode_prompt(self, prompt: str | list[str]) -> torch.Tensor:
        """``[prompts, 77, width]`` text states: the text encoder's ``last_hidden_state`` of :meth:`tokenize`'s ids,
        which is what the original's ``FrozenOpenCLIPEmbedder`` returns."""
        return self.text_encoder(self.tokenize(prompt).to(self._execution_device)).last_hidden_state

    def check_inputs(self, num_frames: int, height: int, width: int, num_inference_steps: int, guidance_scale: float) -> None:
        """Raise ``ValueError`` naming a setting the model cannot take: a size the U-Net's three halvings do not
        divide, no frames, a step count the original sampler does not take exactly, a negative guidance scale."""
        factor = self.vae_scale_factor * 2 ** (len(self.unet.config.channel_mult) - 1)
        for name, value in (("height", height), ("width", width)):
            if value <= 0 or value % factor:
                raise ValueError(f"{name}={value} must be a positive multiple of {factor}")
        if num_frames < 1:
            raise ValueError(f"num_frames={num_frames} must be at least 1")
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale={guidance_scale} must be non-negative")
        check_steps(num_inference_steps, self.scheduler.config.num_train_timesteps)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | None = None,
        *,
        num_frames: int = 16,
        height: int = 320,
        width: int = 512,
        num_inference_steps: int = 50,
        guidance_scale: float = 12.0,
        fps: int = 28,
        eta: float = 1.0,
        negative_prompt: str = "",
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "np",
    ) -> VideoCrafter2PipelineOutput:
        """One video per prompt: uint8 frames, or the final latents for ``output_type="latent"``.

        The defaults are the original inference script's (``scripts/run_text2video.sh``). ``fps`` is the frame rate
        the U-Net is conditioned on; ``eta`` scales DDIM's fresh noise (1.0 in the original script). Initial
        latents, then each step's noise, are drawn from ``generator``. Raises ``ValueError`` as
        :meth:`check_inputs` does, before any denoising.
        """
        self.check_inputs(num_frames, height, width, num_inference_steps, guidance_scale)
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("give exactly one of prompt and prompt_embeds")
        if output_type not in ("np", "latent"):
            raise ValueError(f"output_type={output_type!r} is not one of 'np', 'latent'")
        self._guidance_scale = guidance_scale
        device = self._execution_device
        if prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompt)
        if self.do_classifier_free_guidance:
            if negative_prompt_embeds is None:
                negative_prompt_embeds = self.encode_prompt(negative_prompt).expand_as(prompt_embeds)
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        prompt_embeds = prompt_embeds.to(device, self.unet.dtype)
        videos = prompt_embeds.shape[0] // (2 if self.do_classifier_free_guidance else 1)

        # The sampler works in float32, as the original does, whatever the U-Net's dtype.
        shape = (videos, self.unet.config.in_channels, num_frames, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        fps_condition = torch.full((prompt_embeds.shape[0],), fps, device=device)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
            noise = self.unet(model_input.to(self.unet.dtype), t, prompt_embeds, fps=fps_condition).sample.float()
            if self.do_classifier_free_guidance:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            latents = ddim_step(self.scheduler, self.latent_scale, noise, t, latents, eta=eta, generator=generator)
        self.maybe_free_model_hooks()
        if output_type == "latent":
            return VideoCrafter2PipelineOutput(frames=latents)
        return VideoCrafter2PipelineOutput(frames=video_to_uint8(self.decode_latents(latents)))

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The video ``[videos, 3, frames, H, W]`` (about [-1, 1], float32): each latent frame through the image
        autoencoder, as the original's ``decode_first_stage_2DAE``."""
        latents = (latents / self.vae.config.scaling_factor).to(self.vae.dtype)
        frames = [self.vae.decode(latents[:, :, i]).sample for i in range(latents.shape[2])]
        return torch.stack(frames, dim=2).float()


def video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """uint8 ``[videos, frames, H, W, 3]`` from a ``[videos, 3, frames, H, W]`` video in [-1, 1]: clamped, then
    ``(x + 1) / 2 * 255`` truncated, as the original script writes its videos."""
    video = (video.float().clamp(-1.0, 1.0) + 1.0) / 2.0
    return (video * 255).to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()

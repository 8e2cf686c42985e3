"""The VideoCrafter2 backbone adapter: load the original checkpoint, or build a tiny random model, and generate."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextConfig, CLIPTextModel

from vboost.backbones._specs import SPECS, videocrafter2_checkpoint
from vboost.backbones.animatediff import _tiny_tokenizer
from vboost.backbones.base import BatchedBackbone, GenerationDefaults, Video, check_batch
from vboost.backbones.videocrafter2._checkpoint import (
    load_text_encoder,
    load_tokenizer,
    load_unet,
    load_vae,
    read_checkpoint,
)
from vboost.backbones.videocrafter2._config import T2V_512_V2, read_settings, settings_from_config
from vboost.backbones.videocrafter2._pipeline import VideoCrafter2Pipeline
from vboost.backbones.videocrafter2._sampling import ddim_scheduler
from vboost.backbones.videocrafter2._unet import VideoCrafter2UNet

# The 512 v2.0 structure at tiny widths (original config layout): four levels, so output_blocks 3-11 carry
# temporal attention as in the real model; 32-channel multiples for the 32-group norms.
TINY_CONFIG: dict[str, Any] = {
    **T2V_512_V2,
    "unet_config": {
        **T2V_512_V2["unet_config"],
        "params": {
            **T2V_512_V2["unet_config"]["params"],
            "model_channels": 32,
            "channel_mult": [1, 2, 2, 2],
            "num_head_channels": 16,
            "context_dim": 128,
            "use_checkpoint": False,
        },
    },
    "first_stage_config": {
        **T2V_512_V2["first_stage_config"],
        "params": {
            **T2V_512_V2["first_stage_config"]["params"],
            "ddconfig": {
                **T2V_512_V2["first_stage_config"]["params"]["ddconfig"],
                "ch": 32,
                "ch_mult": [1, 1, 2, 2],
                "num_res_blocks": 1,
                "resolution": 64,
            },
        },
    },
}
# The tiny text tower: two 64-wide heads (open_clip's head width), as a CLIPTextModel of the blocks that are used.
_TINY_TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2}


class VideoCrafter2Backbone(BatchedBackbone):
    """VideoCrafter2 text-to-video 512 v2.0 (AILab-CVC/VideoCrafter), from its original checkpoint.

    Weights: a directory holding ``model.ckpt`` (or its ``model.safetensors`` conversion), a CLIP ``tokenizer/``
    folder and optionally the original ``config.yaml`` (the 512 v2.0 config otherwise). ``conditioning_fps`` is the
    frame rate the U-Net is conditioned on and ``ddim_eta`` DDIM's noise scale (28 and 1.0 in the original inference
    script); ``defaults.fps`` is the frame rate the clips are written and scored at. Prompt embeddings are cached.
    """

    spec = SPECS["videocrafter2"]
    pipeline_class: ClassVar[type] = VideoCrafter2Pipeline
    tiny_defaults: ClassVar[GenerationDefaults] = GenerationDefaults(
        num_frames=16, height=64, width=64, steps=10, guidance=12.0, fps=10
    )

    def __init__(
        self, pipe: VideoCrafter2Pipeline, defaults: GenerationDefaults, *, conditioning_fps: int = 28, ddim_eta: float = 1.0
    ) -> None:
        if isinstance(conditioning_fps, bool) or not isinstance(conditioning_fps, int) or conditioning_fps < 1:
            raise ValueError(f"conditioning_fps must be a positive int; got {conditioning_fps!r}")
        if not (isinstance(ddim_eta, (int, float)) and ddim_eta >= 0):
            raise ValueError(f"ddim_eta must be a non-negative number; got {ddim_eta!r}")
        super().__init__(pipe, defaults)
        self.conditioning_fps = conditioning_fps
        self.ddim_eta = float(ddim_eta)
        self._prompt_cache: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        defaults: GenerationDefaults,
        *,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        conditioning_fps: int = 28,
        ddim_eta: float = 1.0,
        component_dtypes: Mapping[str, torch.dtype] | None = None,
    ) -> "VideoCrafter2Backbone":
        """Load the original checkpoint in ``path`` (see the class docstring for the directory's layout).

        The config and tokenizer are checked before the checkpoint is read. Raises ``FileNotFoundError`` naming
        a missing file or folder, ``ValueError`` for a config this port does not compute or a checkpoint that
        holds pickled objects (with the conversion command), ``RuntimeError`` naming missing or unexpected keys.
        ``component_dtypes`` gives ``unet``, ``vae`` or ``text_encoder`` a dtype of its own.
        """
        path = Path(path).expanduser()
        settings = read_settings(path)
        checkpoint = videocrafter2_checkpoint(path)
        tokenizer = load_tokenizer(path)
        state = read_checkpoint(checkpoint)
        dtypes = dict(component_dtypes or {})
        pipe = VideoCrafter2Pipeline(
            unet=load_unet(state, settings, dtypes.get("unet", torch_dtype)),
            vae=load_vae(state, settings, dtypes.get("vae", torch_dtype)),
            text_encoder=load_text_encoder(state, settings, tokenizer, dtypes.get("text_encoder", torch_dtype)),
            tokenizer=tokenizer,
            scheduler=ddim_scheduler(settings),
            latent_scale=settings.latent_scale,
        )
        del state
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, defaults, conditioning_fps=conditioning_fps, ddim_eta=ddim_eta)

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "VideoCrafter2Backbone":
        """Random weights in :data:`TINY_CONFIG`'s structure (real module names): 16 frames at 64x64 in seconds on CPU."""
        torch.manual_seed(seed)
        settings = settings_from_config(TINY_CONFIG)
        tokenizer = _tiny_tokenizer()
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                max_position_embeddings=tokenizer.model_max_length,
                hidden_act="gelu",
                projection_dim=_TINY_TEXT["hidden_size"],
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **_TINY_TEXT,
            )
        )
        unet = VideoCrafter2UNet(**settings.unet)
        # diffusers starts temporal convolutions at zero (training grows them); random ones make them matter.
        for weight in unet.parameters():
            if weight.ndim > 1 and not weight.any():
                torch.nn.init.normal_(weight, std=0.05)
        pipe = VideoCrafter2Pipeline(
            unet=unet.eval(),
            vae=AutoencoderKL(**settings.vae).eval(),
            text_encoder=text_encoder.eval(),
            tokenizer=tokenizer,
            scheduler=ddim_scheduler(settings),
            latent_scale=settings.latent_scale,
        )
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, cls.tiny_defaults)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Not available: VideoCrafter2 has no diffusers layout, and its original layout is what it loads from."""
        raise NotImplementedError(f"{self.family} loads from its original checkpoint; it has no diffusers layout to save to {str(path)!r}")

    def generate_batch(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        **kwargs: Any,
    ) -> list[Video]:
        """One clip per ``(prompts[i], seeds[i])`` as uint8 ``[T, H, W, 3]``, in one pipeline call (see
        :meth:`Backbone.generate_batch`); unset settings come from ``self.defaults``; ``kwargs`` go to the
        pipeline. Raises ``ValueError`` naming a setting the model cannot take, before any denoising."""
        check_batch(prompts, seeds)
        d = self.defaults
        settings = {
            "num_frames": d.num_frames if num_frames is None else num_frames,
            "height": d.height if height is None else height,
            "width": d.width if width is None else width,
            "num_inference_steps": d.steps if steps is None else steps,
            "guidance_scale": d.guidance if guidance is None else guidance,
        }
        self.pipe.check_inputs(**settings)
        kwargs.setdefault("fps", self.conditioning_fps)
        kwargs.setdefault("eta", self.ddim_eta)
        negative = self._prompt_embeds(kwargs.pop("negative_prompt", ""))
        output = self.pipe(
            prompt_embeds=torch.cat([self._prompt_embeds(prompt) for prompt in prompts]),
            negative_prompt_embeds=negative.expand(len(prompts), -1, -1),
            generator=self._generators(seeds),
            **settings,
            **kwargs,
        )
        return [Video(frames=clip, fps=d.fps) for clip in output.frames]

    def _prompt_embeds(self, prompt: str) -> torch.Tensor:
        key = (prompt, self.pipe._execution_device, self.pipe.text_encoder.dtype)
        if key not in self._prompt_cache:
            self._prompt_cache[key] = self.pipe.encode_prompt(prompt)
        return self._prompt_cache[key]

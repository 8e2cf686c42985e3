"""AnimateDiff (SD1.5 U-Net + motion modules): text-to-video, and SparseCtrl image-to-video."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import (
    AnimateDiffPipeline,
    AnimateDiffSparseControlNetPipeline,
    AutoencoderKL,
    DDIMScheduler,
    MotionAdapter,
    SparseControlNetModel,
    UNet2DConditionModel,
)
from PIL import Image
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from vboost.backbones._specs import SPECS
from vboost.backbones.base import BatchedBackbone, GenerationDefaults, Video, check_batch, stack_clips

# The sampler AnimateDiff's model cards use (an SD1.5 base ships PNDM instead).
ANIMATEDIFF_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "timestep_spacing": "linspace",
    "steps_offset": 1,
}

# SD1.5-shaped but tiny: four down/up blocks (so up_blocks.1-3 exist), two temporal heads, CLIP width 32.
_TINY_CHANNELS = (8, 16, 16, 16)
_TINY_TEXT_WIDTH = 32
_TINY_GROUPS = 4


class AnimateDiffBackbone(BatchedBackbone):
    """AnimateDiff text-to-video (``AnimateDiffPipeline``; denoiser ``UNetMotionModel``).

    Weights: a full diffusers pipeline directory, or an SD1.5-style base directory plus
    ``motion_adapter=<MotionAdapter directory>`` (then the AnimateDiff DDIM sampler replaces the base's scheduler).
    Prompt embeddings are cached per (prompt, negative prompt, CFG), so trials that reuse prompts skip the text encoder.
    """

    spec = SPECS["animatediff"]
    pipeline_class: ClassVar[type] = AnimateDiffPipeline
    # Components a user may load from their own directories and hand to the pipeline.
    separate_components: ClassVar[dict[str, type]] = {"motion_adapter": MotionAdapter}
    tiny_defaults: ClassVar[GenerationDefaults] = GenerationDefaults(
        num_frames=16, height=64, width=64, steps=8, guidance=7.5, fps=8
    )

    def __init__(self, pipe: Any, defaults: GenerationDefaults) -> None:
        super().__init__(pipe, defaults)
        self._prompt_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        defaults: GenerationDefaults,
        *,
        torch_dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        component_dtypes: Mapping[str, torch.dtype] | None = None,
        **load_kwargs: Any,
    ) -> "AnimateDiffBackbone":
        """Load a local pipeline directory; ``motion_adapter`` (and for SparseCtrl ``controlnet``) may name
        separate local component directories. ``component_dtypes`` as in :meth:`Backbone.from_pretrained`.

        Raises ``FileNotFoundError`` naming a missing directory, and ``ValueError`` when ``path`` is a bare
        Stable Diffusion base and no motion adapter is given (diffusers would silently add random motion modules).
        """
        components = {name: load_kwargs.pop(name) for name in cls.separate_components if load_kwargs.get(name) is not None}
        component_dirs = {name: Path(component).expanduser() for name, component in components.items()}
        for name, component_dir in component_dirs.items():
            if not (component_dir / "config.json").is_file():
                raise FileNotFoundError(f"{name} directory {str(component_dir)!r} has no config.json")
        index = Path(path).expanduser() / "model_index.json"
        # Without an index the base loader raises at once, naming the path; only then is loading worth it.
        if index.is_file():
            unet_class = json.loads(index.read_text()).get("unet", [None, None])[1]
            if unet_class == "UNet2DConditionModel" and "motion_adapter" not in components:
                raise ValueError(f"{str(path)!r} is a Stable Diffusion base without motion modules; pass motion_adapter=<directory>")
            for name, component_dir in component_dirs.items():
                load_kwargs[name] = cls.separate_components[name].from_pretrained(
                    component_dir, torch_dtype=(component_dtypes or {}).get(name, torch_dtype), use_safetensors=True,
                    local_files_only=True,
                )
        backbone = super().from_pretrained(
            path, defaults, torch_dtype=torch_dtype, device=device, component_dtypes=component_dtypes, **load_kwargs
        )
        if "motion_adapter" in components:
            backbone.pipe.scheduler = DDIMScheduler.from_config(backbone.pipe.scheduler.config, **ANIMATEDIFF_SCHEDULER)
        return backbone

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "AnimateDiffBackbone":
        """Random SD1.5-shaped pieces (real module names) that generate 16 frames at 64x64 in about a second on CPU."""
        pipe = cls.pipeline_class(**_tiny_components(seed))
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, cls.tiny_defaults)

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
        negative_prompt: str | None = None,
        **kwargs: Any,
    ) -> list[Video]:
        """One clip per ``(prompts[i], seeds[i])`` as uint8 ``[T, H, W, 3]``, in one pipeline call (see
        :meth:`Backbone.generate_batch`); unset settings come from ``self.defaults``; ``kwargs`` go to the pipeline.

        Raises ``ValueError`` naming a setting the model cannot take (sizes not divisible by the VAE factor,
        more frames than the motion modules have positions), before any denoising.
        """
        check_batch(prompts, seeds)
        d = self.defaults
        num_frames = d.num_frames if num_frames is None else num_frames
        height = d.height if height is None else height
        width = d.width if width is None else width
        steps = d.steps if steps is None else steps
        guidance = d.guidance if guidance is None else guidance
        self._check_settings(num_frames, height, width, steps)
        extra_inputs = self._extra_inputs(height, width, kwargs)
        embeds = [self._prompt_embeds(prompt, negative_prompt, guidance > 1) for prompt in prompts]
        with self._conditioning_per_clip(seeds):
            output = self.pipe(
                prompt_embeds=stack_clips([positive for positive, _ in embeds]),
                negative_prompt_embeds=stack_clips([negative for _, negative in embeds]),
                num_frames=num_frames,
                height=height,
                width=width,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=self._generators(seeds),
                output_type="np",
                **extra_inputs,
                **kwargs,
            )
        # Same rounding as diffusers' numpy_to_pil.
        return [Video(frames=(np.asarray(clip) * 255).round().astype(np.uint8), fps=d.fps) for clip in output.frames]

    def _conditioning_per_clip(self, seeds: Sequence[int]) -> contextlib.AbstractContextManager:
        """Context for the pipeline call of clips with ``seeds`` (nothing to do for text-to-video)."""
        return contextlib.nullcontext()

    def _extra_inputs(self, height: int, width: int, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Pipeline inputs beyond text (none for text-to-video); may pop its own keys from ``kwargs``."""
        return {}

    def _check_settings(self, num_frames: int, height: int, width: int, steps: int) -> None:
        self.check_clip(num_frames, height, width)
        if steps < 1:
            raise ValueError(f"steps={steps} must be at least 1")

    def _prompt_embeds(
        self, prompt: str, negative_prompt: str | None, do_cfg: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = self.pipe._execution_device
        key = (prompt, negative_prompt, do_cfg, device, self.pipe.text_encoder.dtype)
        if key not in self._prompt_cache:
            self._prompt_cache[key] = self.pipe.encode_prompt(prompt, device, 1, do_cfg, negative_prompt=negative_prompt)
        return self._prompt_cache[key]


class AnimateDiffSparseCtrlBackbone(AnimateDiffBackbone):
    """AnimateDiff + SparseCtrl (RGB) image-to-video: the conditioning image steers frame 0.

    The image is, in order of precedence: ``generate(..., conditioning_image=...)``, the ``conditioning_image``
    given at load time, or a deterministic synthetic test card of the clip's size. An image is a path, a PIL image
    or a uint8 ``[H, W, 3]`` array. Weights: a full pipeline directory, or a base plus ``motion_adapter=`` and
    ``controlnet=`` (a ``SparseControlNetModel`` directory).
    """

    spec = SPECS["animatediff_sparsectrl"]
    pipeline_class: ClassVar[type] = AnimateDiffSparseControlNetPipeline
    separate_components: ClassVar[dict[str, type]] = {
        "motion_adapter": MotionAdapter,
        "controlnet": SparseControlNetModel,
    }

    def __init__(self, pipe: Any, defaults: GenerationDefaults, conditioning_image: Any = None) -> None:
        super().__init__(pipe, defaults)
        self.conditioning_image = _check_image(conditioning_image)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        defaults: GenerationDefaults,
        *,
        torch_dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        conditioning_image: Any = None,
        **load_kwargs: Any,
    ) -> "AnimateDiffSparseCtrlBackbone":
        """As :meth:`AnimateDiffBackbone.from_pretrained`, plus the default ``conditioning_image`` (checked first)."""
        conditioning_image = _check_image(conditioning_image)
        backbone = super().from_pretrained(path, defaults, torch_dtype=torch_dtype, device=device, **load_kwargs)
        backbone.conditioning_image = conditioning_image
        return backbone

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "AnimateDiffSparseCtrlBackbone":
        """The tiny AnimateDiff pieces plus a tiny SparseCtrl RGB controlnet (latent-space conditioning)."""
        components = _tiny_components(seed)
        controlnet = SparseControlNetModel(
            in_channels=4,
            conditioning_channels=4,
            block_out_channels=_TINY_CHANNELS,
            layers_per_block=1,
            norm_num_groups=_TINY_GROUPS,
            cross_attention_dim=_TINY_TEXT_WIDTH,
            attention_head_dim=2,
            motion_num_attention_heads=2,
            conditioning_embedding_out_channels=(8, 16),
            use_simplified_condition_embedding=True,
        ).eval()
        # A controlnet starts with zero output convolutions (training grows them); random ones let the image matter.
        for weight in controlnet.parameters():
            if weight.ndim == 4 and not weight.any():
                torch.nn.init.normal_(weight, std=0.1)
        components["controlnet"] = controlnet
        pipe = cls.pipeline_class(**components)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, cls.tiny_defaults)

    def _extra_inputs(self, height: int, width: int, kwargs: dict[str, Any]) -> dict[str, Any]:
        image = _check_image(kwargs.pop("conditioning_image", None))
        if image is None:
            image = self.conditioning_image if self.conditioning_image is not None else synthetic_image(height, width)
        if isinstance(image, (str, os.PathLike)):
            image = Image.open(image).convert("RGB")
        elif isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        return {"conditioning_frames": [image], "controlnet_frame_indices": [0]}

    @contextlib.contextmanager
    def _conditioning_per_clip(self, seeds: Sequence[int]) -> Iterator[None]:
        """The pipeline encodes the conditioning image once per call, sampling its VAE posterior from the global
        RNG; each clip's sample is drawn from that RNG seeded with the clip's seed, as a clip generated alone gets it.

        For several clips the pipeline's ``prepare_image`` is wrapped for the call so that the conditioning holds one
        sample per clip (repeated for the two classifier-free guidance halves, ``[uncond, cond]``); the wrapper is
        removed afterwards.
        """
        devices = [self.device] if self.device.type == "cuda" else []
        pipe = self.pipe
        prepare_image = pipe.prepare_image

        def per_clip(*args: Any, **kwargs: Any) -> torch.Tensor:
            samples = []
            for seed in seeds:
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(seed)
                    samples.append(prepare_image(*args, **kwargs))
            frames = torch.cat(samples)
            return torch.cat([frames, frames]) if pipe.do_classifier_free_guidance else frames

        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seeds[0])
            if len(seeds) > 1:
                pipe.prepare_image = per_clip  # an instance attribute: deleting it restores the class's method
            try:
                yield
            finally:
                pipe.__dict__.pop("prepare_image", None)


def synthetic_image(height: int, width: int) -> np.ndarray:
    """A deterministic uint8 ``[H, W, 3]`` test card: red and green ramps and a blue disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((y - height / 2) ** 2 + (x - width / 3) ** 2) < (min(height, width) / 4) ** 2
    card = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), disc.astype(np.float32)], axis=-1)
    return (card * 255).round().astype(np.uint8)


def _check_image(image: Any) -> Any:
    """Raise naming the value when ``image`` is a missing path or an array that is not uint8 ``[H, W, 3]``."""
    if isinstance(image, (str, os.PathLike)) and not Path(image).expanduser().is_file():
        raise FileNotFoundError(f"conditioning_image {str(image)!r} does not exist")
    if isinstance(image, np.ndarray) and (image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3):
        raise ValueError(f"conditioning_image array must be uint8 [H, W, 3]; got {image.dtype} {image.shape}")
    return Path(image).expanduser() if isinstance(image, (str, os.PathLike)) else image


def _tiny_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges: every byte is a token (with and without ``</w>``)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    for token in alphabet + [char + "</w>" for char in alphabet]:
        vocab[token] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _tiny_components(seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    tokenizer = _tiny_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=_TINY_TEXT_WIDTH,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=_TINY_TEXT_WIDTH,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=_TINY_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=_TINY_TEXT_WIDTH,
        attention_head_dim=2,
        norm_num_groups=_TINY_GROUPS,
    )
    motion_adapter = MotionAdapter(
        block_out_channels=_TINY_CHANNELS,
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=_TINY_GROUPS,
        **SPECS["animatediff"].tiny_denoiser,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=_TINY_GROUPS,
        sample_size=64,
    )
    for module in (text_encoder, unet, motion_adapter, vae):
        module.eval()  # as from_pretrained leaves them, so a saved tiny model reloads to the same outputs
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "motion_adapter": motion_adapter,
        "scheduler": DDIMScheduler(**ANIMATEDIFF_SCHEDULER),
    }

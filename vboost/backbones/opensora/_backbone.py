"""The Open-Sora v1.2 backbone adapter: load the released checkpoints, build the tiny model, generate clips."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoTokenizer, T5EncoderModel

from vboost.backbones._dit import tiny_t5_text_stack
from vboost.backbones._specs import SPECS
from vboost.backbones.base import BatchedBackbone, GenerationDefaults, Video, check_batch
from vboost.backbones.opensora._checkpoint import load_stdit3, load_vae, save_stdit3, save_vae
from vboost.backbones.opensora._pipeline import OpenSoraPipeline, to_uint8_frames
from vboost.backbones.opensora._rflow import RFlowScheduler
from vboost.backbones.opensora._stdit3 import STDiT3
from vboost.backbones.opensora._vae import TEMPORAL_VAE_SD_CONFIG, OpenSoraVAE

# Where each released component goes under the weights directory, and where it comes from.
COMPONENTS = {
    "transformer": "hpcai-tech/OpenSora-STDiT-v3",
    "vae": "hpcai-tech/OpenSora-VAE-v1.2",
    "text_encoder": "DeepFloyd/t5-v1_1-xxl",
}
# configs/opensora-v1-2/inference/sample.py appends this to every prompt ("... aesthetic score: 6.5.").
RELEASE_AESTHETIC_SCORE = 6.5
# The latent normalisation of the released VAE (its config.json).
_RELEASE_SHIFT = (-0.10, 0.34, 0.27, 0.98)
_RELEASE_SCALE = (3.85, 2.32, 2.33, 3.06)


class OpenSoraBackbone(BatchedBackbone):
    """Open-Sora v1.2 text to video: STDiT3 (spatial and temporal blocks), T5-XXL, the two-stage VAE, RFLOW.

    Weights: a directory holding the three released downloads as ``transformer/`` (hpcai-tech/OpenSora-STDiT-v3),
    ``vae/`` (hpcai-tech/OpenSora-VAE-v1.2) and ``text_encoder/`` (DeepFloyd/t5-v1_1-xxl, tokenizer included).
    Frame counts are 1 or at least 17 (the VAE takes runs of 17 frames; the sampler's shift is undefined below);
    frames come out ``8*(h//8) x 8*(w//8)``. Prompts get
    the release's `` aesthetic score: 6.5.`` suffix unless ``aesthetic_score`` is None; they are otherwise encoded
    as given (the original also runs a caption cleaner, which leaves plain lowercase prompts unchanged).
    Classifier-free guidance runs batched (``[prompt, no prompt]``) when guidance > 1.
    """

    spec = SPECS["opensora"]
    pipeline_class: ClassVar[type] = OpenSoraPipeline

    def __init__(
        self,
        pipe: OpenSoraPipeline,
        defaults: GenerationDefaults,
        *,
        aesthetic_score: float | None = RELEASE_AESTHETIC_SCORE,
    ) -> None:
        super().__init__(pipe, defaults)
        self.aesthetic_score = aesthetic_score
        self._prompt_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        defaults: GenerationDefaults,
        *,
        torch_dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        text_encoder_dtype: torch.dtype | str = torch.float32,
        aesthetic_score: float | None = RELEASE_AESTHETIC_SCORE,
        component_dtypes: Mapping[str, torch.dtype] | None = None,
    ) -> "OpenSoraBackbone":
        """Load the three released components from ``path`` (nothing is downloaded).

        The text encoder runs in ``text_encoder_dtype`` (a dtype or its name): float32 by default, as Open-Sora's
        inference runs T5 (about 19 GB for T5-XXL's encoder; bfloat16 halves it). Raises ``FileNotFoundError``
        naming a missing component directory or file, and ``ValueError`` naming a bad dtype or a checkpoint the
        port does not match. ``component_dtypes`` gives ``transformer``, ``vae`` or ``text_encoder`` a dtype of
        its own (the text encoder's wins over ``text_encoder_dtype``).
        """
        if isinstance(text_encoder_dtype, str):
            if not isinstance(getattr(torch, text_encoder_dtype, None), torch.dtype):
                raise ValueError(f"text_encoder_dtype={text_encoder_dtype!r} is not a torch dtype name")
            text_encoder_dtype = getattr(torch, text_encoder_dtype)
        dtypes = {"transformer": torch_dtype, "vae": torch_dtype, "text_encoder": text_encoder_dtype, **(component_dtypes or {})}
        path = Path(path).expanduser()
        for name, source in COMPONENTS.items():
            if not (path / name).is_dir():
                raise FileNotFoundError(
                    f"{str(path / name)!r} not found: put {source} there "
                    f"(e.g. hf download {source} --local-dir {path / name})"
                )
        tokenizer = AutoTokenizer.from_pretrained(path / "text_encoder", local_files_only=True)
        text_encoder = T5EncoderModel.from_pretrained(path / "text_encoder", local_files_only=True).to(
            dtypes["text_encoder"]
        )
        pipe = OpenSoraPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder.eval(),
            transformer=load_stdit3(path / "transformer", dtypes["transformer"]),
            vae=load_vae(path / "vae", dtypes["vae"]),
            scheduler=RFlowScheduler(),
        )
        return cls(pipe.to(device), defaults, aesthetic_score=aesthetic_score)

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "OpenSoraBackbone":
        tokenizer, text_encoder = tiny_t5_text_stack(seed=seed, d_model=16)
        torch.manual_seed(seed)
        transformer = STDiT3(**cls.spec.tiny_denoiser)
        vae = OpenSoraVAE(
            spatial_config=dict(
                down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4,
                block_out_channels=[8, 8, 8, 8],
                layers_per_block=1,
                latent_channels=4,
                norm_num_groups=2,
            ),
            temporal_config={**TEMPORAL_VAE_SD_CONFIG, "filters": 8, "num_res_blocks": 1, "num_groups": 4},
            shift=_RELEASE_SHIFT,
            scale=_RELEASE_SCALE,
        )
        pipe = OpenSoraPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            transformer=transformer.eval(),
            vae=vae.eval(),
            scheduler=RFlowScheduler(),
        )
        return cls(pipe, GenerationDefaults(num_frames=17, height=32, width=32, steps=3, guidance=7.0, fps=24))

    def prompt_text(self, prompt: str) -> str:
        """``prompt`` as the release encodes it: with `` aesthetic score: <s>.`` appended (unless it has one)."""
        if self.aesthetic_score is None or "aesthetic score:" in prompt:
            return prompt
        return f"{prompt} aesthetic score: {self.aesthetic_score:.1f}."

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
        """One clip per ``(prompts[i], seeds[i])`` in one pipeline call (see :meth:`Backbone.generate_batch`);
        raises ``ValueError`` naming the value when the model cannot take the clip's size, or the step count is not
        positive."""
        check_batch(prompts, seeds)
        d = self.defaults
        num_frames = d.num_frames if num_frames is None else num_frames
        height = d.height if height is None else height
        width = d.width if width is None else width
        self.check_clip(num_frames, height, width)
        encoded = [self._encoded(prompt) for prompt in prompts]
        video = self.pipe(
            torch.cat([embeds for embeds, _ in encoded]),
            torch.cat([mask for _, mask in encoded]),
            num_frames=num_frames,
            height=height,
            width=width,
            num_inference_steps=d.steps if steps is None else steps,
            guidance_scale=d.guidance if guidance is None else guidance,
            fps=d.fps,
            generator=self._generators(seeds),
            **kwargs,
        )
        return [Video(frames=to_uint8_frames(clip), fps=d.fps) for clip in video]

    def _encoded(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.prompt_text(prompt)
        if text not in self._prompt_cache:
            self._prompt_cache[text] = self.pipe.encode_prompt(text)
        return self._prompt_cache[text]

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the three components in the released layout :meth:`from_pretrained` reads."""
        path = Path(path).expanduser()
        save_stdit3(self.pipe.transformer, path / "transformer")
        save_vae(self.pipe.vae, path / "vae")
        self.pipe.text_encoder.save_pretrained(path / "text_encoder")
        self.pipe.tokenizer.save_pretrained(path / "text_encoder")

"""What the DiT adapters share: generation with cached text embeddings, the tiny T5 text stack, the frame rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import (
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)

from vboost.backbones.base import BatchedBackbone, GenerationDefaults, Video, check_batch, stack_clips

# A handful of words and every letter, so any lowercase prompt tokenizes without unknowns.
_TINY_WORDS = "▁a ▁cat ▁dog ▁runs ▁walks ▁on ▁the ▁beach ▁in ▁city ▁at ▁night ▁red ▁car ▁ocean ▁waves ▁"
_TINY_VOCAB = _TINY_WORDS.split() + list("abcdefghijklmnopqrstuvwxyz.,")


def tiny_tokenizer(extra_text: str = "") -> T5Tokenizer:
    """A unigram (T5) tokenizer over a few words, the words of ``extra_text`` and every letter."""
    words = dict.fromkeys(_TINY_VOCAB + ["▁" + word for word in extra_text.split()])
    return T5Tokenizer(
        vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(piece, -float(i)) for i, piece in enumerate(words)],
        extra_ids=0,
    )


def tiny_t5_text_stack(*, seed: int, d_model: int = 16, umt5: bool = False) -> tuple[T5Tokenizer, torch.nn.Module]:
    """A tiny tokenizer and a one-layer random-weight T5 (or UMT5) encoder."""
    tokenizer = tiny_tokenizer()
    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_class(
        vocab_size=len(tokenizer), d_model=d_model, d_ff=2 * d_model, d_kv=8, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    return tokenizer, model_class(config).eval()


def to_videos(frames: np.ndarray, fps: float) -> list[Video]:
    """A pipeline's ``output_type="np"`` frames (floats in [0, 1], one clip per leading index) as uint8 clips
    ``[T, H, W, 3]``."""
    return [Video(frames=(np.clip(clip, 0.0, 1.0) * 255.0).round().astype(np.uint8), fps=fps) for clip in frames]


class DiTBackbone(BatchedBackbone):
    """A text-to-video DiT pipeline whose ``__call__`` takes precomputed prompt embeddings.

    Subclasses name the embeddings their pipeline takes in :meth:`_encode_prompt`; they are computed once per
    prompt and guidance mode and reused, since a sweep generates the same prompts with one pipeline many times.
    """

    def __init__(self, pipe: Any, defaults: GenerationDefaults) -> None:
        super().__init__(pipe, defaults)
        self._prompt_cache: dict[tuple[str, bool], dict[str, torch.Tensor | None]] = {}

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
        raises ``ValueError`` naming the setting when the model cannot take the clip's size."""
        check_batch(prompts, seeds)
        d = self.defaults
        num_frames = d.num_frames if num_frames is None else num_frames
        height = d.height if height is None else height
        width = d.width if width is None else width
        guidance = d.guidance if guidance is None else guidance
        self.check_clip(num_frames, height, width)
        embeddings = [self._prompt_embeddings(prompt, guidance > 1.0) for prompt in prompts]
        out = self.pipe(
            **{name: stack_clips([e[name] for e in embeddings]) for name in embeddings[0]},
            num_frames=num_frames,
            height=height,
            width=width,
            num_inference_steps=d.steps if steps is None else steps,
            guidance_scale=guidance,
            generator=self._generators(seeds),
            output_type="np",
            **kwargs,
        )
        return to_videos(out.frames, d.fps)

    def _prompt_embeddings(self, prompt: str, cfg: bool) -> dict[str, torch.Tensor | None]:
        key = (prompt, cfg)
        if key not in self._prompt_cache:
            with torch.no_grad():
                self._prompt_cache[key] = self._encode_prompt(prompt, cfg)
        return self._prompt_cache[key]

    def _encode_prompt(self, prompt: str, cfg: bool) -> dict[str, torch.Tensor | None]:
        """The pipeline's prompt-embedding keyword arguments for ``prompt`` (with the negative ones when ``cfg``)."""
        raise NotImplementedError

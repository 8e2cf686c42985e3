"""What the adapters of diffusers' modular video pipelines share: the guider as a component, cached prompt embeddings,
and generation through the pipeline's own blocks.

A modular pipeline's classifier-free guidance is its ``guider`` component, not a call argument: the backbone's
``guidance`` is the scale of a ``ClassifierFreeGuidance`` guider it installs (the base guider; a pipeline whose
denoise step needs a guider class of its own gets that one, see :meth:`ModularBackbone.base_guider`), which a guider
method replaces while attached. The prompt is encoded once by the pipeline's own text encoder (prompt and the empty
negative prompt, as its text block does) and the blocks after the text encoder run with those embeddings, so a clip is
what ``pipe(prompt=...)`` generates, without encoding the prompt again for every clip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import ClassifierFreeGuidance
from diffusers.modular_pipelines import PipelineState

from vboost.backbones._dit import to_videos
from vboost.backbones.base import Backbone, GenerationDefaults, Video

TEXT_BLOCK = "text_encoder"  # the sub-block of every modular video pipeline that encodes the prompt


class ModularBackbone(Backbone):
    """A text-to-video diffusers ``ModularPipeline`` (``pipeline_class``), its base guider set from ``guidance``.

    Subclasses say how the pipeline's text block encodes a prompt (:meth:`_encode_prompt`) and what the blocks after
    it take besides the clip's size (:meth:`_call_inputs`).
    """

    # The guider components and the scale each gets from the defaults (Wan 2.2's guider_2 has a scale of its own).
    guider_components: ClassVar[tuple[str, ...]] = ("guider",)
    # Components the pipeline declares but this backbone's text-to-video clips never use (a checkpoint may lack them).
    optional_components: ClassVar[tuple[str, ...]] = ()

    def __init__(self, pipe: Any, defaults: GenerationDefaults) -> None:
        self._prompt_cache: dict[str, dict[str, torch.Tensor]] = {}
        self._base_guiders: dict[str, Any] = {}
        super().__init__(pipe, defaults)
        # The pipeline's blocks (a copy: ModularPipeline.blocks gives one), run without progress bars.
        self._blocks = pipe.blocks
        _disable_progress_bars(self._blocks)

    @property
    def defaults(self) -> GenerationDefaults:
        return self._defaults

    @defaults.setter
    def defaults(self, defaults: GenerationDefaults) -> None:
        # The generation settings include the guidance scale, which a modular pipeline keeps in its guider.
        self._defaults = defaults
        self._install_base_guiders(defaults.guidance)

    def _install_base_guiders(self, guidance: float) -> None:
        self._base_guiders = {name: self.base_guider(name, self.base_guidance(name, guidance))
                              for name in self.guider_components}
        self.pipe.update_components(**self._base_guiders)

    def base_guider(self, guider: str, scale: float) -> Any:
        """The guider installed as the component ``guider`` for the untouched model at ``scale``: diffusers'
        ``ClassifierFreeGuidance``."""
        return ClassifierFreeGuidance(guidance_scale=scale)

    @classmethod
    def base_guidance(cls, guider: str, guidance: float) -> float:
        """The untouched model's scale of the guider component ``guider`` for the backbone's ``guidance``."""
        return guidance

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        defaults: GenerationDefaults,
        *,
        torch_dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        **load_kwargs: Any,
    ) -> "ModularBackbone":
        """Load the pipeline from a local directory: a modular one (``modular_model_index.json``, as
        ``save_pretrained`` writes it) or a standard diffusers one (``model_index.json``). Nothing is downloaded.

        Raises ``FileNotFoundError`` naming the path when it holds neither index.
        """
        path = Path(path).expanduser()
        if not any((path / name).is_file() for name in ("modular_model_index.json", "model_index.json")):
            raise FileNotFoundError(
                f"weights directory {str(path)!r} has neither modular_model_index.json nor model_index.json "
                "(expected a local diffusers pipeline)"
            )
        # The class's own constructor: ModularPipeline.from_pretrained maps a standard Wan directory to no blocks.
        pipe = cls.new_pipeline(pretrained_model_name_or_path=str(path), local_files_only=True)
        pipe.load_components(torch_dtype=torch_dtype, local_files_only=True, **load_kwargs)
        missing = [name for name in pipe.pretrained_component_names
                   if name not in cls.optional_components and getattr(pipe, name, None) is None]
        if missing:
            raise FileNotFoundError(f"{str(path)!r}: could not load the components {missing} of {cls.pipeline_class.__name__}")
        pipe.to(device)
        return cls(pipe, defaults)

    @classmethod
    def new_pipeline(cls, **kwargs: Any) -> Any:
        """A ``pipeline_class`` pipeline with the blocks this backbone runs (the class's default blocks unless a
        subclass says otherwise), its ``from_pretrained`` components not yet loaded; ``kwargs`` go to its
        constructor."""
        return cls.pipeline_class(**kwargs)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.pipe.save_pretrained(str(path), overwrite_modular_index=True)

    def generate(
        self,
        prompt: str,
        seed: int,
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        **kwargs: Any,
    ) -> Video:
        """One clip; raises ``ValueError`` naming the setting when the model cannot take the clip's size, or when
        ``guidance`` is given while a guider method (which sets the guidance) is attached."""
        d = self.defaults
        num_frames = d.num_frames if num_frames is None else num_frames
        height = d.height if height is None else height
        width = d.width if width is None else width
        self.check_clip(num_frames, height, width)
        if guidance is not None and guidance != d.guidance:
            if any(getattr(self.pipe, name) is not guider for name, guider in self._base_guiders.items()):
                raise ValueError(f"guidance={guidance}: the attached guider method sets the guidance of this pipeline")
            self._install_base_guiders(guidance)
        if prompt not in self._prompt_cache:
            with torch.no_grad():
                self._prompt_cache[prompt] = self._encode_prompt(prompt)
        try:
            frames = self._run_after_text(
                self._prompt_cache[prompt],
                num_frames=num_frames, height=height, width=width, num_inference_steps=d.steps if steps is None else steps,
                generator=self._generator(seed), output_type="np", **self._call_inputs(), **kwargs,
            )
        finally:
            if guidance is not None and guidance != d.guidance:
                self._install_base_guiders(d.guidance)
        return to_videos(frames, d.fps)[0]

    def _run_after_text(self, embeddings: dict[str, torch.Tensor], **inputs: Any) -> Any:
        """Run every block after the text block, as ``ModularPipeline.__call__`` runs blocks (each input from
        ``inputs``, else its default), with the text block's outputs taken from ``embeddings``; returns the videos."""
        text_block = self._blocks.sub_blocks[TEXT_BLOCK]
        kinds = {param.name: param.kwargs_type for param in text_block.intermediate_outputs}
        blocks = [block for name, block in self._blocks.sub_blocks.items() if name != TEXT_BLOCK]
        state = PipelineState()
        for name, value in embeddings.items():
            state.set(name, value, kinds.get(name))
        for block in blocks:
            for param in block.inputs:
                if param.name in inputs:
                    state.set(param.name, inputs[param.name], param.kwargs_type)
                elif param.name is not None and param.name not in state.values:
                    state.set(param.name, param.default, param.kwargs_type)
        with torch.no_grad():
            for block in blocks:
                _, state = block(self.pipe, state)
        return state.get("videos")

    def _encode_prompt(self, prompt: str) -> dict[str, torch.Tensor]:
        """The text block's outputs for ``prompt`` and the empty negative prompt (always both: which guider runs is
        decided later)."""
        raise NotImplementedError

    def _call_inputs(self) -> dict[str, Any]:
        """Inputs of the blocks after the text block that the backbone sets beyond the clip's size (default: none)."""
        return {}


def _disable_progress_bars(blocks: Any) -> None:
    # ModularPipeline.set_progress_bar_config reaches the top-level blocks only; the denoising loops sit deeper.
    if hasattr(blocks, "set_progress_bar_config"):
        blocks.set_progress_bar_config(disable=True)
    for block in getattr(blocks, "sub_blocks", {}).values():
        _disable_progress_bars(block)

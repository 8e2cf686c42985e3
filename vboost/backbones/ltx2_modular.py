"""LTX-2 text-to-video (video with audio) through diffusers' ``LTX2ModularPipeline``."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2Guidance,
    LTX2ModularPipeline,
    LTX2VideoTransformer3DModel,
)
from diffusers.modular_pipelines import PipelineState
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GemmaTokenizer

from vboost.backbones._modular import TEXT_BLOCK, ModularBackbone
from vboost.backbones._specs import SPECS
from vboost.backbones.base import GenerationDefaults

# Gemma's special tokens (the first four at Gemma's ids, then its image markers), a word separator, every letter and
# some punctuation: with no merges every character is one token, so any lowercase prompt tokenizes without unknowns.
_IMAGE_TOKENS = ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
_TINY_GEMMA_VOCAB = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", *_IMAGE_TOKENS, "▁", *"abcdefghijklmnopqrstuvwxyz.,'-"]


def tiny_gemma_tokenizer() -> GemmaTokenizer:
    """A character-level Gemma tokenizer (BPE without merges) that prepends ``<bos>``, as Gemma's does."""
    return GemmaTokenizer(vocab={piece: i for i, piece in enumerate(_TINY_GEMMA_VOCAB)}, merges=[], add_bos_token=True)


class LTX2ModularBackbone(ModularBackbone):
    """LTX-2 on ``LTX2ModularPipeline``: one transformer denoises video and audio latents together; a clip is the video
    (the audio is generated and decoded as the pipeline does, and dropped).

    The pipeline's guider is its own ``LTX2Guidance``, one for the video (``guider``) and one for the audio
    (``audio_guider``): each step runs a conditional pass and, where either guider asks for them, an unconditional, a
    spatio-temporal (STG) and a modality-isolation pass, each a separate denoiser call, and each guider combines its
    modality's predictions in x0 space. The backbone's ``guidance`` is the video guider's CFG scale; the rest of it
    (STG, modality and rescale scales, STG blocks) and the whole audio guider stay the checkpoint's (the denoise
    block's defaults where it ships none).
    """

    spec = SPECS["ltx2_modular"]
    pipeline_class = LTX2ModularPipeline
    # The prompt enhancer and its processor (opt-in rewriting) and the duration head (used only when num_frames is
    # omitted): LTX-2.0 checkpoints ship none of them.
    optional_components = ("prompt_enhancer", "processor", "duration_head")

    def __init__(self, pipe: Any, defaults: GenerationDefaults) -> None:
        self._checkpoint_guider = pipe.guider.config  # read before the base guider replaces it
        super().__init__(pipe, defaults)

    def base_guider(self, guider: str, scale: float) -> LTX2Guidance:
        """The checkpoint's video ``LTX2Guidance`` with the CFG scale ``scale``."""
        return LTX2Guidance.from_config(self._checkpoint_guider, guidance_scale=scale)

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "LTX2ModularBackbone":
        tokenizer = tiny_gemma_tokenizer()
        text_layers, text_width = 1, cls.spec.tiny_denoiser["caption_channels"]
        boi, eoi, image = tokenizer.convert_tokens_to_ids(_IMAGE_TOKENS)
        torch.manual_seed(seed)
        text_encoder = Gemma3ForConditionalGeneration(Gemma3Config(
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=2 * text_width,
                num_hidden_layers=text_layers, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                sliding_window=64,
            ),
            # The image tower the class carries (the text block never feeds it an image).
            vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                               image_size=16, patch_size=8),
            mm_tokens_per_image=4, boi_token_index=boi, eoi_token_index=eoi, image_token_index=image,
        )).eval()
        # The connectors read every hidden state of the text encoder (its layers and the embeddings) and work at its
        # width; their learnable registers fill the padding of the 1024-token prompt.
        torch.manual_seed(seed)
        connectors = LTX2TextConnectors(
            caption_channels=text_width, text_proj_in_factor=text_layers + 1,
            video_connector_num_attention_heads=2, video_connector_attention_head_dim=text_width // 2,
            video_connector_num_layers=1, video_connector_num_learnable_registers=8,
            audio_connector_num_attention_heads=2, audio_connector_attention_head_dim=text_width // 2,
            audio_connector_num_layers=1, audio_connector_num_learnable_registers=8, connector_rope_base_seq_len=64,
        )
        torch.manual_seed(seed)
        transformer = LTX2VideoTransformer3DModel(**cls.spec.tiny_denoiser)
        # The real video VAE's layout with few channels: 32x in space (patch 4, three 2x stages) and 8x in time.
        torch.manual_seed(seed)
        vae = AutoencoderKLLTX2Video(
            latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 16, 32),
            layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1), decoder_causal=False,
            spatial_compression_ratio=32, temporal_compression_ratio=8,
        )
        # The audio VAE compresses its mel spectrogram 4x in time and frequency; the transformer's audio tokens are its
        # latent channels times its latent mel bins (2 x 4 here, 8 x 16 in LTX-2), which its statistics also span.
        torch.manual_seed(seed)
        audio_vae = AutoencoderKLLTX2Audio(
            base_channels=8, ch_mult=(1, 2, 4), num_res_blocks=1, latent_channels=2, mel_bins=16, resolution=32,
        )
        torch.manual_seed(seed)
        vocoder = LTX2Vocoder(
            in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins, hidden_channels=8,
            upsample_kernel_sizes=[4, 4], upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3]],
            output_sampling_rate=16000,
        )
        # Dynamic shifting: the pipeline shifts the schedule by the clip's token count.
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
        pipe = LTX2ModularPipeline()
        pipe.update_components(
            tokenizer=tokenizer, text_encoder=text_encoder, connectors=connectors, transformer=transformer, vae=vae,
            audio_vae=audio_vae, vocoder=vocoder, scheduler=scheduler,
        )
        return cls(pipe, GenerationDefaults(num_frames=9, height=64, width=64, steps=3, guidance=3.0, fps=24))

    def _encode_prompt(self, prompt: str) -> dict[str, Any]:
        """The pipeline's text block run on ``prompt`` (Gemma 3 and the video and audio connectors, with the empty
        negative prompt, each input at its default); returns what the blocks after it read of its outputs (the
        connectors' embeddings and masks, the prompt count and dtype, not the per-layer Gemma states)."""
        text_block = self._blocks.sub_blocks[TEXT_BLOCK]
        state = PipelineState()
        for param in text_block.inputs:
            state.set(param.name, prompt if param.name == "prompt" else param.default, param.kwargs_type)
        _, state = text_block(self.pipe, state)
        read_later = {param.name for name, block in self._blocks.sub_blocks.items() if name != TEXT_BLOCK
                      for param in block.inputs}
        return {param.name: state.get(param.name) for param in text_block.intermediate_outputs
                if param.name in read_later}

    def _call_inputs(self) -> dict[str, Any]:
        # LTX-2 conditions its positions and the audio's length on the frame rate: generate at the clip's own.
        return {"frame_rate": float(self.defaults.fps)}

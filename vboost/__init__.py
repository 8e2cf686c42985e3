"""vboost: find the best settings of training-free video-diffusion enhancements per model, automatically."""

__version__ = "0.1.0"

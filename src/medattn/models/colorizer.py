"""Registry entry of the colorization GAN's generator (the network lives in :mod:`medattn.enhance.colorize`)."""

from __future__ import annotations

from medattn.models.registry import register_model


@register_model("colorizer", task="colorization", input_size=(256, 256),
                paper="Medical image improvement for lesion detection based on class-aware attention (seed 002)",
                default_options={"encoder": "light", "width": 1.0})
def colorizer(encoder: str = "light", width: float = 1.0):
    """Colorization GAN generator: gray (B, 1, H, W) -> RGB (B, 3, H, W), ResNet encoder + self-attention."""
    from medattn.enhance.colorize import ColorizationGenerator

    return ColorizationGenerator(encoder, width)

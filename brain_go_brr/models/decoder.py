"""Decoder: back from the 16 Hz feature rate to 256 Hz, then per-sample logits.

Each stage doubles the rate (nearest-neighbour upsampling) and smooths the steps with
``Conv1d(k=3) -> GroupNorm -> GELU``; four stages give x16. The head is a 1x1 convolution
to one logit per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from brain_go_brr.models.tcn import group_norm


class Decoder(nn.Module):
    """Upsampling decoder and per-sample head.

    Args:
        in_channels: width of the feature sequence (512).
        channels: output width of each x2 stage; four stages for x16.

    Shapes: (B, in_channels, T) -> logits (B, T * 2 ** len(channels)).
    """

    def __init__(self, in_channels: int = 512, channels: Sequence[int] = (128, 64, 32, 16)) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.stages = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv1d(widths[i], widths[i + 1], 3, padding=1),
                    group_norm(widths[i + 1]),
                    nn.GELU(),
                )
                for i in range(len(channels))
            )
        )
        self.head = nn.Conv1d(widths[-1], 1, 1)
        self.upsampling = 2 ** len(channels)

    def forward(self, features: Tensor) -> Tensor:
        return self.head(self.stages(features)).squeeze(1)

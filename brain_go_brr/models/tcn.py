"""TCN encoder: dilated residual 1-D convolutions that downsample 256 Hz EEG by 16.

Each layer is ``GELU(GroupNorm(Conv1d(k, stride, dilation))) + skip``, the skip being the
identity, or average pooling and a 1x1 convolution where the rate or the width changes.
The downsampling happens early and step by step (strides 2, 2, 1, 2, 1, 2, 1, 1 by default:
128, 64, 64, 32, 32, 16, 16, 16 Hz), so the wide 256- and 512-channel layers run at 16-32 Hz
rather than 256 Hz, which is where most of a naive TCN's FLOPs would go; the width reaches
512 only in the last layer (a 512 -> 512 layer alone would cost 1.5 GFLOP per window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups: per-window statistics, independent of the batch size."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class StridedMean(nn.Module):
    """``nn.AvgPool1d(stride)``: the mean of each block of ``stride`` steps (a trailing
    partial block is dropped), written as a sum of strided slices.

    Same values as ``AvgPool1d`` bit for bit (the same additions in the same order, then
    one division), and much faster on a small CPU than ``avg_pool1d`` (bench_model,
    BENCHMARKS.md). No parameters or buffers.

    Shapes: (B, C, T) -> (B, C, T // stride).
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        if stride < 1:
            raise ValueError(f"StridedMean: stride must be >= 1, got {stride}")
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        stride = self.stride
        end = x.shape[-1] - x.shape[-1] % stride
        total = x[..., 0:end:stride]
        for k in range(1, stride):
            total = total + x[..., k:end:stride]
        return total / stride

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class ResidualConvLayer(nn.Module):
    """One dilated residual conv layer.

    Shapes: (B, in_channels, T) -> (B, out_channels, T / stride); ``T`` divisible by stride.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"TCN kernel_size={kernel_size} must be odd (centred padding)")
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2,
        )
        self.norm = group_norm(out_channels)
        self.act = nn.GELU()
        skip: list[nn.Module] = []
        if stride > 1:
            skip.append(StridedMean(stride))
        if in_channels != out_channels:
            skip.append(nn.Conv1d(in_channels, out_channels, 1))
        self.skip = nn.Sequential(*skip)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x))) + self.skip(x)


class TCNEncoder(nn.Module):
    """Stack of :class:`ResidualConvLayer`.

    Args:
        in_channels: EEG channels (19).
        channels: output width of each layer.
        strides: stride of each layer; their product is the total downsampling.
        dilations: dilation of each layer.
        kernel_size: odd kernel length shared by all layers.

    Shapes: (B, in_channels, T) -> (B, channels[-1], T / prod(strides)).
    """

    def __init__(
        self,
        in_channels: int = 19,
        channels: Sequence[int] = (64, 64, 128, 128, 256, 256, 256, 512),
        strides: Sequence[int] = (2, 2, 1, 2, 1, 2, 1, 1),
        dilations: Sequence[int] = (1, 1, 2, 1, 2, 1, 2, 4),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if not len(channels) == len(strides) == len(dilations):
            raise ValueError(
                f"TCN: channels ({len(channels)}), strides ({len(strides)}) and dilations "
                f"({len(dilations)}) need one entry per layer"
            )
        widths = [in_channels, *channels]
        self.layers = nn.Sequential(
            *(
                ResidualConvLayer(widths[i], widths[i + 1], kernel_size, strides[i], dilations[i])
                for i in range(len(channels))
            )
        )
        self.downsampling = math.prod(strides)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

"""The V3 dual-stream seizure detector.

Data flow (default widths; ``B`` windows of ``T = 15360`` samples = 60 s at 256 Hz,
``T' = T / 16 = 960`` feature steps = 16 Hz, ``N = 19`` electrodes, ``P = 171`` pairs)::

    x                    (B, 19, 15360)
    tcn                  (B, 512, 960)         dilated residual convs, x16 downsampling
    electrode_proj       (B, 19, 960, 64)      1x1 conv 512 -> 19*64
    node_stream          (B, 19, 960, 64)      BiMamba2Stack shared by electrodes (B*19 seqs)
    edge_stream          (B, 960, 19, 19)      pair cosine -> BiMamba2Stack (B*171 seqs)
                                               -> softplus -> top-k adjacency
    lpe                  (B, 960, 19, 16)      Laplacian eigenvectors (no gradient)
    gnn                  (B, 960, 19, 64)      2x SSGConv, PE into layer 1, residual
    back_proj            (B, 512, 960)         1x1 conv 19*64 -> 512, added to the TCN output
    decoder (+ head)     (B, 15360)            4 x2 upsampling stages, per-sample logits

The back-projection is added to the TCN features (a residual around the graph part) so the
decoder keeps the encoder's direct path while the streams and the GNN learn.

Training memory: by default each Mamba2 block keeps only its input and recomputes its
internals in backward (``V3Config.mamba_recompute``, as ``mamba_ssm``'s fused kernel does).
``V3Config.checkpointing`` also recomputes activations in backward: per layer in the two
Mamba stacks, per window in the GNN and per stage elsewhere. Both only act when gradients
are on; neither changes results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from brain_go_brr.models.decoder import Decoder
from brain_go_brr.models.edge_stream import EdgeStream, run_stack
from brain_go_brr.models.gnn import GraphNetwork
from brain_go_brr.models.laplacian_pe import LaplacianPE, PEConfig
from brain_go_brr.models.mamba2 import BiMamba2Stack, Mamba2Config
from brain_go_brr.models.tcn import TCNEncoder

#: Stages that :attr:`V3Config.autocast_float32` may keep in float32 under autocast.
FLOAT32_STAGES = ("tcn", "decoder")


@dataclass
class V3Config:
    """Every width and switch of :class:`V3Detector` (``conf/model/v3.yaml`` holds the same keys)."""

    n_channels: int = 19  # EEG electrodes = graph nodes
    # TCN encoder: one entry per layer; prod(strides) is the downsampling (16: 256 Hz -> 16 Hz)
    tcn_channels: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 256, 512)
    tcn_strides: tuple[int, ...] = (2, 2, 1, 2, 1, 2, 1, 1)
    tcn_dilations: tuple[int, ...] = (1, 1, 2, 1, 2, 1, 2, 4)
    tcn_kernel_size: int = 3
    # node stream: bidirectional Mamba2 over time, one sequence per electrode
    node_dim: int = 64
    node_layers: int = 6
    node_d_state: int = 16
    node_headdim: int = 8
    # edge stream: bidirectional Mamba2 over time, one sequence per electrode pair
    edge_dim: int = 16
    edge_layers: int = 2
    edge_d_state: int = 8
    edge_headdim: int = 8
    edge_time_pool: int = 1  # edge Mamba on block means of this many steps (1 = every step)
    # shared by both Mamba stacks
    d_conv: int = 4
    expand: int = 2
    # SSD chunk lengths: speed/memory/FLOPs only, results do not depend on them
    node_chunk_size: int = 32
    edge_chunk_size: int = 32
    # "auto" | "torch" | "cuda" (models/mamba2.py); CPU inference kernels: brain_go_brr.accel
    mamba_backend: str = "auto"
    # training: each Mamba2 block keeps only its input and recomputes its internals in
    # backward (as mamba_ssm's fused kernel does); false keeps them (more memory, faster)
    mamba_recompute: bool = True
    # graph
    top_k: int = 3  # neighbours kept per node and step
    pe_dim: int = 16  # Laplacian eigenvectors per node
    pe: PEConfig = field(default_factory=PEConfig)  # when the PE is recomputed
    gnn_alpha: float = 0.05  # SSGConv teleport probability
    gnn_hops: int = 2  # SSGConv K
    # decoder: one x2 stage per entry; len(decoder_channels) == log2(prod(tcn_strides))
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16)
    checkpointing: bool = False  # activation checkpointing in training (less memory, ~1.3x time)
    # stages that run in float32 even under bfloat16/float16 autocast: the TCN and the decoder
    # read and write the 256 Hz signal, where a 16-bit mantissa moved v3's probabilities
    # most (BENCHMARKS.md); () lets autocast cast every stage
    autocast_float32: tuple[str, ...] = ("tcn", "decoder")

    def __post_init__(self) -> None:
        if self.mamba_backend == "numba":
            # Checkpoints written before the CPU kernels moved to brain_go_brr.accel may say
            # "numba": the plain model is "auto", and accel.accelerate() adds the kernels.
            self.mamba_backend = "auto"
        unknown = sorted(set(self.autocast_float32) - set(FLOAT32_STAGES))
        if unknown:
            raise ValueError(
                f"model: autocast_float32 names unknown stage(s) {unknown}; "
                f"choose from {list(FLOAT32_STAGES)}"
            )
        down = 1
        for stride in self.tcn_strides:
            down *= stride
        if down != 2 ** len(self.decoder_channels):
            raise ValueError(
                f"model: the TCN downsamples by {down} (tcn_strides={list(self.tcn_strides)}) but "
                f"the decoder upsamples by {2 ** len(self.decoder_channels)} "
                f"(decoder_channels={list(self.decoder_channels)}); make them match"
            )

    @property
    def downsampling(self) -> int:
        return 2 ** len(self.decoder_channels)

    def _mamba(self, d_state: int, headdim: int, chunk_size: int) -> Mamba2Config:
        return Mamba2Config(
            d_state=d_state,
            d_conv=self.d_conv,
            expand=self.expand,
            headdim=headdim,
            chunk_size=chunk_size,
            backend=self.mamba_backend,
            recompute=self.mamba_recompute,
        )

    @property
    def node_mamba(self) -> Mamba2Config:
        """The Mamba2 settings of the node stream's blocks."""
        return self._mamba(self.node_d_state, self.node_headdim, self.node_chunk_size)

    @property
    def edge_mamba(self) -> Mamba2Config:
        """The Mamba2 settings of the edge stream's blocks."""
        return self._mamba(self.edge_d_state, self.edge_headdim, self.edge_chunk_size)


class V3Detector(nn.Module):
    """V3 dual-stream detector: EEG window -> per-sample seizure logits.

    Shapes: ``x`` (B, n_channels, T) float, ``T`` divisible by 16 -> logits (B, T).
    """

    def __init__(self, config: V3Config | None = None) -> None:
        super().__init__()
        self.config = cfg = config or V3Config()
        n, d = cfg.n_channels, cfg.node_dim
        self.tcn = TCNEncoder(
            cfg.n_channels,
            cfg.tcn_channels,
            cfg.tcn_strides,
            cfg.tcn_dilations,
            cfg.tcn_kernel_size,
        )
        width = cfg.tcn_channels[-1]
        self.electrode_proj = nn.Conv1d(width, n * d, 1)
        self.node_stream = BiMamba2Stack(d, cfg.node_layers, cfg.node_mamba)
        self.edge_stream = EdgeStream(
            n,
            cfg.edge_dim,
            cfg.edge_layers,
            cfg.edge_mamba,
            top_k=cfg.top_k,
            time_pool=cfg.edge_time_pool,
        )
        self.edge_stream.checkpointing = cfg.checkpointing
        self.lpe = LaplacianPE(n, cfg.pe_dim, cfg.pe.mode, cfg.pe.interval)
        self.gnn = GraphNetwork(d, cfg.pe_dim, cfg.gnn_alpha, cfg.gnn_hops)
        self.back_proj = nn.Conv1d(n * d, width, 1)
        self.decoder = Decoder(width, cfg.decoder_channels)

    def _stage(self, name: str, module: nn.Module, *args: Tensor) -> Tensor:
        """Run a stage, in float32 if autocast is on and the stage is in ``autocast_float32``,
        recomputed in backward under ``checkpointing``."""
        device = args[0].device.type
        if name in self.config.autocast_float32 and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return self._stage(name, module, *(a.float() for a in args)).float()
        if self.config.checkpointing and torch.is_grad_enabled():
            out: Tensor = checkpoint(module, *args, use_reentrant=False)
            return out
        result: Tensor = module(*args)
        return result

    def _graph_stage(self, nodes: Tensor, pe: Tensor, adjacency: Tensor) -> Tensor:
        """The GNN over all B * T' graphs at once; with checkpointing, one window at a time.

        SSGConv's per-edge messages are its largest temporaries (one row per edge and
        channel); recomputing window by window bounds them by one window whatever the batch.
        Shapes: nodes (B, T', N, D), pe (B, T', N, pe_dim), adjacency (B, T', N, N).
        """
        if not (self.config.checkpointing and torch.is_grad_enabled()):
            out: Tensor = self.gnn(nodes, pe, adjacency)
            return out
        parts = [
            checkpoint(self.gnn, *window, use_reentrant=False)
            for window in zip(nodes.split(1), pe.split(1), adjacency.split(1), strict=True)
        ]
        return torch.cat(parts)

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.config
        if x.ndim != 3 or x.shape[1] != cfg.n_channels or x.shape[2] % cfg.downsampling:
            raise ValueError(
                f"V3Detector expects (batch, {cfg.n_channels}, samples) with samples divisible "
                f"by {cfg.downsampling}; got {tuple(x.shape)} (pad or crop the window)"
            )
        batch, n, _ = x.shape
        features = self._stage("tcn", self.tcn, x)  # (B, C, T')
        n_steps = features.shape[-1]
        nodes = self.electrode_proj(features).view(batch, n, cfg.node_dim, n_steps)
        nodes = nodes.transpose(2, 3).reshape(batch * n, n_steps, cfg.node_dim)  # (B*N, T', D)
        nodes = run_stack(self.node_stream, nodes, cfg.checkpointing)
        nodes = nodes.view(batch, n, n_steps, cfg.node_dim)  # (B, N, T', D)
        adjacency = self.edge_stream(nodes)  # (B, T', N, N)
        pe = self.lpe(adjacency)  # (B, T', N, pe_dim)
        graph = self._graph_stage(nodes.transpose(1, 2), pe, adjacency)  # (B, T', N, D)
        graph = graph.permute(0, 2, 3, 1).reshape(batch, n * cfg.node_dim, n_steps)
        features = features + self.back_proj(graph)  # (B, C, T')
        logits: Tensor = self._stage("decoder", self.decoder, features)  # (B, T)
        return logits


def _as_config(kwargs: Mapping[str, Any]) -> V3Config:
    known = {f.name for f in fields(V3Config)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(
            f"model config: unknown key(s) {unknown} for V3Config; valid keys: {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key == "pe" and not isinstance(value, PEConfig):
            value = PEConfig(**dict(value))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            value = tuple(value)  # lists from YAML (plain or omegaconf ListConfig)
        values[key] = value
    return V3Config(**values)


def build_v3(**kwargs: Any) -> V3Detector:
    """Build a :class:`V3Detector` from plain keys (the Hydra target of ``conf/model/v3*.yaml``).

    Lists become tuples and ``pe`` (a mapping with ``mode`` and ``interval``) becomes a
    :class:`PEConfig`; unknown keys are an error naming the valid ones.
    """
    return V3Detector(_as_config(kwargs))

"""Dynamic Laplacian positional encoding of the per-timestep electrode graphs.

For every graph (one per batch element and time step) of weighted adjacency ``A``:

1. degrees ``d_i = sum_j A_ij + eps`` (``eps`` keeps isolated or all-zero graphs finite);
2. symmetric normalised Laplacian ``L = I - D^{-1/2} A D^{-1/2}``, plus a tiny, distinct
   diagonal nudge ``i * 1e-8`` on node ``i`` so that degenerate spectra (empty or
   disconnected graphs, whose eigenvalues repeat) still give one well-defined, reproducible
   eigenbasis instead of whatever rotation the solver happens to return;
3. ``torch.linalg.eigh`` in float64 (the nudge would drown in float32 rounding), batched over
   all graphs at once; keep the ``k`` eigenvectors of the smallest eigenvalues. On CPU
   torch runs a batched ``eigh`` on one thread, so large batches are split over
   ``torch.get_num_threads()`` threads (:func:`batched_eigenvectors`; the same LAPACK call
   per matrix, equal to float64 rounding);
4. sign convention: each eigenvector is flipped so that its entry of largest magnitude is
   positive (near-ties, within ``1e-6``, go to the lowest node index).

No gradient flows through the eigendecomposition (its gradient is unbounded at repeated
eigenvalues); the adjacency still learns through the GNN's edge weights.

Modes: ``dynamic`` decomposes every time step; ``semi`` decomposes only every ``interval``-th
step (steps 0, N, 2N, ...) and holds each result for the following ``N - 1`` steps, so only
``ceil(T / N)`` graphs per sequence are decomposed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor, nn

PE_MODES = ("dynamic", "semi")
_NUDGE = 1e-8  # diagonal tie-breaker per node index, far below any real eigenvalue gap
#: Below this many matrices per thread, :func:`batched_eigenvectors` stays on one thread:
#: on the benchmark CPU the PE stage of ``pe=semi`` at batch 2 (384 graphs) ran slower
#: split, that of ``pe=dynamic`` (1920 graphs) faster (bench_model times the PE stage).
_EIGH_MIN_PER_THREAD = 256


@dataclass
class PEConfig:
    """How often the Laplacian PE is recomputed (Hydra group ``conf/pe/``)."""

    mode: str = "dynamic"  # "dynamic": every time step; "semi": every `interval` steps
    interval: int = 5  # steps between decompositions in "semi" mode (ignored by "dynamic")

    def __post_init__(self) -> None:
        if self.mode not in PE_MODES:
            raise ValueError(
                f"pe.mode={self.mode!r} is not a PE mode; use one of {', '.join(PE_MODES)} "
                "(conf/pe/dynamic.yaml or conf/pe/semi.yaml)"
            )
        if self.interval < 1:
            raise ValueError(f"pe.interval={self.interval} must be >= 1 (steps between updates)")


def sign_canonical(vectors: Tensor, tol: float = 1e-6) -> Tensor:
    """Flip each column so that its entry of largest magnitude is positive.

    Shapes: ``vectors`` (..., N, k) -> (..., N, k); columns are the eigenvectors.
    """
    magnitude = vectors.abs()
    is_peak = magnitude >= magnitude.amax(dim=-2, keepdim=True) - tol  # (..., N, k)
    first_peak = is_peak.to(torch.uint8).argmax(dim=-2, keepdim=True)  # (..., 1, k)
    sign = torch.sign(vectors.gather(-2, first_peak))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return vectors * sign


def batched_eigenvectors(symmetric: Tensor) -> Tensor:
    """``torch.linalg.eigh(symmetric).eigenvectors``, on CPU split over the intra-op threads.

    torch's CPU ``eigh`` of a batch runs LAPACK one matrix after the other on a single
    thread. The batch is split into up to ``torch.get_num_threads()`` parts of at least
    :data:`_EIGH_MIN_PER_THREAD` matrices, run by as many Python threads (torch releases
    the GIL), which pays off for large batches such as 2 windows under ``pe=dynamic``
    (1920 graphs of 19 nodes); smaller batches stay on one thread. Each matrix goes through the same
    LAPACK call either way; the results agree to float64 rounding (about 1e-12: LAPACK's
    rounding already moves that much with how a batch is laid out), and a given input and
    thread count always gives the same result. The threads live for one call (a pool kept
    across calls would not survive a ``fork``).

    Shapes: (G, N, N) -> (G, N, N), eigenvectors in columns, ascending eigenvalues.
    """
    n_parts = min(torch.get_num_threads(), symmetric.shape[0] // _EIGH_MIN_PER_THREAD)
    if symmetric.device.type != "cpu" or n_parts < 2:
        return torch.linalg.eigh(symmetric).eigenvectors
    parts = symmetric.chunk(n_parts)
    with ThreadPoolExecutor(len(parts)) as pool:
        vectors = list(pool.map(lambda part: torch.linalg.eigh(part).eigenvectors, parts))
    return torch.cat(vectors)


def laplacian_eigenvectors(adjacency: Tensor, k: int, eps: float = 1e-6) -> Tensor:
    """The ``k`` sign-canonical eigenvectors of smallest eigenvalue of each graph's Laplacian.

    Shapes: ``adjacency`` (G, N, N), symmetric, non-negative -> (G, N, k), float32.
    Computed in float64, without gradient and outside autocast.
    """
    n_nodes = adjacency.shape[-1]
    with torch.no_grad(), torch.autocast(device_type=adjacency.device.type, enabled=False):
        weights = adjacency.detach().double()
        inv_sqrt_degree = (weights.sum(dim=-1) + eps).rsqrt()  # (G, N)
        normalised = inv_sqrt_degree[:, :, None] * weights * inv_sqrt_degree[:, None, :]
        eye = torch.eye(n_nodes, device=weights.device, dtype=weights.dtype)
        nudge = torch.diag(torch.arange(n_nodes, device=weights.device, dtype=weights.dtype))
        laplacian = eye - normalised + nudge * _NUDGE  # (G, N, N)
        vectors = batched_eigenvectors(laplacian)  # ascending eigenvalues
        return sign_canonical(vectors[..., :k]).float()


class LaplacianPE(nn.Module):
    """Laplacian positional encoding of a sequence of graphs (no parameters).

    Args:
        n_nodes: nodes per graph (19 electrodes).
        k: eigenvectors kept per node (``k <= n_nodes``).
        mode: ``"dynamic"`` or ``"semi"`` (see the module docstring).
        interval: steps between decompositions in ``semi`` mode.
        eps: added to every degree.

    Shapes: adjacency (B, T, N, N) -> PE (B, T, N, k) float32, without gradient.
    """

    def __init__(
        self, n_nodes: int, k: int, mode: str = "dynamic", interval: int = 5, eps: float = 1e-6
    ) -> None:
        super().__init__()
        if not 1 <= k <= n_nodes:
            raise ValueError(f"pe_dim={k} must be between 1 and the number of nodes ({n_nodes})")
        PEConfig(mode, interval)  # validates mode and interval with a clear message
        self.n_nodes, self.k, self.mode, self.interval, self.eps = n_nodes, k, mode, interval, eps

    def forward(self, adjacency: Tensor) -> Tensor:
        batch, n_steps, n_nodes, _ = adjacency.shape
        step = self.interval if self.mode == "semi" else 1
        held = adjacency[:, ::step]  # (B, ceil(T / step), N, N): only these are decomposed
        vectors = laplacian_eigenvectors(held.reshape(-1, n_nodes, n_nodes), self.k, self.eps)
        pe = vectors.view(batch, held.shape[1], n_nodes, self.k)
        if step > 1:
            pe = pe.repeat_interleave(step, dim=1)[:, :n_steps]  # (B, T, N, k)
        return pe

    def extra_repr(self) -> str:
        interval = f", interval={self.interval}" if self.mode == "semi" else ""
        return f"n_nodes={self.n_nodes}, k={self.k}, mode={self.mode!r}{interval}"

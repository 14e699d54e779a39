"""Edge stream: learned, time-varying electrode-pair weights and the sparse adjacency.

1. Pair feature: cosine similarity of the node-stream features of electrodes ``i`` and ``j``
   at every time step, for the 171 pairs ``i < j`` in :data:`brain_go_brr.data.channels.PAIRS`
   order (one batched Gram matrix per step; no loop over pairs).
2. Each pair's similarity sequence (optionally averaged over blocks of ``time_pool`` steps)
   is lifted 1 -> ``d_model``, run through a bidirectional
   Mamba2 stack (weights shared across pairs, batch ``B * 171``), projected ``d_model -> 1``
   and passed through softplus: a non-negative weight per pair and step (in float32, also
   under autocast).
3. Adjacency per step: the dense symmetric matrix of those weights (zero diagonal), keep the
   ``k`` strongest neighbours of each node, symmetrise the kept set (an edge survives when
   either end chose it), and give every node left without an edge a self-loop of weight 1.

Shapes: node features (B, N, T, D) -> pair weights (B, P, T) -> adjacency (B, T, N, N),
with ``N = 19`` electrodes and ``P = N (N - 1) / 2 = 171`` pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from brain_go_brr.models.mamba2 import BiMamba2Stack, Mamba2Config


def run_stack(stack: BiMamba2Stack, u: Tensor, checkpointing: bool) -> Tensor:
    """Run a :class:`BiMamba2Stack`, optionally recomputing each layer during backward.

    Checkpointing layer by layer (not the stack as a whole) means only one layer's
    activations are alive at a time in backward, which is what brings training memory down.
    Shapes: (batch, length, d_model) -> (batch, length, d_model).
    """
    if not (checkpointing and torch.is_grad_enabled()):
        return stack(u)
    for layer in stack.layers:
        u = checkpoint(layer, u, use_reentrant=False)
    return stack.norm(u)


def pair_cosine(nodes: Tensor, eps: float = 1e-6) -> Tensor:
    """Cosine similarity of every electrode pair ``i < j`` at every time step.

    Shapes: ``nodes`` (B, N, T, D) -> (B, P, T), pairs in row-major ``i < j`` order
    (the order of ``torch.triu_indices(N, N, 1)`` and of ``channels.PAIRS``).
    A zero feature vector has similarity 0 with everything (``eps`` guards the norm).
    """
    n_nodes = nodes.shape[1]
    unit = F.normalize(nodes, dim=-1, eps=eps).transpose(1, 2)  # (B, T, N, D)
    gram = unit @ unit.transpose(-1, -2)  # (B, T, N, N)
    rows, cols = torch.triu_indices(n_nodes, n_nodes, offset=1, device=nodes.device)
    return gram[:, :, rows, cols].transpose(1, 2)  # (B, P, T)


def pairs_to_dense(pair_weights: Tensor, n_nodes: int) -> Tensor:
    """Symmetric matrix with zero diagonal from upper-triangle pair values.

    Shapes: ``pair_weights`` (B, P, T) -> (B, T, N, N).
    """
    batch, n_pairs, n_steps = pair_weights.shape
    if n_pairs != n_nodes * (n_nodes - 1) // 2:
        raise ValueError(f"{n_pairs} pair weights do not match {n_nodes} nodes")
    rows, cols = torch.triu_indices(n_nodes, n_nodes, offset=1, device=pair_weights.device)
    flat_index = rows * n_nodes + cols  # (P,)
    upper = pair_weights.new_zeros(batch, n_steps, n_nodes * n_nodes)
    upper = upper.index_copy(-1, flat_index, pair_weights.transpose(1, 2))
    upper = upper.view(batch, n_steps, n_nodes, n_nodes)
    return upper + upper.transpose(-1, -2)


def topk_adjacency(weights: Tensor, k: int) -> Tensor:
    """Keep each node's ``k`` strongest edges, symmetrise, self-loop the isolated nodes.

    Shapes: ``weights`` (..., N, N) symmetric, non-negative, zero diagonal -> (..., N, N).
    Gradients flow to the kept weights; the selection itself is a hard mask.
    """
    n_nodes = weights.shape[-1]
    if not 1 <= k < n_nodes:
        raise ValueError(f"adjacency top-k={k} must be between 1 and {n_nodes - 1} (nodes - 1)")
    eye = torch.eye(n_nodes, dtype=torch.bool, device=weights.device)
    scores = weights.detach().masked_fill(eye, float("-inf"))
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    chosen.scatter_(-1, scores.topk(k, dim=-1).indices, True)
    kept = weights * (chosen | chosen.transpose(-1, -2))
    isolated = (kept.detach() == 0).all(dim=-1)  # (..., N)
    return kept + torch.diag_embed(isolated.to(kept.dtype))


class EdgeStream(nn.Module):
    """Pair similarities -> shared bidirectional Mamba2 -> softplus weights -> top-k adjacency.

    Args:
        n_nodes: electrodes per graph.
        d_model: width of the per-pair sequence model.
        n_layers: layers of the :class:`BiMamba2Stack`.
        mamba: settings of its blocks (``headdim`` must divide ``expand * d_model``).
        top_k: neighbours kept per node.
        time_pool: run the sequence model on block means of this many steps and hold each
            block's weights for its steps (1 = every step, as DESIGN.md specifies; larger
            values trade adjacency time resolution for speed, used by ``v3_tiny`` on CPU).

    Shapes: node features (B, N, T, D) -> adjacency (B, T, N, N).
    """

    def __init__(
        self,
        n_nodes: int = 19,
        d_model: int = 16,
        n_layers: int = 2,
        mamba: Mamba2Config | None = None,
        top_k: int = 3,
        time_pool: int = 1,
    ) -> None:
        super().__init__()
        mamba = mamba or Mamba2Config(d_state=8)
        if (mamba.expand * d_model) % mamba.headdim:
            raise ValueError(
                f"edge stream: headdim={mamba.headdim} must divide "
                f"expand*d_model={mamba.expand * d_model}"
            )
        if time_pool < 1:
            raise ValueError(
                f"edge stream: edge_time_pool={time_pool} must be >= 1 (1 = no pooling)"
            )
        self.n_nodes, self.top_k, self.time_pool = n_nodes, top_k, time_pool
        self.checkpointing = False  # set by the owning model (V3Config.checkpointing)
        self.lift = nn.Linear(1, d_model)
        self.mamba = BiMamba2Stack(d_model, n_layers, mamba)
        self.out = nn.Linear(d_model, 1)

    def forward(self, nodes: Tensor) -> Tensor:
        batch, _, n_steps, _ = nodes.shape
        similarity = pair_cosine(nodes)  # (B, P, T)
        pool = self.time_pool
        if pool > 1:  # block means; the last block is padded by repeating its last step
            similarity = F.pad(similarity, (0, -n_steps % pool), mode="replicate")
            similarity = F.avg_pool1d(similarity, pool)  # (B, P, ceil(T / pool))
        pooled_steps = similarity.shape[-1]
        lifted = self.lift(similarity.reshape(-1, pooled_steps, 1))  # (B*P, T/pool, d_model)
        mixed = run_stack(self.mamba, lifted, self.checkpointing)
        # The pair weights decide the top-k graph, so they are computed in float32 even
        # under autocast (one 16 -> 1 product): rounded to bfloat16 (8 bits), near-ties
        # between neighbours flipped, and that moved v3's probabilities most of all under
        # bfloat16 autocast (BENCHMARKS.md).
        with torch.autocast(mixed.device.type, enabled=False):
            weights = F.softplus(self.out(mixed.float())).view(batch, -1, pooled_steps)
        if pool > 1:
            weights = weights.repeat_interleave(pool, dim=-1)[..., :n_steps]  # (B, P, T)
        dense = pairs_to_dense(weights, self.n_nodes)  # (B, T, N, N)
        return topk_adjacency(dense, self.top_k)

    def extra_repr(self) -> str:
        return f"n_nodes={self.n_nodes}, top_k={self.top_k}, time_pool={self.time_pool}"

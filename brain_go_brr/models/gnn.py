"""Graph network over the per-timestep electrode graphs: two SSGConv layers.

All ``B * T`` graphs (19 nodes each) are processed as one disjoint union: node ``n`` of
graph ``g`` becomes node ``g * N + n``. The batched ``edge_index`` comes from ``nonzero`` on
the dense adjacency plus those offsets (tensor ops only, no loop over graphs).

SSGConv (Zhu & Koniusz, "Simple Spectral Graph Convolution", ICLR 2021), as implemented by
``torch_geometric.nn.SSGConv``::

    S   = D^-1/2 (A + I) D^-1/2          (self-loops added where a node has none)
    X'  = (alpha X + (1 - alpha) / K * sum_{k=1..K} S^k X) Theta

Layer 1 reads the node features concatenated with the Laplacian PE; layer 2 maps back to the
node width; the result is added to the input features (residual).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import SSGConv


def dense_to_edge_index(adjacency: Tensor) -> tuple[Tensor, Tensor]:
    """Edge list of the disjoint union of ``G`` dense graphs.

    Shapes: ``adjacency`` (G, N, N) -> ``edge_index`` (2, E) int64 (source, target) over
    ``G * N`` nodes, ``edge_weight`` (E,) (differentiable: gathered from ``adjacency``).
    Edges are the non-zero entries, ordered by graph, then source, then target.
    """
    n_nodes = adjacency.shape[-1]
    graph, source, target = (adjacency.detach() != 0).nonzero(as_tuple=True)
    edge_weight = adjacency[graph, source, target]
    offset = graph * n_nodes
    return torch.stack([offset + source, offset + target]), edge_weight


class GraphNetwork(nn.Module):
    """Two SSGConv layers over all time steps' graphs at once, PE into the first.

    Args:
        d_model: node feature width (in and out).
        pe_dim: width of the Laplacian PE concatenated to layer 1's input.
        alpha: SSGConv teleport probability.
        hops: SSGConv ``K`` (propagation steps).

    Shapes: nodes (B, T, N, d_model), pe (B, T, N, pe_dim), adjacency (B, T, N, N)
    -> (B, T, N, d_model).
    """

    def __init__(self, d_model: int, pe_dim: int, alpha: float = 0.05, hops: int = 2) -> None:
        super().__init__()
        self.conv1 = SSGConv(d_model + pe_dim, d_model, alpha=alpha, K=hops)
        self.conv2 = SSGConv(d_model, d_model, alpha=alpha, K=hops)

    def forward(self, nodes: Tensor, pe: Tensor, adjacency: Tensor) -> Tensor:
        batch, n_steps, n_nodes, d_model = nodes.shape
        graphs = adjacency.reshape(-1, n_nodes, n_nodes)
        features = torch.cat([nodes, pe.to(nodes.dtype)], dim=-1).reshape(
            -1, d_model + pe.shape[-1]
        )
        edge_index, edge_weight = dense_to_edge_index(graphs)
        hidden = F.gelu(self.conv1(features, edge_index, edge_weight))  # (B*T*N, d_model)
        out = self.conv2(hidden, edge_index, edge_weight)
        return nodes + out.view(batch, n_steps, n_nodes, d_model)

"""The graph network's CPU inference as sparse matrix products.

:func:`brain_go_brr.accel.accelerate` turns a built model's
:class:`~brain_go_brr.models.gnn.GraphNetwork` into a :class:`FastGraphNetwork`: same
parameters, whose forward, in CPU inference (no gradient needed), propagates through one
sparse CSR adjacency (SSGConv's ``message_and_aggregate``) instead of gathering one message
per edge, with the normalisation done once for both layers on the dense (G, N, N) blocks.
The result is the same as the edge-list path wherever :func:`sparse_propagation_matches`
holds (always for the top-k graphs of the edge stream); elsewhere, in training and on other
devices the plain forward runs. The CSR product runs in float32 even under autocast (it has
no bfloat16 kernel).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import SSGConv

from brain_go_brr.models.gnn import GraphNetwork


class FastGraphNetwork(GraphNetwork):
    """A :class:`GraphNetwork` whose CPU inference propagates through a sparse CSR matrix.

    Made by :func:`brain_go_brr.accel.accelerate` from a built network.
    Shapes: as :class:`GraphNetwork`.
    """

    def forward(self, nodes: Tensor, pe: Tensor, adjacency: Tensor) -> Tensor:
        batch, n_steps, n_nodes, d_model = nodes.shape
        graphs = adjacency.reshape(-1, n_nodes, n_nodes)
        needs_grad = torch.is_grad_enabled() and (
            nodes.requires_grad or pe.requires_grad or adjacency.requires_grad
            or any(p.requires_grad for p in self.parameters())
        )  # fmt: skip
        if needs_grad or graphs.device.type != "cpu" or not sparse_propagation_matches(graphs):
            return super().forward(nodes, pe, adjacency)
        features = torch.cat([nodes, pe.to(nodes.dtype)], dim=-1).reshape(
            -1, d_model + pe.shape[-1]
        )
        with torch.autocast("cpu", enabled=False):
            adj_t = normalized_sparse_adj_t(graphs.float())
            hidden = F.gelu(ssg_conv_normalized(self.conv1, features.float(), adj_t))
            out = ssg_conv_normalized(self.conv2, hidden, adj_t).to(nodes.dtype)
        return nodes + out.view(batch, n_steps, n_nodes, d_model)


def dense_to_sparse_adj_t(adjacency: Tensor) -> Tensor:
    """The disjoint union of ``G`` dense graphs, without self-loops, as one sparse CSR matrix.

    ``adj_t[g * N + j, g * N + i] = adjacency[g, i, j]`` for ``i != j``: row = target, column
    = source, the layout PyG's ``MessagePassing`` reads from a sparse ``edge_index`` (``flow``
    source to target). The diagonal is left out: on a sparse matrix PyG's ``gcn_norm`` adds a
    weight-1 self-loop to every node *on top of* any there (on an edge list it keeps an
    existing loop instead); see :func:`sparse_propagation_matches`. Tensor ops only.
    Shapes: ``adjacency`` (G, N, N) -> (G * N, G * N) ``torch.sparse_csr``.
    """
    n_nodes = adjacency.shape[-1]
    transposed = adjacency.transpose(-1, -2)
    eye = torch.eye(n_nodes, dtype=torch.bool, device=adjacency.device)
    return _block_diagonal_csr(transposed, (transposed.detach() != 0) & ~eye)


def _block_diagonal_csr(blocks: Tensor, kept: Tensor) -> Tensor:
    """The block-diagonal sparse CSR matrix of ``G`` blocks, holding the ``kept`` entries.

    Shapes: blocks (G, N, N) values, kept (G, N, N) bool -> (G N, G N). Tensor ops only.
    """
    n_graphs, n_nodes, _ = blocks.shape
    graph, row, col = kept.nonzero(as_tuple=True)  # row-major: already CSR order
    crow = torch.zeros(n_graphs * n_nodes + 1, dtype=torch.int64, device=blocks.device)
    crow[1:] = kept.sum(-1).reshape(-1).cumsum(0)
    size = n_graphs * n_nodes
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the ops used are tested
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow, graph * n_nodes + col, blocks[graph, row, col], (size, size),
            check_invariants=False,
        )  # fmt: skip


def normalized_sparse_adj_t(adjacency: Tensor) -> Tensor:
    """What PyG's ``gcn_norm`` makes of :func:`dense_to_sparse_adj_t`, computed on the dense
    blocks: ``S_t = D^-1/2 (A_offdiag + I)^T D^-1/2`` per graph, as one sparse CSR matrix.

    ``D`` holds each target's in-degree (row sums of the transposed blocks), as ``gcn_norm``
    computes it for a sparse ``adj_t``. Done on the (G, N, N) blocks this is a few
    element-wise ops; ``gcn_norm`` on the CSR matrix re-sorts its entries, once per SSGConv
    layer, a large share of the stage. Shapes: (G, N, N) -> (G N, G N).
    """
    n_nodes = adjacency.shape[-1]
    eye = torch.eye(n_nodes, dtype=torch.bool, device=adjacency.device)
    looped = adjacency.transpose(-1, -2).masked_fill(eye, 0.0) + eye  # (G, N, N), row = target
    inv_sqrt = looped.sum(-1).pow(-0.5)
    inv_sqrt = inv_sqrt.masked_fill(torch.isinf(inv_sqrt), 0.0)
    normalized = inv_sqrt[:, :, None] * looped * inv_sqrt[:, None, :]
    return _block_diagonal_csr(normalized, normalized.detach() != 0)


def ssg_conv_normalized(conv: SSGConv, x: Tensor, normalized_adj_t: Tensor) -> Tensor:
    """``conv(x, adj_t)`` for an ``adj_t`` already normalised (:func:`normalized_sparse_adj_t`).

    The steps of ``SSGConv.forward`` (uncached) after its ``gcn_norm``, on the layer's own
    ``propagate`` and ``lin``: ``lin(alpha x + (1 - alpha) / K sum_k S^k x)``.
    Shapes: x (G N, in) -> (G N, out).
    """
    if conv.cached:
        raise ValueError("ssg_conv_normalized: a cached SSGConv would reuse another graph")
    out = x * conv.alpha
    for _ in range(conv.K):
        x = conv.propagate(normalized_adj_t, x=x, edge_weight=None)
        out = out + (1 - conv.alpha) / conv.K * x
    result: Tensor = conv.lin(out)
    return result


def sparse_propagation_matches(adjacency: Tensor) -> bool:
    """Whether SSGConv gives the same result on :func:`dense_to_sparse_adj_t` as on the edge list.

    True unless a node has both a self-loop and an incoming edge: then the edge list keeps the
    loop's weight while the sparse path uses weight 1. An isolated node normalises to 1 either
    way, so the self-loops of :func:`~brain_go_brr.models.edge_stream.topk_adjacency` always qualify.
    Shapes: ``adjacency`` (G, N, N).
    """
    nonzero = adjacency.detach() != 0
    loop = nonzero.diagonal(dim1=-2, dim2=-1)  # (G, N)
    incoming = nonzero.sum(-2) - loop.long()  # off-diagonal in-degree of each target
    return not bool((loop & (incoming > 0)).any())

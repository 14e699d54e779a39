"""Edge stream pieces (pair features, adjacency) and the batched SSGConv graph network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brain_go_brr import accel
from brain_go_brr.accel.graph import (
    dense_to_sparse_adj_t,
    normalized_sparse_adj_t,
    sparse_propagation_matches,
)
from brain_go_brr.data.channels import PAIRS
from brain_go_brr.models.edge_stream import pair_cosine, pairs_to_dense, topk_adjacency
from brain_go_brr.models.gnn import GraphNetwork, dense_to_edge_index
from brain_go_brr.models.mamba2 import Mamba2Config


def test_pair_cosine_follows_the_channels_pairs_order() -> None:
    nodes = torch.randn(2, 19, 5, 8, generator=torch.Generator().manual_seed(0))
    nodes[1, 4] = 0  # a silent electrode: similarity 0, not NaN
    similarity = pair_cosine(nodes)  # (2, 171, 5)
    assert similarity.shape == (2, 171, 5)
    expected = torch.stack(
        [F.cosine_similarity(nodes[:, i], nodes[:, j], dim=-1, eps=1e-6) for i, j in PAIRS], dim=1
    )
    torch.testing.assert_close(similarity, expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(similarity[1, PAIRS.index((4, 9))], torch.zeros(5))


def test_pairs_to_dense_is_symmetric_with_zero_diagonal() -> None:
    weights = torch.arange(1, 172, dtype=torch.float32).view(1, 171, 1)
    dense = pairs_to_dense(weights, 19)[0, 0]  # (19, 19)
    assert torch.equal(dense, dense.T)
    assert torch.equal(dense.diagonal(), torch.zeros(19))
    for index, (i, j) in enumerate(PAIRS):
        assert dense[i, j] == index + 1


def test_topk_keeps_each_nodes_strongest_edges_symmetrically() -> None:
    # 5 nodes, k=1: node 0's best is 1; 1's best is 0; 2's best is 1; 3's best is 4; 4's is 3
    weights = torch.tensor(
        [
            [0.0, 0.9, 0.1, 0.2, 0.3],
            [0.9, 0.0, 0.8, 0.1, 0.1],
            [0.1, 0.8, 0.0, 0.2, 0.1],
            [0.2, 0.1, 0.2, 0.0, 0.7],
            [0.3, 0.1, 0.1, 0.7, 0.0],
        ]
    )
    adjacency = topk_adjacency(weights, k=1)
    expected = torch.zeros(5, 5)
    for i, j in [(0, 1), (1, 2), (3, 4)]:
        expected[i, j] = expected[j, i] = weights[i, j]
    torch.testing.assert_close(adjacency, expected)


def test_topk_adjacency_on_random_weights_and_isolated_nodes() -> None:
    generator = torch.Generator().manual_seed(1)
    pair_weights = torch.rand(2, 171, 4, generator=generator)
    pair_weights[1, :, 2] = 0  # an all-zero step: every node is isolated
    adjacency = topk_adjacency(pairs_to_dense(pair_weights, 19), k=3)  # (2, 4, 19, 19)
    assert torch.equal(adjacency, adjacency.transpose(-1, -2))
    off_diagonal = adjacency * (1 - torch.eye(19))
    degree = (off_diagonal > 0).sum(-1)
    live = torch.ones(2, 4, dtype=torch.bool)
    live[1, 2] = False
    assert bool((degree[live] >= 3).all())
    # every kept edge is among the top 3 of at least one of its ends
    dense = pairs_to_dense(pair_weights, 19)
    third = dense.topk(3, dim=-1).values[..., -1:]  # (2, 4, 19, 1)
    kept = off_diagonal > 0
    in_top = dense >= third
    assert bool((~kept | in_top | in_top.transpose(-1, -2)).all())
    assert torch.equal(adjacency.diagonal(dim1=-2, dim2=-1)[live], torch.zeros(int(live.sum()), 19))
    assert torch.equal(adjacency[1, 2], torch.eye(19))


def test_edge_index_equals_a_per_graph_loop_reference() -> None:
    generator = torch.Generator().manual_seed(2)
    adjacency = torch.rand(3, 5, 5, generator=generator) * (
        torch.rand(3, 5, 5, generator=generator) > 0.6
    )
    edge_index, edge_weight = dense_to_edge_index(adjacency)
    sources, targets, weights = [], [], []
    for graph in range(3):
        for i in range(5):
            for j in range(5):
                if adjacency[graph, i, j] != 0:
                    sources.append(graph * 5 + i)
                    targets.append(graph * 5 + j)
                    weights.append(adjacency[graph, i, j])
    assert edge_index.tolist() == [sources, targets]
    torch.testing.assert_close(edge_weight, torch.stack(weights))


def _dense_ssg(layer: torch.nn.Module, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """SSGConv by dense matrices: (alpha X + (1-alpha)/K sum_k S^k X) W + b, S = D^-1/2 (A+I) D^-1/2."""
    n = adjacency.shape[-1]
    has_loop = adjacency.diagonal(dim1=-2, dim2=-1) != 0
    with_loops = adjacency + torch.diag_embed((~has_loop).float())
    inv_sqrt = with_loops.sum(-1).rsqrt()
    propagate = inv_sqrt[..., :, None] * with_loops * inv_sqrt[..., None, :]  # (G, N, N)
    x = x.view(-1, n, x.shape[-1])  # (G, N, F)
    out, power = layer.alpha * x, x
    for _ in range(layer.K):
        power = propagate.transpose(-1, -2) @ power
        out = out + (1 - layer.alpha) / layer.K * power
    return layer.lin(out).reshape(-1, layer.lin.out_channels)


@pytest.mark.parametrize(
    ("grad", "fast"), [(True, False), (False, False), (True, True), (False, True)],
    ids=["plain-train", "plain-infer", "accel-train", "accel-infer"],
)  # fmt: skip
def test_graph_network_equals_dense_matrix_propagation(grad: bool, fast: bool) -> None:
    """Every path: the plain edge list, and the accelerated network (sparse CSR in CPU
    inference, the edge list when gradients are on)."""
    torch.manual_seed(3)
    gnn = accel.accelerate(GraphNetwork(d_model=6, pe_dim=3, alpha=0.05, hops=2), enabled=fast)
    adjacency = torch.zeros(1, 2, 4, 4)
    adjacency[0, 0, 0, 1] = adjacency[0, 0, 1, 0] = 0.5  # step 0: path 0-1-2, node 3 isolated
    adjacency[0, 0, 1, 2] = adjacency[0, 0, 2, 1] = 2.0
    adjacency[0, 0, 3, 3] = 1.0  # its self-loop, as topk_adjacency would give it
    adjacency[0, 1] = torch.tensor(  # step 1: a weighted, asymmetric-degree graph
        [[0, 1.0, 0.3, 0], [1.0, 0, 0, 0.2], [0.3, 0, 0, 1.5], [0, 0.2, 1.5, 0]]
    )
    nodes = torch.randn(1, 2, 4, 6)
    pe = torch.randn(1, 2, 4, 3)
    with torch.set_grad_enabled(grad):
        out = gnn(nodes, pe, adjacency)
    flat_adjacency = adjacency.view(2, 4, 4)
    hidden = F.gelu(_dense_ssg(gnn.conv1, torch.cat([nodes, pe], -1).view(-1, 9), flat_adjacency))
    expected = nodes + _dense_ssg(gnn.conv2, hidden, flat_adjacency).view(1, 2, 4, 6)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_sparse_adjacency_is_the_transposed_block_diagonal() -> None:
    generator = torch.Generator().manual_seed(4)
    adjacency = torch.rand(3, 5, 5, generator=generator) * (
        torch.rand(3, 5, 5, generator=generator) > 0.6
    )
    adj_t = dense_to_sparse_adj_t(adjacency).to_dense()  # (15, 15)
    off_diagonal = adjacency * ~torch.eye(5, dtype=torch.bool)  # loops are left to gcn_norm
    assert torch.equal(adj_t, torch.block_diag(*off_diagonal.transpose(-1, -2)))


def test_normalized_adjacency_is_what_gcn_norm_gives() -> None:
    """Our dense-block normalisation against PyG's gcn_norm on the sparse matrix, on directed
    graphs with isolated nodes and self-loops."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    generator = torch.Generator().manual_seed(7)
    adjacency = torch.rand(4, 6, 6, generator=generator) * (
        torch.rand(4, 6, 6, generator=generator) > 0.6
    )
    adjacency[1, 3, :] = adjacency[1, :, 3] = 0.0
    adjacency[1, 3, 3] = 1.0  # isolated node with a self-loop
    adjacency[2] = 0.0  # a graph without edges
    expected, _ = gcn_norm(
        dense_to_sparse_adj_t(adjacency), None, 24, False, True, dtype=torch.float32
    )
    got = normalized_sparse_adj_t(adjacency)
    torch.testing.assert_close(got.to_dense(), expected.to_dense(), atol=1e-7, rtol=1e-6)


def test_sparse_propagation_matches_only_without_loops_on_connected_nodes() -> None:
    adjacency = torch.zeros(1, 3, 3)
    adjacency[0, 0, 1] = adjacency[0, 1, 0] = 0.5
    adjacency[0, 2, 2] = 1.0  # isolated node with its self-loop: fine
    assert sparse_propagation_matches(adjacency)
    adjacency[0, 0, 0] = 0.3  # a loop on a node with an incoming edge: not equivalent
    assert not sparse_propagation_matches(adjacency)


def test_sparse_inference_matches_the_edge_list_on_directed_graphs_and_under_autocast() -> None:
    """Directed weights tell a transposed adjacency from the right one; bf16 autocast too."""
    torch.manual_seed(5)
    gnn = GraphNetwork(d_model=8, pe_dim=4).eval()
    generator = torch.Generator().manual_seed(6)
    adjacency = torch.rand(2, 3, 6, 6, generator=generator)
    adjacency = adjacency * (torch.rand(2, 3, 6, 6, generator=generator) > 0.5)  # asymmetric
    adjacency = adjacency * ~torch.eye(6, dtype=torch.bool)
    adjacency[0, 1, 2] = 0.0
    adjacency[0, 1, :, 2] = 0.0
    adjacency[0, 1, 2, 2] = 0.7  # node 2 of graph (0, 1): no incoming edge, a self-loop
    assert sparse_propagation_matches(adjacency)
    nodes, pe = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 4)
    with torch.no_grad():
        expected = gnn(nodes, pe, adjacency)
        accel.accelerate(gnn, kernels=["graph"])
        torch.testing.assert_close(gnn(nodes, pe, adjacency), expected, atol=1e-6, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = gnn(nodes, pe, adjacency)  # propagated in float32 (no bf16 CSR product)
    assert mixed.dtype == nodes.dtype
    torch.testing.assert_close(mixed, expected, atol=5e-2, rtol=5e-2)


def test_edge_time_pool_holds_the_adjacency_within_blocks() -> None:
    from brain_go_brr.models.edge_stream import EdgeStream

    torch.manual_seed(4)
    stream = EdgeStream(
        d_model=4, n_layers=1, mamba=Mamba2Config(d_state=4, headdim=4), time_pool=4
    )
    nodes = torch.randn(1, 19, 10, 6)  # 10 steps: blocks 0-3, 4-7 and a padded 8-9
    adjacency = stream(nodes)
    assert adjacency.shape == (1, 10, 19, 19)
    for block in (range(0, 4), range(4, 8), range(8, 10)):
        for step in block:
            assert torch.equal(adjacency[0, step], adjacency[0, block[0]])
    assert not torch.equal(adjacency[0, 0], adjacency[0, 4])


def test_pair_weights_are_float32_under_bfloat16_autocast() -> None:
    """The top-k graph is chosen from float32 pair weights even under autocast: the output
    projection reads float32 features and writes float32 weights."""
    from brain_go_brr.models.edge_stream import EdgeStream

    torch.manual_seed(5)
    stream = EdgeStream(d_model=4, n_layers=1, mamba=Mamba2Config(d_state=4, headdim=4)).eval()
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    stream.out.register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    nodes = torch.randn(1, 19, 12, 6)
    with torch.no_grad():
        expected = stream(nodes)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = stream(nodes)
    assert seen == [(torch.float32, torch.float32)] * 2
    assert mixed.dtype == torch.float32
    # the Mamba stack's bfloat16 products still move the weights a little (and may flip a tie)
    kept = (mixed != 0) & (expected != 0)
    assert kept.float().mean() > 0.9 * (expected != 0).float().mean()
    torch.testing.assert_close(mixed[kept], expected[kept], atol=2e-2, rtol=2e-2)

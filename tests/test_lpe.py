"""Laplacian PE: eigenvectors, sign convention, degenerate graphs, semi-dynamic schedule."""

from __future__ import annotations

import pytest
import torch

from brain_go_brr.models.laplacian_pe import (
    LaplacianPE,
    batched_eigenvectors,
    laplacian_eigenvectors,
    sign_canonical,
)


def _random_graphs(n_graphs: int, n_nodes: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(n_graphs, n_nodes, n_nodes, generator=generator)
    weights = (weights + weights.transpose(-1, -2)) / 2
    return weights * (1 - torch.eye(n_nodes))  # (G, N, N), zero diagonal


def test_eigenvectors_are_orthonormal_eigenvectors_of_the_normalised_laplacian() -> None:
    adjacency = _random_graphs(4, 19).double()
    vectors = laplacian_eigenvectors(adjacency, k=16)  # (4, 19, 16)
    assert vectors.shape == (4, 19, 16) and vectors.dtype == torch.float32
    vectors = vectors.double()
    gram = vectors.transpose(-1, -2) @ vectors
    torch.testing.assert_close(
        gram, torch.eye(16, dtype=torch.float64).expand(4, 16, 16), atol=1e-5, rtol=0
    )
    inv_sqrt = adjacency.sum(-1).rsqrt()
    laplacian = (
        torch.eye(19, dtype=torch.float64) - inv_sqrt[:, :, None] * adjacency * inv_sqrt[:, None, :]
    )
    expected_values = torch.linalg.eigvalsh(laplacian)[:, :16]  # ascending: the k smallest
    rayleigh = (vectors * (laplacian @ vectors)).sum(-2)  # (4, 16): v^T L v
    torch.testing.assert_close(rayleigh, expected_values, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        laplacian @ vectors, vectors * rayleigh[:, None, :], atol=1e-5, rtol=0
    )


def test_sign_convention_makes_the_largest_entry_positive_and_ignores_input_sign() -> None:
    vectors = laplacian_eigenvectors(_random_graphs(3, 19, seed=1), k=16)
    peak = vectors.abs().argmax(dim=-2, keepdim=True)
    assert bool((vectors.gather(-2, peak) > 0).all())
    flips = torch.tensor([1.0, -1.0] * 8)
    torch.testing.assert_close(sign_canonical(vectors * flips), vectors)
    # a tie in magnitude goes to the lowest index
    tied = torch.tensor([[-0.6], [0.6], [0.2]])
    torch.testing.assert_close(sign_canonical(tied), torch.tensor([[0.6], [-0.6], [-0.2]]))


def test_same_graph_gives_the_same_pe_every_time() -> None:
    adjacency = _random_graphs(5, 19, seed=2)
    first = laplacian_eigenvectors(adjacency, 16)
    second = laplacian_eigenvectors(adjacency.clone(), 16)
    assert torch.equal(first, second)


@pytest.mark.parametrize("kind", ["all_zero", "two_components", "isolated_node", "single_edge"])
def test_degenerate_graphs_give_finite_orthonormal_pe(kind: str) -> None:
    adjacency = torch.zeros(1, 19, 19)
    if kind == "two_components":
        adjacency[0, :10, :10] = 1.0
        adjacency[0, 10:, 10:] = 1.0
        adjacency[0] *= 1 - torch.eye(19)
    elif kind == "isolated_node":
        adjacency[0] = _random_graphs(1, 19)[0]
        adjacency[0, 7, :] = 0
        adjacency[0, :, 7] = 0
    elif kind == "single_edge":
        adjacency[0, 0, 1] = adjacency[0, 1, 0] = 1e-30
    vectors = laplacian_eigenvectors(adjacency, 16)
    assert torch.isfinite(vectors).all()
    gram = vectors[0].T @ vectors[0]
    torch.testing.assert_close(gram, torch.eye(16), atol=1e-5, rtol=0)
    assert torch.equal(vectors, laplacian_eigenvectors(adjacency.clone(), 16))


def test_pe_has_no_gradient_even_when_the_adjacency_has_one() -> None:
    adjacency = _random_graphs(2 * 3, 19).view(2, 3, 19, 19).requires_grad_(True)
    pe = LaplacianPE(19, 16)(adjacency)
    assert pe.shape == (2, 3, 19, 16)
    assert not pe.requires_grad


class _CountingEigh:
    """Stands in for torch.linalg.eigh and counts the matrices it decomposes."""

    def __init__(self) -> None:
        self.original = torch.linalg.eigh
        self.matrices = 0

    def __call__(self, matrix: torch.Tensor, *args: object, **kwargs: object) -> object:
        self.matrices += matrix.reshape(-1, *matrix.shape[-2:]).shape[0]
        return self.original(matrix, *args, **kwargs)


def test_semi_mode_decomposes_only_every_interval_steps_and_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch, n_steps, interval = 2, 23, 5
    adjacency = _random_graphs(batch * n_steps, 19, seed=3).view(batch, n_steps, 19, 19)
    counter = _CountingEigh()
    monkeypatch.setattr(torch.linalg, "eigh", counter)
    dynamic = LaplacianPE(19, 16, mode="dynamic")(adjacency)
    assert counter.matrices == batch * n_steps
    counter.matrices = 0
    semi = LaplacianPE(19, 16, mode="semi", interval=interval)(adjacency)
    assert counter.matrices == batch * 5  # steps 0, 5, 10, 15, 20
    assert semi.shape == dynamic.shape == (batch, n_steps, 19, 16)
    for step in range(n_steps):
        held = step - step % interval
        torch.testing.assert_close(semi[:, step], dynamic[:, held])


def test_bad_pe_settings_are_rejected_with_the_fix() -> None:
    with pytest.raises(ValueError, match="conf/pe"):
        LaplacianPE(19, 16, mode="sometimes")
    with pytest.raises(ValueError, match="interval"):
        LaplacianPE(19, 16, mode="semi", interval=0)
    with pytest.raises(ValueError, match="pe_dim=20"):
        LaplacianPE(19, 20)


@pytest.mark.parametrize("threads", [2, 3, 64])
def test_threaded_eigh_gives_the_single_call_result(threads: int) -> None:
    """The batch split over threads (CPU) gives what one batched eigh gives, to float64
    rounding (LAPACK's rounding already depends on how a batch is laid out)."""
    weights = _random_graphs(1001, 19, seed=5).double()  # not a multiple of the threads
    symmetric = torch.eye(19, dtype=torch.float64) - weights / 19
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = batched_eigenvectors(symmetric)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(got, torch.linalg.eigh(symmetric).eigenvectors, atol=1e-10, rtol=0)


def test_threaded_eigh_uses_at_most_one_thread_per_block_of_graphs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many intra-op threads and a modest batch: parts of at least _EIGH_MIN_PER_THREAD."""
    from brain_go_brr.models import laplacian_pe

    sizes: list[int] = []
    original = torch.linalg.eigh

    def recording_eigh(matrix: torch.Tensor) -> object:
        sizes.append(matrix.shape[0])
        return original(matrix)

    monkeypatch.setattr(torch.linalg, "eigh", recording_eigh)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    symmetric = torch.eye(19, dtype=torch.float64).repeat(1001, 1, 1)
    batched_eigenvectors(symmetric)
    assert sorted(sizes) == [333, 334, 334]  # 1001 // 256 = 3 parts
    assert min(sizes) >= laplacian_pe._EIGH_MIN_PER_THREAD

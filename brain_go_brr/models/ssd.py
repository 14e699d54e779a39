"""The Mamba2 state-space scan: a chunked SSD scan and a sequential float64 reference.

Both compute the same selective state-space recurrence, per head ``h`` of ``nheads``::

    state_t = exp(dt_t * A_h) * state_{t-1} + dt_t * outer(x_t, B_t)     # (headdim, d_state)
    y_t     = state_t @ C_t + D_h * x_t                                    # (headdim,)

with ``state_{-1} = 0``. Heads share ``B`` and ``C`` within a group: head ``h`` uses group
``h // (nheads // ngroups)``, as in ``mamba_ssm``.

:func:`ssd_scan` is the fast path (state-space duality, Dao & Gu 2024, "Transformers are
SSMs"): the sequence is cut into chunks of ``chunk_size`` steps and

1. inside each chunk, outputs are a masked quadratic form
   ``y = (C B^T ∘ L) (x * dt)`` with the decay matrix ``L[i, j] = exp(Σ_{j<k≤i} dt_k A)``
   for ``i ≥ j`` (a segment sum built from a cumulative sum, masked above the diagonal);
2. each chunk's contribution to the state at its end is one matmul over the chunk;
3. states pass between chunks with the same segment-sum construction over chunk totals;
4. the state entering each chunk is read out by ``C`` and decayed to each step.

No step loops over time in Python; a length that is not a multiple of ``chunk_size`` is
zero-padded at the end (``dt = 0`` there, so the padding neither decays nor feeds the
state, and causality keeps it out of the real outputs). Running sums of log-decays are
kept in float64 (they are small: one number per step and head); everything else stays in
the input dtype (float32 in training).

:func:`ssd_scan_reference` runs the recurrence one step at a time in float64; it is slow
and exists to check the fast paths (ours and ``mamba_ssm``'s).

Shapes (both functions)::

    x:  (batch, length, nheads, headdim)
    dt: (batch, length, nheads)      step sizes, already positive (after softplus)
    A:  (nheads,)                    negative decay rates (-exp(A_log))
    B:  (batch, length, ngroups, d_state)
    C:  (batch, length, ngroups, d_state)
    D:  (nheads,) or None            skip connection
    ->  y: (batch, length, nheads, headdim)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_shapes(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[int, int]:
    """Validate the scan inputs; returns ``(ngroups, heads_per_group)``."""
    if x.dim() != 4:
        raise ValueError(
            f"ssd scan: x must be (batch, length, nheads, headdim), got {tuple(x.shape)}"
        )
    batch, length, nheads, _ = x.shape
    if dt.shape != (batch, length, nheads):
        raise ValueError(
            f"ssd scan: dt must be (batch, length, nheads) = {(batch, length, nheads)}, "
            f"got {tuple(dt.shape)}"
        )
    if A.shape != (nheads,):
        raise ValueError(f"ssd scan: A must be (nheads,) = ({nheads},), got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[:2] != (batch, length) or B.shape != C.shape:
        raise ValueError(
            "ssd scan: B and C must both be (batch, length, ngroups, d_state) with "
            f"batch, length = {batch}, {length}; got B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    ngroups = B.shape[2]
    if nheads % ngroups:
        raise ValueError(f"ssd scan: nheads ({nheads}) must be a multiple of ngroups ({ngroups})")
    return ngroups, nheads // ngroups


#: Elements of one block of (q, q) decay matrices in the within-chunk step (about 2 MB of
#: float32): small enough to stay in cache and to be reused by the allocator from block to
#: block. Fresh large allocations are page-faulted in at every call, which on small CPUs
#: costs more than the arithmetic.
_BLOCK_ELEMENTS = 1 << 19


def _decay_matrix(acs: Tensor, dtype: torch.dtype, upper: Tensor) -> Tensor:
    """``exp(acs[..., i] - acs[..., j])`` for ``i >= j``, zero above the diagonal.

    ``acs`` (..., T) is a float64 running sum of log-decays, so entry ``(i, j)`` is the decay
    over steps ``j+1 .. i``. Rounding ``acs`` to float32 first would cost ``eps * |acs|`` in
    every difference (``|acs|`` reaches hundreds within a chunk), so it is split into a head
    and a tail in ``dtype``: ``(hi_i - hi_j) + (lo_i - lo_j)`` is then accurate to
    ``eps * |difference|``. ``upper`` (T, T) is the boolean mask above the diagonal, applied
    before ``exp`` because the differences there are positive and could overflow.
    Returns (..., T, T) in ``dtype``.
    """
    hi = acs.to(dtype)
    lo = (acs - hi.double()).to(dtype)
    seg = hi.unsqueeze(-1) - hi.unsqueeze(-2)  # (..., T, T): row i minus column j
    seg += lo.unsqueeze(-1)
    seg -= lo.unsqueeze(-2)
    return seg.masked_fill_(upper, float("-inf")).exp_()


class _WithinChunk(torch.autograd.Function):
    """Step 1 of the scan, ``y = ((C B^T) ∘ L) xdt`` for every chunk and head.

    The (q, q) matrices ``L`` and ``(C B^T) ∘ L`` exist only for a block of chunks at a
    time, in forward and again (recomputed) in backward, so nothing of size
    (chunks, heads, q, q) is ever allocated or kept for the backward pass. The backward
    returns the gradient of the per-step log-decays ``a`` without cancellation.

    Shapes (``n`` = batch * chunks): a (n, h, q), acs (n, h, q) float64 = cumsum(a) (no
    gradient taken here), scores (n, g, q, q) = C B^T, xdt (n, h, q, p) -> y (n, h, q, p).
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, acs: Tensor, scores: Tensor, xdt: Tensor) -> Tensor:
        n, h, q, _ = xdt.shape
        g = scores.shape[1]
        upper = torch.ones(q, q, dtype=torch.bool, device=xdt.device).triu(1)
        y = torch.empty_like(xdt)
        step = max(1, _BLOCK_ELEMENTS // (h * q * q))
        for s in range(0, n, step):
            mixer = _decay_matrix(acs[s : s + step], xdt.dtype, upper)  # (blk, h, q, q)
            mixer.view(-1, g, h // g, q, q).mul_(scores[s : s + step].unsqueeze(2))
            torch.matmul(mixer, xdt[s : s + step], out=y[s : s + step])
        ctx.save_for_backward(acs, scores, xdt)
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, None, Tensor, Tensor]:
        acs, scores, xdt = ctx.saved_tensors
        n, h, q, _ = xdt.shape
        g = scores.shape[1]
        upper = torch.ones(q, q, dtype=torch.bool, device=xdt.device).triu(1)
        before = (~upper).T.to(xdt.dtype).triu_(1)  # [j < k]
        dy = dy.contiguous()
        dxdt, dscores = torch.empty_like(xdt), torch.empty_like(scores)
        da = xdt.new_empty(n, h, q)
        step = max(1, _BLOCK_ELEMENTS // (h * q * q))
        for s in range(0, n, step):
            blk = slice(s, s + step)
            decay = _decay_matrix(acs[blk], xdt.dtype, upper)  # (blk, h, q, q)
            mixer = decay.view(-1, g, h // g, q, q) * scores[blk].unsqueeze(2)
            mixer = mixer.view(decay.shape)
            torch.matmul(mixer.transpose(-1, -2), dy[blk], out=dxdt[blk])
            dmixer = dy[blk] @ xdt[blk].transpose(-1, -2)  # (blk, h, q, q)
            torch.sum((dmixer * decay).view(-1, g, h // g, q, q), dim=2, out=dscores[blk])
            # d mixer / d seg = mixer (an exponential), and seg[i, j] = a[j+1] + ... + a[i],
            # so da[k] sums dseg over the rectangle i >= k > j. Summing that rectangle
            # directly, rather than as row sums minus column sums, avoids a cancellation
            # that costs float32 about four digits in the gradient of A.
            dseg = dmixer.mul_(mixer)
            torch.sum((dseg @ before).tril_(), dim=-2, out=da[blk])
        return da, None, dscores, dxdt


#: Largest total log-decay a chunk may have for the factored within-chunk step: its
#: factors ``exp(±(acs - acs_mid))``, taken about the chunk's middle step, then stay within
#: ``e^60 ~ 1e26`` in float32 (whose limit is ``e^88``), with room for the inputs' scale.
FACTORED_MAX_LOG_DECAY = 120.0


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    chunk_size: int = 64,
    method: str = "auto",
) -> Tensor:
    """Chunked SSD scan (see the module docstring for the recurrence and the shapes).

    ``method`` picks how the within-chunk step is computed; both give the same results to
    float32 rounding (the tests hold both to the float64 reference):

    - ``"factored"``: the decay ``L[i, j] = exp(acs_i - m) exp(m - acs_j)`` (``m``: the
      running sum at the chunk's middle step) is split into a per-step factor on each side, so the masked quadratic form is one matmul per group
      (shared by its heads) and no (chunks, heads, q, q) decay matrix exists; the fast path
      on CPU. Valid while every chunk's total log-decay stays within
      :data:`FACTORED_MAX_LOG_DECAY` (beyond it the factors overflow float32).
    - ``"blocked"``: builds each head's decay matrix from differences of running sums, a
      block of chunks at a time (:class:`_WithinChunk`); exact for any decay.
    - ``"auto"`` (default): ``"factored"`` at ``chunk_size`` or, if some chunk decays too
      much, at a half or a quarter of it; ``"blocked"`` at ``chunk_size`` if none fits.
    """
    _check_shapes(x, dt, A, B, C)
    if chunk_size < 1:
        raise ValueError(f"ssd scan: chunk_size must be >= 1, got {chunk_size}")
    if method not in ("auto", "factored", "blocked"):
        raise ValueError(f"ssd scan: method must be auto, factored or blocked, got {method!r}")
    if method == "auto":
        method = "blocked"
        log_decay = (dt * A).detach()  # (b, l, h), <= 0
        sizes = [chunk_size] + [size for size in (chunk_size // 2, chunk_size // 4) if size >= 4]
        for size in sizes:
            if _max_chunk_log_decay(log_decay, size) <= FACTORED_MAX_LOG_DECAY:
                method, chunk_size = "factored", size
                break
    return _chunked_scan(x, dt, A, B, C, D, chunk_size, factored=method == "factored")


def _max_chunk_log_decay(log_decay: Tensor, chunk_size: int) -> float:
    """Largest total log-decay ``-sum(dt * A)`` of any chunk; ``log_decay`` (b, l, h)."""
    if log_decay.numel() == 0:
        return 0.0
    padded = F.pad(log_decay, (0, 0, 0, (-log_decay.shape[1]) % chunk_size))
    totals = padded.unflatten(1, (-1, chunk_size)).sum(2)  # (b, chunks, h)
    return float(-totals.min())


def _chunked_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    chunk_size: int,
    factored: bool,
) -> Tensor:
    """:func:`ssd_scan` with the method and chunk length settled (shapes already checked)."""
    ngroups = B.shape[2]
    heads_per_group = x.shape[2] // ngroups
    batch, length, nheads, headdim = x.shape
    d_state = B.shape[-1]

    pad = (-length) % chunk_size
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    # Short names for the einsum-style comments: b batch, c chunks, q steps per chunk,
    # h heads, p headdim, g groups, n d_state.
    b, c, q = batch, (length + pad) // chunk_size, chunk_size
    h, p, g, n = nheads, headdim, ngroups, d_state
    hp = heads_per_group * p

    # Per-step log-decays and their running sum inside each chunk, the latter in float64
    # (it is small; see _decay_matrix).
    a = (dt * A).view(b, c, q, h)  # (b, c, q, h), <= 0
    acs = a.double().cumsum(2)  # (b, c, q, h), non-increasing along q
    Bg = B.view(b, c, q, g, n).transpose(2, 3)  # (b, c, g, q, n)
    Cg = C.view(b, c, q, g, n).transpose(2, 3)  # (b, c, g, q, n)
    if factored:
        # Factors about the middle step m of each chunk: decay_in_i = exp(acs_i - m) and
        # grow_j = exp(m - acs_j), so decay_in_i * grow_j = L[i, j] and both stay within
        # exp(+-span / 2). The result does not depend on m, so m is a constant for autograd
        # (its paths would cancel exactly, but only up to rounding).
        middle = acs[:, :, (q - 1) // 2].detach().unsqueeze(2)  # (b, c, 1, h)
        centred = acs - middle
        decay_in = centred.exp().to(x.dtype)  # (b, c, q, h)
        grow = (-centred).exp().to(x.dtype)  # (b, c, q, h)
        # xs_j = grow_j dt_j x_j: inputs scaled up by the decay they will undergo.
        xs = x.reshape(b, c, q, h, p) * (dt.reshape(b, c, q, h) * grow).unsqueeze(-1)
        xs_g = xs.view(b, c, q, g, hp).transpose(2, 3)  # (b, c, g, q, hp)
        # 2. Chunk states at the last step: exp(acs_last - m) * sum_j xs_j B_j^T.
        chunk_states = xs_g.transpose(-1, -2) @ Bg  # (b, c, g, hp, n)
        chunk_states = chunk_states.view(b, c, h, p * n) * decay_in[:, :, -1].unsqueeze(-1)
    else:
        decay_in = acs.exp().to(x.dtype)  # (b, c, q, h): decay from the chunk start to step i
        xdt = (x * dt.unsqueeze(-1)).view(b, c, q, h, p)
        decay_to_end = (acs[:, :, -1:] - acs).exp().to(x.dtype)  # (b, c, q, h)
        weighted = (xdt * decay_to_end.unsqueeze(-1)).view(b, c, q, g, hp)
        chunk_states = weighted.permute(0, 1, 3, 4, 2) @ Bg  # (b, c, g, hp, n)
        chunk_states = chunk_states.reshape(b, c, h, p * n)

    # 3. Pass states between chunks: the state at the end of chunk k sums chunk m <= k's
    #    contribution decayed over chunks m+1 .. k; chunk k starts from chunk k-1's end.
    chunk_ends = acs[:, :, -1].transpose(1, 2).cumsum(-1)  # (b, h, c) float64
    upper = torch.ones(c, c, dtype=torch.bool, device=x.device).triu(1)
    between = chunk_ends.unsqueeze(-1) - chunk_ends.unsqueeze(-2)  # (b, h, c, c)
    between = between.masked_fill(upper, float("-inf")).exp().to(x.dtype)
    ends = between @ chunk_states.transpose(1, 2)  # (b, h, c, p*n)
    entering = F.pad(ends[:, :, :-1], (0, 0, 1, 0))  # (b, h, c, p*n), zero state first
    entering = entering.transpose(1, 2)  # (b, c, h, p*n)
    if factored:  # decay from the chunk start to step i = exp(m) * decay_in_i
        entering = entering * middle.squeeze(2).exp().to(x.dtype).unsqueeze(-1)
    entering = entering.reshape(b, c, g, hp, n)

    # 1 + 4. Within chunks, y_i = sum_{j <= i} (C_i . B_j) L[i, j] dt_j x_j, plus the entering
    #    state read out by C_i; both decayed to step i.
    y_off = Cg @ entering.transpose(-1, -2)  # (b, c, g, q, hp), before the decay to step i
    if factored:
        # Strictly below the diagonal through the factors; the diagonal (L = 1) directly,
        # so its gradient does not come out as the difference of two large equal terms.
        scores = (Cg @ Bg.transpose(-1, -2)).tril_(-1)  # (b, c, g, q, q)
        y = torch.baddbmm(
            y_off.reshape(b * c * g, q, hp),
            scores.reshape(b * c * g, q, q),
            xs_g.reshape(b * c * g, q, hp),
        )  # (b*c*g, q, hp)
        y = y.view(b, c, g, q, hp).transpose(2, 3).reshape(b, c, q, h, p)
        # The diagonal's weight on x_i, per head: (C_i . B_i) dt_i, plus the D skip.
        diag = (Cg * Bg).sum(-1).transpose(2, 3)  # (b, c, q, g): C_i . B_i
        diag = diag.repeat_interleave(heads_per_group, dim=-1) * dt.view(b, c, q, h)
        if D is not None:
            diag = diag + D
        y = torch.addcmul(y * decay_in.unsqueeze(-1), x.reshape(b, c, q, h, p), diag.unsqueeze(-1))
        return y.reshape(b, c * q, h, p)[:, :length]
    else:
        scores = (Cg @ Bg.transpose(-1, -2)).view(b * c, g, q, q)
        xdt_heads = xdt.permute(0, 1, 3, 2, 4).reshape(b * c, h, q, p)
        a_heads = a.transpose(2, 3).reshape(b * c, h, q)
        acs_heads = acs.detach().transpose(2, 3).reshape(b * c, h, q)
        y_diag = _WithinChunk.apply(a_heads, acs_heads, scores, xdt_heads)
        y_off = y_off.transpose(2, 3).reshape(b, c, q, h, p) * decay_in.unsqueeze(-1)
        y = y_diag.view(b, c, h, q, p).transpose(2, 3) + y_off  # (b, c, q, h, p)

    y = y.reshape(b, c * q, h, p)[:, :length]
    if D is not None:
        y = y + x[:, :length] * D.view(h, 1)
    return y


def ssd_scan_reference(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
) -> Tensor:
    """Sequential float64 scan, one time step per iteration; returns y in x's dtype."""
    _, heads_per_group = _check_shapes(x, dt, A, B, C)
    batch, length, nheads, headdim = x.shape
    out_dtype = x.dtype
    x, dt, A = x.double(), dt.double(), A.double()
    # Expand the groups to heads: head h reads group h // heads_per_group.
    B = B.double().repeat_interleave(heads_per_group, dim=2)  # (b, l, h, n)
    C = C.double().repeat_interleave(heads_per_group, dim=2)  # (b, l, h, n)
    state = x.new_zeros(batch, nheads, headdim, B.shape[-1])  # (b, h, p, n)
    ys = []
    for t in range(length):
        step_decay = torch.exp(dt[:, t] * A)  # (b, h)
        inject = (dt[:, t, :, None] * x[:, t]).unsqueeze(-1) * B[:, t].unsqueeze(2)  # (b, h, p, n)
        state = step_decay[..., None, None] * state + inject
        ys.append((state * C[:, t].unsqueeze(2)).sum(-1))  # (b, h, p)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape)
    if D is not None:
        y = y + x * D.double().view(nheads, 1)
    return y.to(out_dtype)

"""Entropic optimal transport between two feature batches (Sinkhorn), as DLFD's distribution distance.

``ot_distance(a, b)`` is ``Σ π ⊙ C`` where ``C`` is the pairwise cost between the rows of ``a`` and ``b`` and ``π``
the entropic transport plan with uniform marginals, found by log-domain Sinkhorn iterations.

Gradient: the plan is computed without autograd and treated as a constant. For the regularised problem
``min_π ⟨π, C⟩ + ε KL(π ‖ a bᵀ)`` the gradient of the optimal *regularised* value with respect to ``C`` is the
optimal plan ``π*`` (envelope theorem), so the gradient of ``(π*.detach() ⊙ C).sum()`` is the exact gradient of that
regularised value at convergence (not of the unregularised ``Σ π ⊙ C`` that is returned, which differs by the
entropy term's dependence on ``C``); it costs no backward pass through the iterations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["COSTS", "cost_matrix", "ot_distance", "sinkhorn_plan"]

COSTS = ("cosine", "sqeuclidean")


def cost_matrix(a: torch.Tensor, b: torch.Tensor, cost: str = "cosine") -> torch.Tensor:
    """Pairwise cost ``[Na, Nb]`` between rows of ``a [Na, D]`` and ``b [Nb, D]``.

    ``"cosine"``: ``1 − cos(a_i, b_j)`` in ``[0, 2]`` (scale-free). ``"sqeuclidean"``: ``‖a_i − b_j‖²`` divided
    by the feature dimension, so its scale does not grow with ``D``.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need [Na, D] and [Nb, D] features, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != torch.float64 or b.dtype != torch.float64:
        a, b = a.float(), b.float()  # half-precision features (autocast) are compared in float32
    if cost == "cosine":
        return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T  # [Na, Nb]
    if cost == "sqeuclidean":
        return torch.cdist(a, b).pow(2) / a.shape[1]  # [Na, Nb]
    raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")


@torch.no_grad()
def sinkhorn_plan(cost: torch.Tensor, epsilon: float, *, max_iter: int = 100, tol: float = 1e-4) -> torch.Tensor:
    """The entropic OT plan ``[Na, Nb]`` for ``cost`` with uniform marginals (log-domain Sinkhorn).

    Args:
        cost: pairwise cost matrix.
        epsilon: entropic regularisation (in the cost's units); smaller is closer to exact OT but slower to converge.
        max_iter: iteration cap.
        tol: stop when the largest change of the dual potentials falls below ``tol * epsilon``.
    """
    if epsilon <= 0:
        raise ValueError("epsilon must be positive")
    c = cost.detach().double()
    n, m = c.shape
    log_a = torch.full((n,), -math.log(n), dtype=c.dtype, device=c.device)
    log_b = torch.full((m,), -math.log(m), dtype=c.dtype, device=c.device)
    f = torch.zeros(n, dtype=c.dtype, device=c.device)
    g = torch.zeros(m, dtype=c.dtype, device=c.device)
    for _ in range(max_iter):
        f_new = -epsilon * torch.logsumexp((g.unsqueeze(0) - c) / epsilon + log_b.unsqueeze(0), dim=1)
        g_new = -epsilon * torch.logsumexp((f_new.unsqueeze(1) - c) / epsilon + log_a.unsqueeze(1), dim=0)
        change = max(float((f_new - f).abs().max()), float((g_new - g).abs().max()))
        f, g = f_new, g_new
        if change < tol * epsilon:
            break
    log_plan = (f.unsqueeze(1) + g.unsqueeze(0) - c) / epsilon + log_a.unsqueeze(1) + log_b.unsqueeze(0)
    return log_plan.exp().to(cost.dtype)  # [Na, Nb], rows sum to 1/Na, columns to 1/Nb


def ot_distance(
    a: torch.Tensor, b: torch.Tensor, *, epsilon: float = 0.05, cost: str = "cosine", max_iter: int = 100
) -> torch.Tensor:
    """The entropic OT cost ``Σ π ⊙ C`` between feature batches ``a`` and ``b``, differentiable in both."""
    c = cost_matrix(a, b, cost)
    plan = sinkhorn_plan(c, epsilon, max_iter=max_iter)
    return (plan * c).sum()

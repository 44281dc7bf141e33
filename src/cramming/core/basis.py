"""A shared basis: a text's n vectors as K coefficients z around the model's mean, vectors = mean + z B.

B holds K orthonormal directions of the [n * d] vector space (the first K of the model's basis, model/basis.py), so
a file stores z alone, K numbers instead of n * d, and cramming trains only z. The expansion runs in float64 and
rounds once to float32, so the same z gives the same vectors wherever the sums are taken in another order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Basis:
    """mean [n, d] and components [K, n * d] with orthonormal rows; `digest` names the full basis they were cut from
    (basis_hash), which a file records beside K."""

    mean: torch.Tensor
    components: torch.Tensor
    digest: str

    @property
    def rank(self) -> int:
        return self.components.shape[0]

    @property
    def n_vectors(self) -> int:
        return self.mean.shape[0]

    def cut(self, rank: int) -> Basis:
        """The first `rank` directions (the basis is ordered: its leading directions are the solutions' main ones)."""
        return Basis(self.mean, self.components[:rank], self.digest)

    def expand(self, z: torch.Tensor) -> torch.Tensor:
        """[..., 1, K] coefficients -> [..., n, d] float32 vectors, mean + z B (differentiable in z)."""
        flat = self.mean.double().flatten() + z.double()[..., 0, :] @ self.components.double().to(z.device)
        return flat.float().unflatten(-1, tuple(self.mean.shape))

    def project(self, vectors: torch.Tensor) -> torch.Tensor:
        """[..., n, d] vectors -> [..., 1, K] the coefficients of their nearest point in the span (a start for z)."""
        offset = vectors.double().flatten(-2) - self.mean.double().flatten().to(vectors.device)
        return (offset @ self.components.double().T.to(vectors.device)).float()[..., None, :]


def basis_hash(mean: torch.Tensor, components: torch.Tensor) -> str:
    """A basis as a short hash of its float32 bytes: what a file crammed in it records."""
    digest = hashlib.sha256()
    for part in (mean, components):
        digest.update(part.float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]

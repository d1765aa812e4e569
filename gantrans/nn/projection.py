"""CUT's projection heads: features sampled at patch locations, mapped by a small MLP to unit vectors."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class PatchProjection(nn.Module):
    """One two-layer MLP H_l per encoder layer l (Park et al. 2020, sec. 3.2: "a two-layer MLP ...
    as in SimCLR"), applied to the features at sampled locations; outputs are L2-normalised so that
    their dot products are cosine similarities. Trained with the generator, never used to translate."""

    def __init__(self, channels: Sequence[int], width: int = 256) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.ReLU(), nn.Linear(width, width)) for c in channels)

    def forward(self, features: Sequence[Tensor], locations: Sequence[Tensor]) -> list[Tensor]:
        """features[l]: [B, C_l, H_l, W_l]; locations[l]: [P] indices into H_l * W_l -> [B, P, width] unit vectors."""
        projected = []
        for head, feature, where in zip(self.heads, features, locations):
            patches = feature.flatten(2).transpose(1, 2)[:, where]  # [B, P, C_l]
            projected.append(F.normalize(head(patches), dim=-1))
        return projected

"""Evaluation metrics as pure functions of features and images (no files, no models).

Images are float tensors in [-1, 1] unless a docstring says otherwise; features are [N, D].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gantrans.errors import GantransError


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and covariance (unbiased, as numpy.cov) of features [N, D], in float64."""
    features = features.double()
    if features.shape[0] < 2:
        raise GantransError(f"statistics need at least 2 images, got {features.shape[0]}")
    return features.mean(0), torch.cov(features.T)


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), the Fréchet distance between two
    Gaussians (Dowson & Landau 1982) that FID applies to Inception features (Heusel et al. 2017).

    tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2),
    which shares its eigenvalues with S1 S2 and is symmetric: no general matrix square root (and no
    scipy) is needed, and it stays finite when few images make S1 singular.
    """
    mean1, cov1, mean2, cov2 = (t.double() for t in (mean1, cov1, mean2, cov2))
    values, vectors = torch.linalg.eigh(cov1)
    root1 = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = root1 @ cov2 @ root1
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    difference = mean1 - mean2
    return float(difference @ difference + cov1.trace() + cov2.trace() - 2 * trace_root)


def kernel_inception_distance(
    features1: Tensor, features2: Tensor, subsets: int = 100, subset_size: int = 1000, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """Mean and standard deviation over random subsets of the unbiased MMD^2 with the cubic kernel
    k(x, y) = (x.y / d + 1)^3 (Bińkowski et al. 2018), as the reference implementations compute KID."""
    features1, features2 = features1.double(), features2.double()
    size = min(subset_size, features1.shape[0], features2.shape[0])
    if size < 2:
        raise GantransError(f"KID needs at least 2 images on each side, got {features1.shape[0]} and {features2.shape[0]}")
    generator = generator or torch.Generator().manual_seed(0)
    dimension = features1.shape[1]
    values = []
    for _ in range(subsets):
        x = features1[torch.randperm(features1.shape[0], generator=generator)[:size]]
        y = features2[torch.randperm(features2.shape[0], generator=generator)[:size]]
        kxx, kyy, kxy = ((a @ b.T / dimension + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (size * (size - 1))
        values.append(float(within - 2 * kxy.mean()))
    result = torch.tensor(values, dtype=torch.float64)
    return float(result.mean()), float(result.std()) if subsets > 1 else 0.0


def psnr(images: Tensor, references: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (peak-to-peak 2), over the whole batch."""
    mse = float((images.double() - references.double()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(4 / mse)


def ssim(images: Tensor, references: Tensor) -> float:
    """Mean structural similarity (Wang et al. 2004) of images [N, 3, H, W] in [-1, 1], computed on
    [0, 1] intensities per channel with the paper's 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03."""
    x, y = (images.double() + 1) / 2, (references.double() + 1) / 2
    coordinates = torch.arange(11, dtype=torch.float64) - 5
    gauss = torch.exp(-(coordinates**2) / (2 * 1.5**2))
    window = (gauss[:, None] * gauss[None, :] / gauss.sum() ** 2).expand(x.shape[1], 1, 11, 11).to(x.device)
    blur = lambda t: F.conv2d(t, window, groups=x.shape[1])  # noqa: E731  valid positions only, as the reference code
    mean_x, mean_y = blur(x), blur(y)
    var_x, var_y, covariance = blur(x * x) - mean_x**2, blur(y * y) - mean_y**2, blur(x * y) - mean_x * mean_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def lpips_distance(features1: dict[str, Tensor], features2: dict[str, Tensor], weights: dict[str, Tensor]) -> Tensor:
    """LPIPS (Zhang et al. 2018, eq. 1) per image from two images' deep features: each layer's
    activations are unit-normalised along channels, their squared difference weighted per channel by
    the learned linear layer (`weights[name]`, [1, C, 1, 1]), averaged over positions, summed over layers."""
    total = 0
    for name, weight in weights.items():
        a, b = (f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in (features1[name], features2[name]))
        total = total + F.conv2d((a - b).pow(2), weight).mean((1, 2, 3))
    return total


def nearest_distances(queries: Tensor, references: Tensor, exclude_self: bool = False) -> Tensor:
    """For each query feature, the Euclidean distance to its nearest reference feature (float64).
    With `exclude_self` (queries are the references), each point's distance to itself is ignored."""
    distances = torch.cdist(queries.double(), references.double())
    if exclude_self:
        distances.fill_diagonal_(math.inf)
    return distances.min(1).values


def copy_fraction(output_distances: Tensor, real_distances: Tensor) -> float:
    """The share of outputs closer to a training image than any held-out real image is: outputs that
    look copied rather than made (real held-out images show how close new images come by chance)."""
    return float((output_distances < real_distances.min()).double().mean())

"""Pure loss functions shared by every method. No backward(), no optimizers, no state.

Discriminator outputs are raw scores (logits); each GAN objective turns them into a loss
for the discriminator and one for the generator.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_LOSSES = ("lsgan", "nonsaturating", "wgan", "wgan-gp", "hinge")
CYCLE_NORMS = ("l1", "l2")
LATENT_OBJECTIVES = ("confusion", "reversal")


def _check_gan_loss(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; known: {', '.join(GAN_LOSSES)}")


def discriminator_adversarial_loss(kind: str, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """The discriminator's loss for scores on real and on generated images.

    lsgan: E[(D(x)-1)^2] + E[D(G(z))^2]  (Mao et al. 2017)
    nonsaturating: -E[log sigmoid(D(x))] - E[log(1 - sigmoid(D(G(z))))]  (Goodfellow et al. 2014)
    wgan / wgan-gp: E[D(G(z))] - E[D(x)]  (Arjovsky et al. 2017; the penalty is `gradient_penalty`)
    hinge: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]  (Lim & Ye 2017; Miyato et al. 2018)
    """
    _check_gan_loss(kind)
    real_scores, fake_scores = real_scores.float(), fake_scores.float()
    if kind == "lsgan":
        return (real_scores - 1).pow(2).mean() + fake_scores.pow(2).mean()
    if kind == "nonsaturating":
        real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
        fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        return real + fake
    if kind == "hinge":
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()
    return fake_scores.mean() - real_scores.mean()  # wgan, wgan-gp


def generator_adversarial_loss(kind: str, fake_scores: Tensor) -> Tensor:
    """The generator's loss for the discriminator's scores on its images.

    lsgan: E[(D(G(z))-1)^2]; nonsaturating: -E[log sigmoid(D(G(z)))] (the "non-saturating" trick of
    Goodfellow et al. 2014, strong gradients early on); wgan, wgan-gp, hinge: -E[D(G(z))].
    """
    _check_gan_loss(kind)
    fake_scores = fake_scores.float()
    if kind == "lsgan":
        return (fake_scores - 1).pow(2).mean()
    if kind == "nonsaturating":
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))
    return -fake_scores.mean()


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates x_hat of real and fake (Gulrajani et al. 2017, eq. 3).

    The caller multiplies by lambda (10 in the paper). Needs double backward, so the graph is kept.
    """
    alpha = torch.rand((real.shape[0], 1, 1, 1), generator=generator, device="cpu").to(real)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(interpolates)
    (gradients,) = torch.autograd.grad(scores.float().sum(), interpolates, create_graph=True)
    return (gradients.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def r1_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """E[||grad D(x)||^2] on real images (Mescheder et al. 2018, eq. 9); the caller multiplies by gamma / 2."""
    real = real.detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(discriminator(real).float().sum(), real, create_graph=True)
    return gradients.flatten(1).pow(2).sum(1).mean()


def cycle_loss(reconstructed: Tensor, original: Tensor, norm: str = "l1") -> Tensor:
    """||F(G(x)) - x||_1, the cycle-consistency loss (Zhu et al. 2017, eq. 2), as a mean over pixels;
    with norm="l2" the mean squared error that DiscoGAN uses (Kim et al. 2017, eq. 2)."""
    if norm == "l2":
        return F.mse_loss(reconstructed.float(), original.float())
    if norm != "l1":
        raise ValueError(f"unknown cycle norm {norm!r}; known: {', '.join(CYCLE_NORMS)}")
    return F.l1_loss(reconstructed.float(), original.float())


def feature_matching_loss(real_features: Sequence[Tensor], fake_features: Sequence[Tensor]) -> Tensor:
    """Sum over layers of the mean squared difference between the batch means of the discriminator's
    features on real and on generated images (Salimans et al. 2016, sec. 3.1; DiscoGAN's variant)."""
    total = torch.zeros((), device=fake_features[0].device)
    for real, fake in zip(real_features, fake_features, strict=True):
        total = total + (real.float().mean(0) - fake.float().mean(0)).pow(2).mean()
    return total


def identity_loss(mapped: Tensor, original: Tensor) -> Tensor:
    """||G(y) - y||_1 for y already in G's target domain (Zhu et al. 2017, sec. 5.2; Taigman et al. 2017)."""
    return F.l1_loss(mapped.float(), original.float())


def domain_classification_loss(logits: Tensor, domain: int) -> Tensor:
    """Cross-entropy of per-position domain logits [N, K, h, w] when every position comes from `domain`."""
    target = torch.full((logits.shape[0], *logits.shape[2:]), domain, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target)


def latent_confusion_loss(kind: str, logits: Tensor, domain: int) -> Tensor:
    """The encoders' loss against a latent domain classifier, for codes of `domain`.

    confusion: cross-entropy to the uniform distribution, smallest when the classifier cannot tell
    the domains apart (Tzeng et al. 2015); reversal: minus the classifier's own loss, the objective a
    gradient reversal layer optimises (Ganin & Lempitsky 2015).
    """
    if kind == "confusion":
        return -logits.float().log_softmax(dim=1).mean()
    if kind == "reversal":
        return -domain_classification_loss(logits, domain)
    raise ValueError(f"unknown latent objective {kind!r}; known: {', '.join(LATENT_OBJECTIVES)}")


def gaussian_kl_loss(mean: Tensor) -> Tensor:
    """KL(N(mean, I) || N(0, I)) up to a factor 1/2 and a constant: the mean of mean^2, as UNIT (Liu
    et al. 2017, eq. 2) writes it for codes with a fixed unit variance."""
    return mean.float().pow(2).mean()


def patch_nce_loss(query: Tensor, key: Tensor, temperature: float) -> Tensor:
    """PatchNCE (Park et al. 2020, eqs. 2 and 5): each output patch's embedding (`query`, [B, P, D],
    unit vectors) must pick the input patch at its own location (`key`, same shape) out of the P
    locations of the same image; cross-entropy of (P)-way classification with temperature tau.
    The keys are detached, as in the authors' code: only the output side is pushed."""
    query, key = query.float(), key.detach().float()
    logits = query @ key.transpose(1, 2) / temperature  # [B, P, P]; row i's positive is column i
    targets = torch.arange(query.shape[1], device=query.device).expand(query.shape[0], -1)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

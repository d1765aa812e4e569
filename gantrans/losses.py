"""Pure loss functions shared by every method. No backward(), no optimizers, no state.

Discriminator outputs are raw scores (logits); each GAN objective turns them into a loss
for the discriminator and one for the generator. The objectives are the literal table
`GAN_OBJECTIVES`, one small object each; an f-GAN objective also carries its output activation
and conjugate. Losses whose true value grows like exp(|v|) (KL, reverse KL and squared Hellinger
f-GANs) are written without an exp of a log or a division by 1 - exp(-v), so they overflow float32
only where the true value does (|v| beyond about 88).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

CYCLE_NORMS = ("l1", "l2")
LATENT_OBJECTIVES = ("confusion", "reversal")
LOG_2 = math.log(2.0)


# --- The classic objectives, on raw scores v (float32) of real images and of generated ones. ---


def _lsgan_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """E[(D(x)-1)^2] + E[D(G(z))^2] (Mao et al. 2017, eq. 2 with a=0, b=c=1)."""
    return (real - 1).pow(2).mean() + fake.pow(2).mean()


def _lsgan_generator(fake: Tensor) -> Tensor:
    """E[(D(G(z))-1)^2] (Mao et al. 2017, eq. 2)."""
    return (fake - 1).pow(2).mean()


def _cross_entropy_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """-E[log sigmoid(D(x))] - E[log(1 - sigmoid(D(G(z))))] (Goodfellow et al. 2014, eq. 1), on logits.
    (torch's fused cross-entropy, as before the objectives became a table: the same numbers bit for bit.)"""
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def _non_saturating_generator(fake: Tensor) -> Tensor:
    """-E[log sigmoid(D(G(z)))]: G maximises log D(G(z)) rather than minimising log(1 - D(G(z))),
    which has strong gradients early on (Goodfellow et al. 2014, sec. 3)."""
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def _wasserstein_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """E[D(G(z))] - E[D(x)] (Arjovsky et al. 2017, eq. 3; the critic's Lipschitz constraint is
    weight clipping or, for wgan-gp, `gradient_penalty`)."""
    return fake.mean() - real.mean()


def _wasserstein_generator(fake: Tensor) -> Tensor:
    """-E[D(G(z))] (Arjovsky et al. 2017, algorithm 1); also the hinge GAN's generator loss."""
    return -fake.mean()


def _hinge_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018, eq. 16)."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


# --- The f-GAN family (Nowozin, Cseke & Tomioka 2016). ---


@dataclass(frozen=True)
class FDivergence:
    """An f-divergence D_f(P||Q) = integral of q(x) f(p(x)/q(x)) dx, with what f-GAN needs to bound it
    from below (Nowozin et al. 2016, eq. 4 and Table 2):

    D_f(P||Q) >= sup_T E_P[T(x)] - E_Q[f*(T(x))], with equality at T = f'(p/q),

    where f* is the convex conjugate of f and the critic's output is T = g_f(v): the output
    activation g_f maps a raw score v onto the domain of f*.
    """

    name: str  # the divergence in words
    f: Callable[[Tensor], Tensor]  # the generator function, convex with f(1) = 0 (Table 1)
    activation: Callable[[Tensor], Tensor]  # g_f: raw score v -> T (Table 2)
    conjugate: Callable[[Tensor], Tensor]  # f*(t), for t in the range of g_f (Table 2)
    # f*(g_f(v)) written so that it stays finite wherever the true value is (no exp of a log):
    conjugate_of_activation: Callable[[Tensor], Tensor]

    def lower_bound(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        """E_P[g_f(v)] - E_Q[f*(g_f(v))] (eq. 6): what the discriminator maximises; at most D_f(P||Q)."""
        real, fake = real_scores.float(), fake_scores.float()
        return self.activation(real).mean() - self.conjugate_of_activation(fake).mean()

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        """Minus the lower bound."""
        return -self.lower_bound(real_scores, fake_scores)

    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        """-E_Q[g_f(v)]: the paper's alternative to minimising the bound itself (sec. 3.2). It has the
        same fixed points and stronger gradients early in training, when the critic rejects every
        sample; for JS it is exactly the non-saturating GAN loss (minus log 2), the trick it
        generalises. Minimising the bound, -E_Q[f*(g_f(v))], would for JS be the saturating
        log(1 - D(G(z))) that Goodfellow et al. 2014 replace for that reason."""
        return -self.activation(fake_scores.float()).mean()


def _kl_f(u: Tensor) -> Tensor:
    return u * torch.log(u)


def _reverse_kl_f(u: Tensor) -> Tensor:
    return -torch.log(u)


def _pearson_f(u: Tensor) -> Tensor:
    return (u - 1).pow(2)


def _squared_hellinger_f(u: Tensor) -> Tensor:
    return (torch.sqrt(u) - 1).pow(2)


def _jensen_shannon_f(u: Tensor) -> Tensor:
    return u * torch.log(u) - (u + 1) * torch.log((u + 1) / 2)


KL = FDivergence(
    name="Kullback-Leibler KL(P||Q)",
    f=_kl_f,  # u log u
    activation=lambda v: v,  # T = v, any real
    conjugate=lambda t: torch.exp(t - 1),
    conjugate_of_activation=lambda v: torch.exp(v - 1),  # grows like exp(v), as the true value does
)
REVERSE_KL = FDivergence(
    name="reverse Kullback-Leibler KL(Q||P)",
    f=_reverse_kl_f,  # -log u
    activation=lambda v: -torch.exp(-v),  # T < 0
    conjugate=lambda t: -1 - torch.log(-t),
    conjugate_of_activation=lambda v: v - 1,  # -1 - log(exp(-v)), without forming exp(-v)
)
PEARSON = FDivergence(
    name="Pearson chi-squared, integral of (p - q)^2 / q",
    f=_pearson_f,  # (u - 1)^2
    activation=lambda v: v,  # T = v, any real
    conjugate=lambda t: t.pow(2) / 4 + t,
    conjugate_of_activation=lambda v: v.pow(2) / 4 + v,
)
SQUARED_HELLINGER = FDivergence(
    name="squared Hellinger, integral of (sqrt(p) - sqrt(q))^2",
    f=_squared_hellinger_f,  # (sqrt(u) - 1)^2
    activation=lambda v: -torch.expm1(-v),  # 1 - exp(-v) < 1
    conjugate=lambda t: t / (1 - t),
    # (1 - exp(-v)) / exp(-v) = exp(v) - 1: no division by a vanishing 1 - t
    conjugate_of_activation=lambda v: torch.expm1(v),
)
JENSEN_SHANNON = FDivergence(
    # This f (Table 1, whose conjugate is Table 2's) gives KL(P||M) + KL(Q||M) with M = (P + Q) / 2:
    # twice the Jensen-Shannon divergence, at most 2 log 2.
    name="Jensen-Shannon, 2 JS(P||Q) = KL(P||M) + KL(Q||M)",
    f=_jensen_shannon_f,  # u log u - (u + 1) log((u + 1) / 2)
    activation=lambda v: LOG_2 + F.logsigmoid(v),  # log 2 - log(1 + exp(-v)) < log 2
    conjugate=lambda t: -torch.log(2 - torch.exp(t)),
    # -log(2 - 2 sigmoid(v)) = softplus(v) - log 2; the D loss is then the cross-entropy GAN's minus log 4
    conjugate_of_activation=lambda v: F.softplus(v) - LOG_2,
)


# --- The table. ---


@dataclass(frozen=True)
class GANObjective:
    """One GAN objective: the discriminator's and the generator's loss on raw scores (logits), and
    what the trainer must know about it. Scores are cast to float32; the losses are pure."""

    name: str
    reference: str  # the paper and equation
    d_loss: Callable[[Tensor, Tensor], Tensor]  # (real scores, fake scores) -> loss, on float32
    g_loss: Callable[[Tensor], Tensor]  # fake scores -> loss, on float32
    gradient_penalty: bool = False  # the discriminator adds `gradient_penalty` (WGAN-GP)
    divergence: FDivergence | None = None  # the f-divergence an f-GAN objective bounds

    @property
    def needs_double_backward(self) -> bool:
        """A gradient penalty differentiates a gradient: compiled graphs cannot run it."""
        return self.gradient_penalty

    @property
    def activation(self) -> Callable[[Tensor], Tensor] | None:
        """The output activation g_f of an f-GAN critic; None where the raw scores are used."""
        return None if self.divergence is None else self.divergence.activation

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        """The discriminator's loss for its scores on real and on generated images."""
        return self.d_loss(real_scores.float(), fake_scores.float())

    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        """The generator's loss for the discriminator's scores on its images."""
        return self.g_loss(fake_scores.float())


def _f_gan(name: str, divergence: FDivergence) -> GANObjective:
    """The f-GAN objective of `divergence`: D minimises minus the bound, G its sec. 3.2 loss."""
    return GANObjective(
        name,
        "Nowozin et al. 2016, eq. 6, Table 2; G loss of sec. 3.2",
        divergence.discriminator_loss,
        divergence.generator_loss,
        divergence=divergence,
    )


GAN_OBJECTIVES: Mapping[str, GANObjective] = MappingProxyType(
    {
        "lsgan": GANObjective("lsgan", "Mao et al. 2017, eq. 2", _lsgan_discriminator, _lsgan_generator),
        "nonsaturating": GANObjective(
            "nonsaturating", "Goodfellow et al. 2014, eq. 1 and sec. 3", _cross_entropy_discriminator, _non_saturating_generator
        ),
        "wgan": GANObjective("wgan", "Arjovsky et al. 2017, eq. 3 (with --clip)", _wasserstein_discriminator, _wasserstein_generator),
        "wgan-gp": GANObjective(
            "wgan-gp", "Gulrajani et al. 2017, eq. 3", _wasserstein_discriminator, _wasserstein_generator, gradient_penalty=True
        ),
        "hinge": GANObjective("hinge", "Lim & Ye 2017; Miyato et al. 2018, eq. 16", _hinge_discriminator, _wasserstein_generator),
        "kl": _f_gan("kl", KL),
        "reverse-kl": _f_gan("reverse-kl", REVERSE_KL),
        "pearson": _f_gan("pearson", PEARSON),
        "squared-hellinger": _f_gan("squared-hellinger", SQUARED_HELLINGER),
        "js": _f_gan("js", JENSEN_SHANNON),
    }
)
GAN_LOSSES = tuple(GAN_OBJECTIVES)  # the names --gan-loss accepts


def gan_objective(kind: str) -> GANObjective:
    """The objective named `kind`; a clear error for any other name."""
    if kind not in GAN_OBJECTIVES:
        raise ValueError(f"unknown GAN loss {kind!r}; known: {', '.join(GAN_LOSSES)}")
    return GAN_OBJECTIVES[kind]


def discriminator_adversarial_loss(kind: str, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """The discriminator's loss under objective `kind` (see `GAN_OBJECTIVES`)."""
    return gan_objective(kind).discriminator_loss(real_scores, fake_scores)


def generator_adversarial_loss(kind: str, fake_scores: Tensor) -> Tensor:
    """The generator's loss under objective `kind` (see `GAN_OBJECTIVES`)."""
    return gan_objective(kind).generator_loss(fake_scores)


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

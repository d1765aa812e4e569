"""The GAN objective table: closed forms on known scores, the f-GAN family's activations and
conjugates (Nowozin et al. 2016, Table 2), its variational bound on two Gaussians, and every
objective training a tiny CycleGAN."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from gantrans import losses
from gantrans.errors import UsageError
from gantrans.presets import make_train_config
from gantrans.step import needs_double_backward
from gantrans.training import Finished, StepDone, train

F_GANS = ("kl", "reverse-kl", "pearson", "squared-hellinger", "js")
REAL, FAKE = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
LOG_2 = math.log(2.0)

# The paper's Table 2, written out again here independently of the library: output activation
# g_f(v) and conjugate f*(t), in plain float64 maths.
PAPER: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "kl": (lambda v: v, lambda t: math.exp(t - 1)),
    "reverse-kl": (lambda v: -math.exp(-v), lambda t: -1 - math.log(-t)),
    "pearson": (lambda v: v, lambda t: t * t / 4 + t),
    "squared-hellinger": (lambda v: 1 - math.exp(-v), lambda t: t / (1 - t)),
    "js": (lambda v: LOG_2 - math.log(1 + math.exp(-v)), lambda t: -math.log(2 - math.exp(t))),
}
# The optimal critic T* = f'(u) at density ratio u = p/q, and the raw score v* with g_f(v*) = T*.
OPTIMAL_SCORE: dict[str, Callable[[float], float]] = {
    "kl": lambda u: 1 + math.log(u),  # f'(u) = 1 + log u, g = identity
    "reverse-kl": lambda u: math.log(u),  # f'(u) = -1/u = -exp(-v)
    "pearson": lambda u: 2 * (u - 1),  # f'(u) = 2 (u - 1), g = identity
    "squared-hellinger": lambda u: 0.5 * math.log(u),  # f'(u) = 1 - u^(-1/2) = 1 - exp(-v)
    "js": lambda u: math.log(u),  # f'(u) = log(2u / (1 + u)) = log 2 - log(1 + exp(-v))
}
# Each divergence between discrete distributions, by its textbook definition.
DIVERGENCE: dict[str, Callable[[list[float], list[float]], float]] = {
    "kl": lambda p, q: sum(a * math.log(a / b) for a, b in zip(p, q)),
    "reverse-kl": lambda p, q: sum(b * math.log(b / a) for a, b in zip(p, q)),
    "pearson": lambda p, q: sum((a - b) ** 2 / b for a, b in zip(p, q)),
    "squared-hellinger": lambda p, q: sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(p, q)),
    # 2 JS(P||Q) = KL(P||M) + KL(Q||M): what the f of Table 1 for JS integrates to
    "js": lambda p, q: sum(a * math.log(2 * a / (a + b)) + b * math.log(2 * b / (a + b)) for a, b in zip(p, q)),
}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# --- The table. ---


def test_the_table_is_the_gan_loss_choices_and_is_read_only():
    assert losses.GAN_LOSSES == tuple(losses.GAN_OBJECTIVES)
    assert set(F_GANS) < set(losses.GAN_LOSSES)
    for name, objective in losses.GAN_OBJECTIVES.items():
        assert objective.name == name and objective.reference
        assert (objective.divergence is not None) == (name in F_GANS)
        assert (objective.activation is not None) == (name in F_GANS)
    with pytest.raises(TypeError):
        losses.GAN_OBJECTIVES["magic"] = losses.GAN_OBJECTIVES["lsgan"]  # type: ignore[index]


def test_only_the_gradient_penaltyneeds_double_backward(make_config):
    assert [name for name, objective in losses.GAN_OBJECTIVES.items() if objective.needs_double_backward] == ["wgan-gp"]
    assert needs_double_backward(make_config(gan_loss="wgan-gp"))
    assert not needs_double_backward(make_config(gan_loss="js"))
    assert needs_double_backward(make_config(gan_loss="js", lambda_r1=1.0))


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match=r"unknown GAN loss 'magic'; known: lsgan, .*squared-hellinger, js"):
        losses.gan_objective("magic")
    with pytest.raises(ValueError, match="unknown GAN loss 'magic'"):
        losses.discriminator_adversarial_loss("magic", REAL, FAKE)
    with pytest.raises(UsageError, match=r"--gan-loss must be one of lsgan, .*reverse-kl, pearson.* \(got 'magic'\)"):
        make_train_config("cyclegan", {"root": "d", "gan_loss": "magic"})


# --- Closed forms on known scores. ---


def test_scores_are_cast_to_float32():
    for name in losses.GAN_LOSSES:
        assert losses.discriminator_adversarial_loss(name, REAL.half(), FAKE.bfloat16()).dtype == torch.float32
        assert losses.generator_adversarial_loss(name, FAKE.double()).dtype == torch.float32


@pytest.mark.parametrize("name", F_GANS)
def test_f_gan_losses_on_known_scores(name):
    """D: -(E_P[g(v)] - E_Q[f*(g(v))]) (eq. 6); G: -E_Q[g(v)] (sec. 3.2), from the paper's formulas."""
    activation, conjugate = PAPER[name]
    bound = mean([activation(v) for v in REAL.tolist()]) - mean([conjugate(activation(v)) for v in FAKE.tolist()])
    assert losses.discriminator_adversarial_loss(name, REAL, FAKE).item() == pytest.approx(-bound, rel=1e-6)
    assert losses.generator_adversarial_loss(name, FAKE).item() == pytest.approx(-mean([activation(v) for v in FAKE.tolist()]), rel=1e-6)


# Two atoms: P puts 3/4 on the first, Q 1/4; four samples each carry those proportions.
P_ATOMS, Q_ATOMS = [0.75, 0.25], [0.25, 0.75]


def atom_scores(score: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of four samples of P and four of Q, given the critic's score on each atom."""
    return torch.tensor([score[0]] * 3 + [score[1]], dtype=torch.float64), torch.tensor([score[0]] + [score[1]] * 3, dtype=torch.float64)


@pytest.mark.parametrize("name", F_GANS)
def test_f_gan_bound_equals_the_divergence_at_the_optimal_critic(name):
    """At T = f'(p/q) the bound is tight: -D loss = D_f(P||Q) exactly; any other critic scores less."""
    ratios = [p / q for p, q in zip(P_ATOMS, Q_ATOMS)]
    real, fake = atom_scores([OPTIMAL_SCORE[name](u) for u in ratios])
    truth = DIVERGENCE[name](P_ATOMS, Q_ATOMS)
    assert -losses.discriminator_adversarial_loss(name, real, fake).item() == pytest.approx(truth, rel=1e-5)
    worse_real, worse_fake = real + 0.3, fake + 0.3
    assert -losses.discriminator_adversarial_loss(name, worse_real, worse_fake).item() < truth


def test_classic_objectives_at_the_optimal_discriminator():
    """Optimal D on the two atoms (Goodfellow et al. 2014, prop. 1; Mao et al. 2017, prop. 1): sigmoid(v) = p/(p+q)
    leaves log 4 - 2 JS; LSGAN's D = p/(p+q) leaves sum pq/(p+q); hinge's D = sign(p - q) leaves 2 (1 - TV)."""
    ratios = [p / q for p, q in zip(P_ATOMS, Q_ATOMS)]
    real, fake = atom_scores([math.log(u) for u in ratios])
    two_js = DIVERGENCE["js"](P_ATOMS, Q_ATOMS)
    assert losses.discriminator_adversarial_loss("nonsaturating", real, fake).item() == pytest.approx(math.log(4) - two_js)
    real, fake = atom_scores([p / (p + q) for p, q in zip(P_ATOMS, Q_ATOMS)])
    least_squares = sum(p * q / (p + q) for p, q in zip(P_ATOMS, Q_ATOMS))
    assert losses.discriminator_adversarial_loss("lsgan", real, fake).item() == pytest.approx(least_squares)
    real, fake = atom_scores([1.0, -1.0])
    total_variation = 0.5 * sum(abs(p - q) for p, q in zip(P_ATOMS, Q_ATOMS))
    assert losses.discriminator_adversarial_loss("hinge", real, fake).item() == pytest.approx(2 * (1 - total_variation))
    # WGAN's critic loss is the negated mean-score gap, and its generator just raises the fakes' scores.
    assert losses.discriminator_adversarial_loss("wgan", real, fake).item() == pytest.approx(fake.mean().item() - real.mean().item())
    assert losses.generator_adversarial_loss("wgan", fake).item() == pytest.approx(-fake.mean().item())


def test_js_f_gan_is_the_cross_entropy_gan_shifted():
    """With T = log 2 - log(1 + exp(-v)), the f-GAN's JS losses are the cross-entropy GAN's minus constants."""
    scores = torch.linspace(-6, 6, 13)
    d_js = losses.discriminator_adversarial_loss("js", scores, scores.flip(0))
    d_gan = losses.discriminator_adversarial_loss("nonsaturating", scores, scores.flip(0))
    assert d_js.item() == pytest.approx(d_gan.item() - math.log(4), abs=1e-6)
    g_js, g_gan = losses.generator_adversarial_loss("js", scores), losses.generator_adversarial_loss("nonsaturating", scores)
    assert g_js.item() == pytest.approx(g_gan.item() - LOG_2, abs=1e-6)


# --- Activations and conjugates. ---


@pytest.mark.parametrize("name", F_GANS)
def test_conjugate_is_the_convex_conjugate_of_f(name):
    """f(1) = 0, and Fenchel-Young holds with equality at t = f'(u): f*(t) = u t - f(u)."""
    divergence = losses.GAN_OBJECTIVES[name].divergence
    assert divergence.f(torch.tensor(1.0, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    u = torch.logspace(-2, 2, 41, dtype=torch.float64).requires_grad_(True)
    (slope,) = torch.autograd.grad(divergence.f(u).sum(), u)
    u = u.detach()
    assert torch.allclose(divergence.conjugate(slope), u * slope - divergence.f(u), rtol=1e-9, atol=1e-9)
    # f* is the supremum: no other u gives more at any of these t.
    others = torch.logspace(-3, 3, 601, dtype=torch.float64)
    best = (slope[:, None] * others[None, :] - divergence.f(others)[None, :]).amax(1)
    assert (best <= divergence.conjugate(slope) + 1e-9).all()


@pytest.mark.parametrize("name", F_GANS)
def test_activation_and_stable_conjugate_match_the_paper(name):
    """g_f and f*(g_f(v)) agree with Table 2 in float64, and g_f lands in the domain of f*."""
    divergence, (activation, conjugate) = losses.GAN_OBJECTIVES[name].divergence, PAPER[name]
    v = torch.linspace(-8, 8, 33, dtype=torch.float64)
    expected_t = torch.tensor([activation(x) for x in v.tolist()], dtype=torch.float64)
    expected_conjugate = torch.tensor([conjugate(t) for t in expected_t.tolist()], dtype=torch.float64)
    assert torch.allclose(divergence.activation(v), expected_t, rtol=1e-12, atol=1e-12)
    assert torch.allclose(divergence.conjugate(divergence.activation(v)), expected_conjugate, rtol=1e-9)
    assert torch.allclose(divergence.conjugate_of_activation(v), expected_conjugate, rtol=1e-9)


@pytest.mark.parametrize(
    "name, score",
    [("reverse-kl", 120.0), ("squared-hellinger", 20.0), ("js", 20.0)],
)
def test_stable_forms_stay_finite_where_the_composition_overflows(name, score):
    """In float32, f*(g_f(v)) composed naively hits log(0) or a division by 1 - 1; the stable form
    gives the float64 value."""
    divergence = losses.GAN_OBJECTIVES[name].divergence
    v = torch.tensor([score])
    assert not torch.isfinite(divergence.conjugate(divergence.activation(v))).all()
    exact = divergence.conjugate_of_activation(v.double())
    assert torch.isfinite(divergence.conjugate_of_activation(v)).all()
    assert divergence.conjugate_of_activation(v).double().item() == pytest.approx(exact.item(), rel=1e-6)


@pytest.mark.parametrize("name", losses.GAN_LOSSES)
def test_losses_and_gradients_are_finite_for_large_scores(name):
    """Finite float32 losses and gradients for scores up to +-80 (exp(80) still fits in float32)."""
    real = torch.tensor([-80.0, -20.0, 0.0, 20.0, 80.0], requires_grad=True)
    fake = torch.tensor([80.0, 20.0, 0.0, -20.0, -80.0], requires_grad=True)
    d_loss = losses.discriminator_adversarial_loss(name, real, fake)
    g_loss = losses.generator_adversarial_loss(name, fake)
    gradients = torch.autograd.grad(d_loss + g_loss, (real, fake))
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert all(torch.isfinite(gradient).all() for gradient in gradients)


# --- The variational bound on two Gaussians. ---

# P = N(0, 1), Q = N(1, 1): with equal variances every divergence here is finite, and so are the
# variances of the bound's estimates (Pearson's needs E_Q[(p/q)^4] = e^6).
MEAN_Q = 1.0
GAUSSIAN_TRUTH = {
    "kl": MEAN_Q**2 / 2,
    "reverse-kl": MEAN_Q**2 / 2,
    "pearson": math.exp(MEAN_Q**2) - 1,
    "squared-hellinger": 2 * (1 - math.exp(-(MEAN_Q**2) / 8)),  # 2 - 2 x Bhattacharyya coefficient
    "js": None,  # no closed form: quadrature only
}


def gaussian_divergence_by_quadrature(name: str) -> float:
    """D(N(0,1) || N(MEAN_Q,1)) by the trapezoid rule on [-12, 13] (the tails beyond add < 1e-20)."""
    x = torch.linspace(-12, 12 + MEAN_Q, 250_001, dtype=torch.float64)
    p = torch.exp(-x.pow(2) / 2) / math.sqrt(2 * math.pi)
    q = torch.exp(-(x - MEAN_Q).pow(2) / 2) / math.sqrt(2 * math.pi)
    m = (p + q) / 2
    integrand = {
        "kl": p * torch.log(p / q),
        "reverse-kl": q * torch.log(q / p),
        "pearson": (p - q).pow(2) / q,
        "squared-hellinger": (p.sqrt() - q.sqrt()).pow(2),
        "js": p * torch.log(p / m) + q * torch.log(q / m),
    }[name]
    return torch.trapezoid(integrand, x).item()


@pytest.mark.parametrize("name", [name for name in F_GANS if GAUSSIAN_TRUTH[name] is not None])
def test_gaussian_closed_forms_agree_with_quadrature(name):
    assert gaussian_divergence_by_quadrature(name) == pytest.approx(GAUSSIAN_TRUTH[name], rel=1e-7)


def critic_bound(name: str, steps: int = 200, batch: int = 1024, held_out: int = 1 << 16, seed: int = 0) -> tuple[float, float]:
    """Train a small MLP critic to maximise E_P[T] - E_Q[f*(T)] (minimise the D loss) on fresh
    samples, then estimate its bound on held-out samples; returns (bound, standard error)."""
    objective = losses.GAN_OBJECTIVES[name]
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    critic = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.SiLU(), torch.nn.Linear(32, 32), torch.nn.SiLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for _ in range(steps):
        from_p = torch.randn(batch, 1, generator=generator)
        from_q = torch.randn(batch, 1, generator=generator) + MEAN_Q
        loss = objective.discriminator_loss(critic(from_p).squeeze(1), critic(from_q).squeeze(1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        from_p = torch.randn(held_out, 1, generator=generator)
        from_q = torch.randn(held_out, 1, generator=generator) + MEAN_Q
        real_scores, fake_scores = critic(from_p).squeeze(1), critic(from_q).squeeze(1)
        bound = -objective.discriminator_loss(real_scores, fake_scores).item()
        real_terms = objective.divergence.activation(real_scores).double()
        fake_terms = objective.divergence.conjugate_of_activation(fake_scores).double()
    assert bound == pytest.approx(real_terms.mean().item() - fake_terms.mean().item(), rel=1e-4)
    return bound, math.sqrt(real_terms.var().item() / held_out + fake_terms.var().item() / held_out)


@pytest.mark.parametrize("name", F_GANS)
def test_trained_critic_bound_approaches_the_divergence(name):
    """The bound of a trained critic is within 10% of D_f(P||Q), and not above it by more than
    4 standard errors of its held-out estimate (a bound cannot exceed the truth)."""
    truth = gaussian_divergence_by_quadrature(name)
    bound, standard_error = critic_bound(name)
    assert bound >= 0.9 * truth, f"{name}: bound {bound:.4f} < 90% of {truth:.4f}"
    assert bound <= truth + 4 * standard_error, f"{name}: bound {bound:.4f} above {truth:.4f} (se {standard_error:.4f})"


# --- Every objective trains a tiny CycleGAN. ---


@pytest.mark.parametrize("name", losses.GAN_LOSSES)
def test_every_objective_trains_cyclegan(make_config, name):
    clip = {"clip": 0.01} if name == "wgan" else {}  # a WGAN needs its clipping (config validation)
    events = list(train(make_config(gan_loss=name, steps=3, checkpoint_every=100, sample_every=100, **clip)))
    logged = [event.losses for event in events if isinstance(event, StepDone) and event.losses]
    assert isinstance(events[-1], Finished) and events[-1].step == 3
    assert len(logged) == 3 and {"adv_xy", "d_x", "d_y"} <= set(logged[0])
    assert all(math.isfinite(value) for line in logged for value in line.values())

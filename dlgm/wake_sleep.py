"""The wake-sleep algorithm (Hinton et al., 1995; Dayan, 2000): the paper's baseline (sec. 5.1,
Fig. 2c and Table 1), for the same ``DLGM`` and recognition model; only the training rule differs.

Symbols of the paper and their names here (as in ``model.py``):

=================  =========================  =================================================
paper              code                       meaning
=================  =========================  =================================================
v                  ``x``                      a (binarised) training image, (B, D)
xi                 ``xi``                     latent noise, all layers concatenated, (B, K)
q(xi | v)          ``model.encode``           recognition model, parameters phi
log p(v, xi)       ``model.log_joint``        generative model, eq. 6, parameters theta^g
=================  =========================  =================================================

Wake phase (generative parameters theta^g only): draw xi ~ q(xi | v) for data v, treat it as
fixed, and take a gradient step on log p(v, xi) (eq. 6) minus the weight prior of eq. 13, i.e.
maximise E_q[log pi(v | h(xi))] - ||theta^g||^2 / (2 kappa N), the prior entering by its
gradient (``DLGM.add_prior_gradient``) exactly as in ``Trainer``. No gradient flows into q.

Sleep phase (recognition parameters phi only): dream (xi, v) from the model, xi ~ N(0, I) and
v ~ pi(v | h(xi)), and take a gradient step on log q(xi | v). This minimises KL(p(xi|v) || q) on
the model's own dreams, not the KL(q || p) of the free energy (eq. 11): wake-sleep optimises no
single objective (the paper's sec. 6), so its free energy need not fall at every step.

Both phases are computed on every step, from one random stream, and applied by one optimiser.
The two losses have disjoint parameter sets in their graphs (the wake loss sees xi as a
constant, the sleep loss sees xi and v as constants), so one backward pass of their sum gives
each parameter exactly the gradient of its own phase, and a per-parameter optimiser (RMSprop,
Adam) then updates theta^g as the wake phase and phi as the sleep phase would alone.

Because the model is an ordinary ``DLGM``, everything else (``dlgm.likelihood.evaluate``,
checkpoints, grids, imputation) applies unchanged.
"""

from __future__ import annotations

import torch
from torch.distributions import kl_divergence

from .errors import ConfigError
from .train import Trainer, continue_fit

__all__ = ["WakeSleepTrainer", "dream", "fit_wake_sleep", "sleep_loss", "wake_loss"]


def wake_loss(model, x, eps, *, x_rec=None, xi_noise=None) -> dict:
    """The wake phase's loss: -E_q[log pi(x | h(xi))], xi held fixed.

    The weight prior of eq. 13 is not in it: as in Algorithm 1, its gradient is added after
    ``backward`` by ``DLGM.add_prior_gradient`` (``WakeSleepTrainer.step`` does).

    Parameters
    ----------
    model : DLGM
    x : Tensor, (B, D)
        The (binarised) minibatch.
    eps : Tensor, (S, B, K)
        Standard normal noise for xi = mu + R eps (eq. 21); xi is detached from q.
    x_rec : Tensor, (B, D), optional
        Input of the recognition model (a noisy copy of x, sec. 4.1); x by default.
    xi_noise : Tensor, (S, B, K), optional
        Extra Gaussian noise on the recognition samples (sec. 4.1).

    Returns
    -------
    dict
        ``loss`` (scalar; its gradient reaches the generative parameters only), and, detached,
        ``elbo`` (batch mean of E_q log pi(x|h) - KL(q || N(0, I)), analytic KL, nats per example),
        ``rec`` and ``kl`` (batch means), as ``DLGM.free_energy`` returns them.
    """
    with torch.no_grad():
        q = model._encode(x if x_rec is None else x_rec)
        xi = q.reparameterize(eps)  # (S, B, K), a constant for the wake phase
        if xi_noise is not None:
            xi = xi + xi_noise
        kl = kl_divergence(q, model.prior())  # (B,)
    rec = model.log_likelihood(x, xi).mean(0)  # (B,); the prior term of eq. 6 has no theta^g
    elbo = (rec.detach() - kl).mean()
    return {"loss": -rec.mean(), "elbo": elbo, "rec": rec.detach().mean(), "kl": kl.mean()}


@torch.no_grad()
def dream(model, n: int, generator: torch.Generator | None = None):
    """Fantasies (xi, v) from the generative model: xi ~ N(0, I), v ~ pi(v | h(xi)).

    Gaussian pixels are drawn without clipping (unlike ``DLGM.sample_pixels``), so that v is a
    draw from pi itself. Returns xi (n, K) and v (n, D).
    """
    p = next(model.parameters())
    xi = torch.randn((n, model.latent_dim), generator=generator, dtype=p.dtype, device=p.device)
    return xi, model.observation(xi).sample(generator=generator)  # (n, K), (n, D)


def sleep_loss(model, xi, v) -> torch.Tensor:
    """The sleep phase's loss: -mean log q(xi | v) over dreams; its gradient reaches the
    recognition parameters only.

    Parameters
    ----------
    model : DLGM
    xi : Tensor, (n, K)
    v : Tensor, (n, D)
        Dreams from :func:`dream` (constants).

    Returns
    -------
    Tensor, scalar, nats per dream.
    """
    return -model._encode(v).log_prob(xi).mean()


class WakeSleepTrainer(Trainer):
    """``Trainer`` with the wake-sleep rule in place of Algorithm 1.

    It takes the same settings as :class:`~dlgm.train.Trainer` and reuses its minibatches,
    dynamic binarisation, random streams, progress reports (``free_energy`` and ``elbo`` are
    those of the wake phase's minibatch), NaN recovery and bit-exact checkpoints; ``fit``-style
    use goes through :func:`fit_wake_sleep`. Every step draws, from the trainer's stream, the
    wake phase's noise for the minibatch of B images and then B dreams for the sleep phase.
    Single process only.
    """

    def __init__(self, model, x_train, **settings):
        super().__init__(model, x_train, **settings)
        if self.world > 1:
            raise ConfigError("wake-sleep training runs in a single process only")
        self.model.metadata["training_rule"] = "wake-sleep"

    def step(self) -> dict:
        """One wake phase and one sleep phase; returns the wake phase's terms (detached) plus
        ``sleep`` (the sleep loss, -mean log q(xi | v) over the dreams), ``x`` and ``eps``."""
        xb = self._next_batch()
        xb, x_rec, eps, xi_noise = self._draw_noise(xb)
        wake = wake_loss(self.model, xb, eps, x_rec=x_rec, xi_noise=xi_noise)
        xi_d, v_d = dream(self.model, len(xb), generator=self.dev_gen)
        sleep = sleep_loss(self.model, xi_d, v_d)
        self.opt.zero_grad(set_to_none=True)
        (wake["loss"] + sleep).backward()  # disjoint graphs: each phase's own gradient
        self._clip_and_step()  # + the weight prior's gradient (eq. 13), as in Algorithm 1
        self.step_count += 1
        return {
            "loss": -wake["elbo"],
            "elbo": wake["elbo"],
            "rec": wake["rec"],
            "kl": wake["kl"],
            "sleep": sleep.detach(),
            "x": xb,
            "eps": eps,
        }


def fit_wake_sleep(
    model, x_train, *, epochs=10, callback=None, checkpoint_dir=None, checkpoint_every=1, **settings
) -> WakeSleepTrainer:
    """Train ``model`` by wake-sleep for ``epochs``; the arguments are those of
    :func:`dlgm.train.fit`. Returns the trainer (its ``history`` holds per-epoch reports)."""
    trainer = WakeSleepTrainer(model, x_train, **settings)
    return continue_fit(
        trainer,
        epochs=epochs,
        callback=callback,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )

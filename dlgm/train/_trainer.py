"""The Trainer: Algorithm 1: minibatches, S samples per point, RMSprop (eq. 18) or Adam.

``Trainer`` owns the optimiser, the random streams and the position in the data, so that a run
can be stepped one update at a time (the app's step mode), iterated with progress reports
(``run`` yields ``Progress``; break out of the loop to stop and keep the model trained so far),
checkpointed and resumed bit for bit, and run data-parallel under ``torchrun``.

Randomness: every random draw of a step (binarisation, input noise, eps, sample noise) is made
for the whole global minibatch from one seeded stream, and each process keeps its own slice, so a
run on N processes computes the same gradients as a run on one, up to floating-point noise.

Non-finite losses: every ``report_every`` steps the trainer checks the losses and weights; on a
NaN or infinity it restores the last good state, multiplies the learning rate by ``lr_backoff``,
reports it in ``Progress.message`` and goes on. A checkpoint is only ever written from a good
state.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..errors import ConfigError, TrainingError
from ..model import U_INIT_STD
from . import _state
from ._fast import _FastStep
from ._host import note_host

OPTIMIZERS = ("rmsprop", "adam")
BINARIZE = ("dynamic", "none")
INPUT_NOISE = ("none", "bitflip", "dropout")
LR_SCHEDULES = ("constant", "iwae")
IWAE_STAGES = 8  # Burda et al. (2016): stages i = 0..7 of 3^i epochs each, 3280 epochs in all


def iwae_lr_factor(epoch: int) -> float:
    """The learning-rate factor of Burda, Grosse & Salakhutdinov (2016) in (1-based) ``epoch``.

    They train for 3^i epochs at ``lr * 10^(-i/7)`` for i = 0, ..., 7 (3280 epochs in all):
    stage i covers epochs ``sum_{j<i} 3^j + 1`` to ``sum_{j<=i} 3^j``, so epoch 1 has factor
    1, epochs 2-4 have 10^(-1/7), epochs 5-13 have 10^(-2/7), ..., epochs 1094-3280 have
    10^(-7/7) = 0.1. Past epoch 3280 the last stage goes on (0.1).
    """
    if epoch < 1:
        raise ValueError(f"epoch={epoch}: epochs count from 1")
    stage, end = 0, 1  # end: the last epoch of ``stage``
    while epoch > end and stage < IWAE_STAGES - 1:
        stage += 1
        end += 3**stage
    return 10.0 ** (-stage / 7)


@dataclass
class Progress:
    """A progress report. Losses are per example, in nats, averaged since the last report."""

    step: int
    epoch: float  # epochs done, fractional
    free_energy: float  # the loss of eq. 13 (with the weight prior / N)
    elbo: float
    samples_per_s: float
    lr: float
    valid_elbo: float | None = None  # on ``x_valid`` at the end of an epoch
    kl_weight: float = 1.0  # beta of the KL term at the last step (< 1 during a KL warm-up)
    end_of_epoch: bool = False
    message: str | None = None  # e.g. a NaN recovery


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; 'cuda' without a GPU raises ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for, but no CUDA GPU is available; use --device cpu or auto"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device={device!r}: choose auto, cpu or cuda")
    return torch.device(device)


def _check_settings(s: dict, n: int) -> None:
    def need(ok, msg):
        if not ok:
            raise ConfigError(msg)

    need(s["optimizer"] in OPTIMIZERS, f"optimizer={s['optimizer']!r}: choose {OPTIMIZERS}")
    need(
        s["binarize"] in BINARIZE,
        f"binarize={s['binarize']!r}: choose {BINARIZE} "
        "(static binarisation is done once on the data: dlgm.data.static_binarize)",
    )
    need(s["input_noise"] in INPUT_NOISE, f"input_noise={s['input_noise']!r}: choose {INPUT_NOISE}")
    need(
        1 <= s["batch_size"] <= 1_000_000, f"batch_size={s['batch_size']}: must be in [1, 1000000]"
    )
    need(1 <= s["n_samples"] <= 10_000, f"n_samples={s['n_samples']}: must be in [1, 10000]")
    need(0 < s["lr"] <= 10 and math.isfinite(s["lr"]), f"lr={s['lr']}: must be in (0, 10]")
    need(0 <= s["input_noise_p"] < 1, f"input_noise_p={s['input_noise_p']}: must be in [0, 1)")
    need(0 <= s["sample_noise"] < 10, f"sample_noise={s['sample_noise']}: must be in [0, 10)")
    need(s["clip_grad"] is None or s["clip_grad"] > 0, "clip_grad must be > 0 or None")
    need(0 < s["lr_backoff"] < 1, f"lr_backoff={s['lr_backoff']}: must be in (0, 1)")
    need(s["report_every"] >= 1, "report_every must be >= 1")
    need(0 < s["lr_decay"] <= 1, f"lr_decay={s['lr_decay']}: must be in (0, 1]")
    need(0 <= s["u_delay"] <= 100_000, f"u_delay={s['u_delay']}: must be in [0, 100000]")
    need(
        0 <= s["kl_warmup"] <= 100_000 and math.isfinite(s["kl_warmup"]),
        f"kl_warmup={s['kl_warmup']}: must be in [0, 100000] epochs",
    )
    need(
        0 <= s["free_bits"] <= 10_000 and math.isfinite(s["free_bits"]),
        f"free_bits={s['free_bits']}: must be in [0, 10000] nats per layer",
    )
    need(
        s["lr_schedule"] in LR_SCHEDULES,
        f"lr_schedule={s['lr_schedule']!r}: choose {LR_SCHEDULES}",
    )
    need(
        s["lr_schedule"] == "constant" or s["lr_decay"] == 1.0,
        f"lr_schedule={s['lr_schedule']!r} sets the learning rate of every epoch itself; "
        f"it cannot be combined with lr_decay={s['lr_decay']} (leave lr_decay at 1)",
    )
    need(n >= 1, "the training data has no rows")


class Trainer:
    """Algorithm 1 for a ``DLGM`` on data ``x_train``.

    Parameters
    ----------
    model : DLGM
        Trained in place.
    x_train : array or Tensor, (N, D)
        Grey levels in [0, 1] (binarised on the fly if ``binarize="dynamic"``).
    batch_size : int
        The global minibatch size (the paper's 200), split across processes under DDP.
    n_samples : int
        S, samples of xi per example.
    optimizer : {"rmsprop", "adam"}
    lr : float
    binarize : {"dynamic", "none"}
        Resample binary pixels from the grey levels for every minibatch, or use x as it is.
    input_noise, input_noise_p :
        Recognition-input regularisation (sec. 4.1): flip ("bitflip") or zero ("dropout") each
        pixel of the recognition model's input with probability ``input_noise_p``.
    sample_noise : float
        Std of the extra Gaussian noise on recognition samples (sec. 4.1).
    clip_grad : float or None
        Max global gradient norm.
    lr_decay : float
        Multiplies the learning rate at the start of every epoch after the first (1: constant).
    seed : int
        Seeds every random draw of the run (the library never seeds globally).
    fast : bool
        Compile the step with ``torch.compile``, keep data, permutation and random draws on
        the device, and on CUDA replay the whole update as one CUDA graph (``_FastStep``). The
        same random numbers as the plain path; results equal up to rounding. One process only.
    u_delay : int
        Rank-one recognition models only: for the first ``u_delay`` epochs the rank-one factor
        u is exactly 0 (its head's weights are zeroed; u = 0 is a stationary point of the
        free energy, which is even in u, so it stays there and q is diagonal); at the start of
        epoch ``u_delay + 1`` the head gets its usual random initialisation (std
        ``U_INIT_STD``) and a fresh optimiser state, and u is trained from then on. 0 (the
        default) trains u from the first step. See experiments/RESULTS.md (rank-one vs
        diagonal) for why a delay helps.
    init_output_bias : bool
        On a fresh start (not on a resume, which loads its own weights) set the bias of the
        generative model's output layer (``output_layer()``, the last linear layer of T_0) to
        the mean training pixel: for Bernoulli pixels its logit, logit(clip(mean, 1e-3,
        1 - 1e-3)) per pixel (with dynamic binarisation the mean grey level is the mean
        binarised pixel); for Gaussian pixels the mean itself (the output is the mean; sigma is
        ``log_sigma``). The common trick of Burda et al. (2016, IWAE). False by default.
    lr_schedule : {"constant", "iwae"}
        "constant" (the default): ``lr`` throughout, times ``lr_decay`` per epoch. "iwae": the
        schedule of Burda et al. (2016), 3^i epochs at ``lr * 10^(-i/7)`` for i = 0..7 (3280
        epochs; later epochs stay at ``lr / 10``), see :func:`iwae_lr_factor`; applied at
        epoch boundaries like ``lr_decay`` (a NaN recovery's back-off carries over), so it
        resumes bit for bit. Cannot be combined with ``lr_decay != 1``.
    kl_warmup : float
        KL warm-up (deterministic annealing; Bowman et al. 2016, Sonderby et al. 2016): for
        the first ``kl_warmup`` epochs the loss is ``-(E_q log pi(v|h) - beta KL)`` with beta
        rising linearly with the step, from 0 at the first step to 1 after ``kl_warmup``
        epochs (:meth:`kl_weight`); from then on it is the free energy of eq. 13. The
        reported free energy and ELBO are always the true ones (beta = 1). A function of the
        step count, so a resumed run goes on bit for bit. 0 (the default): no warm-up.
    free_bits : float
        "Free bits" (Kingma et al. 2016), lambda nats per stochastic layer: the loss's KL term
        is ``KL + sum_l max(0, lambda - KL_l)`` (``DLGM.free_energy``), so no layer's mean KL
        is pulled below lambda; meant to keep a deep model's top layer from being switched
        off. Combines with ``kl_warmup`` (the floor is weighted by beta too). The reported
        free energy and ELBO are the true ones. Under data-parallel training each process
        takes the mean over its share of the minibatch. 0 (the default): none.
    x_valid : array or Tensor, optional
        Data whose ELBO is reported at the end of each epoch (at most 1000 rows are used).
    """

    def __init__(
        self,
        model,
        x_train,
        *,
        batch_size=200,
        n_samples=1,
        optimizer="rmsprop",
        lr=3e-4,
        binarize="dynamic",
        input_noise="none",
        input_noise_p=0.0,
        sample_noise=0.0,
        clip_grad=None,
        seed=0,
        device="auto",
        x_valid=None,
        report_every=50,
        lr_backoff=0.5,
        max_recoveries=10,
        lr_decay=1.0,
        fast=False,
        u_delay=0,
        init_output_bias=False,
        lr_schedule="constant",
        kl_warmup=0.0,
        free_bits=0.0,
        _resuming=False,
    ):
        if not isinstance(init_output_bias, bool | np.bool_):
            raise ConfigError(f"init_output_bias={init_output_bias!r}: must be True or False")
        self.settings = dict(
            batch_size=int(batch_size),
            n_samples=int(n_samples),
            optimizer=optimizer,
            lr=float(lr),
            binarize=binarize,
            input_noise=input_noise,
            input_noise_p=float(input_noise_p),
            sample_noise=float(sample_noise),
            clip_grad=clip_grad,
            seed=int(seed),
            report_every=int(report_every),
            lr_backoff=float(lr_backoff),
            max_recoveries=int(max_recoveries),
            lr_decay=float(lr_decay),
            fast=bool(fast),
            u_delay=int(u_delay),
            init_output_bias=bool(init_output_bias),
            lr_schedule=lr_schedule,
            kl_warmup=float(kl_warmup),
            free_bits=float(free_bits),
        )
        _check_settings(self.settings, len(x_train))
        if self.settings["u_delay"] and not hasattr(model, "head_u"):
            raise ConfigError(
                f"u_delay={u_delay}: only a rank-one recognition model has a "
                "factor u to delay (covariance 'rank1' or 'rank1-joint')"
            )
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).train()
        self.x = self._as_tensor(x_train, "x_train")
        self.x_valid = None if x_valid is None else self._as_tensor(x_valid[:1000], "x_valid")
        if self.settings["init_output_bias"] and not _resuming:
            self._init_output_bias()  # a resumed run loads its own weights
        self.rank, self.world = (
            (dist.get_rank(), dist.get_world_size())
            if (dist.is_available() and dist.is_initialized())
            else (0, 1)
        )
        if self.settings["batch_size"] % self.world:
            raise ConfigError(
                f"batch_size={batch_size} must be divisible by the number of "
                f"processes ({self.world})"
            )
        rest = len(self.x) % self.settings["batch_size"]
        if 0 < rest < self.world:
            raise ConfigError(
                f"the last minibatch of each epoch has {rest} rows "
                f"({len(self.x)} % {batch_size}), fewer than the {self.world} "
                "processes; choose another batch size"
            )
        self.fast = self.settings["fast"]
        if self.fast and self.world > 1:
            raise ConfigError(
                "fast=True trains in one process; under torchrun leave it off "
                "(DDP already overlaps its all-reduce with the backward pass)"
            )
        self.ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model)
        self.opt = self._make_optimizer()
        self._fast = _FastStep(self) if self.fast else None
        self.gen = torch.Generator().manual_seed(self.settings["seed"])  # shuffles (CPU)
        self.dev_gen = torch.Generator(self.device).manual_seed(self.settings["seed"] + 1)
        self.step_count, self.epoch, self.pos = 0, 0, 0
        self.perm = self._new_perm()
        self.history: list[dict] = []
        self.recoveries = 0
        self.seconds = 0.0  # wall time spent in run(), over every session of a resumed run
        self.hosts = note_host([], self.device, 0)  # a resumed run: the saved list, + this host
        self._good = None
        if self.settings["u_delay"]:
            self._set_u_head(0.0)  # q starts diagonal (a resumed run loads its own weights)
        self._snapshot()

    # ------------------------------------------------------------------ setup
    def _as_tensor(self, x, name):
        x = x if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x), dtype=torch.float32)
        x = self.model.check_input(x.reshape(len(x), -1).float(), name)
        if x.min() < 0 or x.max() > 1:
            raise ConfigError(
                f"{name} values lie in [{float(x.min()):.3g}, {float(x.max()):.3g}]"
                "; expected grey levels in [0, 1]"
            )
        return x.to(self.device).contiguous()

    def _make_optimizer(self):
        params, lr = self.model.parameters(), self.settings["lr"]
        adam, extra = self.settings["optimizer"] == "adam", {}
        if self.fast:  # lr as a tensor, so that a CUDA graph of the step sees its changes
            lr = torch.tensor(lr, device=self._lr_device())
            if self.device.type == "cuda":  # capturable: the update reads lr and step on GPU
                extra = dict(foreach=True, capturable=True)
            else:  # one fused kernel per tensor (RMSprop has none: _FastStep compiles its step)
                extra = dict(fused=True) if adam else dict(foreach=False)
        if adam:
            return torch.optim.Adam(params, lr=lr, **extra)
        # RMSprop as in Hinton's lecture 6e: running average of squared gradients, decay 0.95.
        return torch.optim.RMSprop(params, lr=lr, alpha=0.95, eps=1e-6, **extra)

    def _set_lr(self, value: float) -> None:
        """Set the learning rate in place (a tensor learning rate keeps its storage)."""
        for group in self.opt.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def _scale_lr(self, factor: float) -> None:
        for group in self.opt.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].mul_(factor)  # in place, no host sync
            else:
                group["lr"] *= factor

    def _load_optimizer_state(self, state: dict) -> None:
        """Load an optimiser state; the hyperparameters other than lr (capturable, foreach,
        ...) stay this trainer's, so a state saved by the fast path on a GPU loads into the
        plain path on a CPU and back."""
        groups = [
            {**cur, "params": saved["params"], "lr": float(saved["lr"])}
            for cur, saved in zip(
                self.opt.state_dict()["param_groups"], state["param_groups"], strict=True
            )
        ]
        self.opt.load_state_dict({"state": state["state"], "param_groups": groups})
        for group in self.opt.param_groups:  # the fast path keeps lr as a tensor
            if self.fast:
                group["lr"] = torch.tensor(float(group["lr"]), device=self._lr_device())
        if self._fast is not None:
            self._fast.reset()

    def _lr_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _new_perm(self):
        return torch.randperm(len(self.x), generator=self.gen)

    @property
    def n_data(self) -> int:
        return len(self.x)

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_data / self.settings["batch_size"])

    def kl_weight(self, step: int | None = None) -> float | None:
        """beta of the KL term in update ``step`` (0-based; default: the next one) under
        ``kl_warmup``: ``min(1, step / (kl_warmup * steps_per_epoch))``; None without a
        warm-up (the loss is then the free energy itself, computed as before)."""
        warmup = self.settings["kl_warmup"]
        if not warmup:
            return None
        step = self.step_count if step is None else step
        return min(1.0, step / (warmup * self.steps_per_epoch))

    # ------------------------------------------------------------------ one update
    def _advance(self) -> slice:
        """The next minibatch's slice of ``perm``; starts a new epoch when one is done."""
        if self.pos >= len(self.perm):
            self.epoch, self.pos, self.perm = self.epoch + 1, 0, self._new_perm()
            if self.settings["lr_decay"] != 1.0:
                self._scale_lr(self.settings["lr_decay"])
            if self.settings["lr_schedule"] == "iwae":  # epoch + 1: the new epoch, 1-based
                ratio = iwae_lr_factor(self.epoch + 1) / iwae_lr_factor(self.epoch)
                if ratio != 1.0:  # a new stage (NaN back-offs carry over, as with lr_decay)
                    self._scale_lr(ratio)
            if self.epoch == self.settings["u_delay"]:
                self._start_u()
        start = self.pos
        self.pos = min(start + self.settings["batch_size"], len(self.perm))
        return slice(start, self.pos)

    def _next_batch(self):
        idx = self.perm[self._advance()]
        return self.x[idx.to(self.device)]  # (B, D)

    def _draw_noise(self, xb):
        """All random draws of one step, for the global batch, from one stream."""
        s, g = self.settings, self.dev_gen
        shape = (s["n_samples"], len(xb), self.model.latent_dim)
        if s["binarize"] == "dynamic":
            xb = (torch.rand(xb.shape, generator=g, device=xb.device) < xb).to(xb.dtype)
        x_rec = xb
        if s["input_noise"] != "none" and s["input_noise_p"] > 0:
            hit = torch.rand(xb.shape, generator=g, device=xb.device) < s["input_noise_p"]
            x_rec = torch.where(hit, 1.0 - xb if s["input_noise"] == "bitflip" else 0.0, xb)
        eps = torch.randn(shape, generator=g, device=xb.device)  # (S, B, K)
        xi_noise = None
        if s["sample_noise"] > 0:
            xi_noise = s["sample_noise"] * torch.randn(shape, generator=g, device=xb.device)
        return xb, x_rec, eps, xi_noise

    def _shard(self, *tensors):
        """This process's slice of each global-batch tensor (batch is dim -2 of eps)."""
        if self.world == 1:
            return tensors
        out = []
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            dim = 0 if t.dim() == 2 else 1
            out.append(t.tensor_split(self.world, dim=dim)[self.rank])
        return out

    def step(self) -> dict:
        """Apply one update (Algorithm 1) and return its loss terms (tensors, per example):
        ``loss`` is -ELBO of the batch; the weight prior enters through its gradient
        (``DLGM.add_prior_gradient``) and is added to the reported free energy in ``run``.

        The dict also holds ``x`` (the binarised batch), ``eps`` and ``xi`` of this process,
        for the app's step mode.
        """
        if self._fast is not None:
            out = self._fast.step()
            self.step_count += 1
            return out
        xb = self._next_batch()
        n_global = len(xb)
        xb, x_rec, eps, xi_noise = self._shard(*self._draw_noise(xb))
        net = self.ddp or self.model  # DDP's hooks need the call to go through its wrapper
        # -ELBO (or its KL warm-up version); the weight prior comes below
        out = net(
            xb,
            x_rec=x_rec,
            eps=eps,
            xi_noise=xi_noise,
            kl_weight=self.kl_weight(),
            free_bits=self.settings["free_bits"] or None,
        )
        loss = out["loss"]
        if self.world > 1:  # DDP averages the processes: weight each by its share of rows
            loss = loss * (len(xb) * self.world / n_global)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_and_step()
        self.step_count += 1
        out.update(x=xb, eps=eps)
        return out

    def prior_term(self) -> float:
        """||theta^g||^2 / (2 kappa N): the weight prior's share of the per-example loss."""
        with torch.no_grad():
            return float(self.model.weight_penalty()) / self.n_data

    def _clip_and_step(self) -> None:
        """After backward: the weight prior's gradient, clipping, the optimiser's update."""
        self.model.add_prior_gradient(self.n_data)  # the weight prior of eq. 13
        if self.settings["clip_grad"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings["clip_grad"])
        if self._fast is not None:
            self._fast.opt_step()
        else:
            self.opt.step()

    # ------------------------------------------------------------------ output bias
    def output_layer(self) -> torch.nn.Linear:
        """The generative model's last linear layer, whose outputs are the pixel parameters
        T_0(h_1): Bernoulli logits, or Gaussian means (the variances are ``log_sigma``)."""
        return [m for m in self.model.T[0] if isinstance(m, torch.nn.Linear)][-1]

    @torch.no_grad()
    def _init_output_bias(self) -> None:
        """``init_output_bias``: set the output layer's bias to the data's mean pixel, as a
        logit clip(mean, 1e-3, 1 - 1e-3) for Bernoulli pixels (with dynamic binarisation the
        mean grey level is the mean binarised pixel), as the mean itself for Gaussian ones."""
        likelihood = self.model.config.likelihood
        if likelihood not in ("bernoulli", "gaussian"):
            raise ConfigError(
                f"init_output_bias: no rule for likelihood {likelihood!r} "
                "(Bernoulli pixels: the logit of the mean; Gaussian pixels: the mean)"
            )
        mean = self.x.double().mean(0)  # (D,)
        if likelihood == "bernoulli":
            mean = mean.clamp(1e-3, 1 - 1e-3)
            mean = torch.log(mean) - torch.log1p(-mean)  # logit
        bias = self.output_layer().bias
        bias.copy_(mean.to(bias.dtype))

    # ------------------------------------------------------------------ delayed u
    @torch.no_grad()
    def _set_u_head(self, std: float) -> None:
        """Zero the u head (``std=0``) or draw its weights from N(0, std^2) with a stream of
        its own (seeded by the run's seed), in place; its bias is zero either way."""
        head = self.model.head_u
        if std > 0:
            g = torch.Generator().manual_seed(self.settings["seed"] + 7919)
            head.weight.copy_(std * torch.randn(head.weight.shape, generator=g))
        else:
            head.weight.zero_()
        head.bias.zero_()

    def _start_u(self) -> None:
        """End of the u delay: initialise the u head as a new model would and forget its
        optimiser state (all zeros so far), so its first updates get Adam's bias correction."""
        self._set_u_head(U_INIT_STD)
        for p in self.model.head_u.parameters():
            self.opt.state.pop(p, None)
        if self._fast is not None:
            self._fast.reset()

    # ------------------------------------------------------------------ recovery
    def _snapshot(self):
        self._good = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.opt.state_dict()))

    def _finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def _recover(self) -> str:
        self.recoveries += 1
        if self.recoveries > self.settings["max_recoveries"]:
            raise TrainingError(
                f"the loss stayed non-finite after {self.recoveries - 1} "
                "recoveries; lower the learning rate or check the data"
            )
        old = self.lr  # before the restore, which puts back the snapshot's (higher) lr
        model_state, opt_state = self._good
        self.model.load_state_dict(model_state)
        self._load_optimizer_state(opt_state)
        self._set_lr(old * self.settings["lr_backoff"])
        return (
            f"non-finite loss at step {self.step_count}: restored the last good state and "
            f"lowered the learning rate from {old:.3g} to {self.lr:.3g}"
        )

    # ------------------------------------------------------------------ loops
    @torch.no_grad()
    def valid_elbo(self) -> float | None:
        if self.x_valid is None:
            return None
        self.model.eval()
        g = torch.Generator(self.device).manual_seed(12345)
        x = self.x_valid
        if self.settings["binarize"] == "dynamic":
            x = (torch.rand(x.shape, generator=g, device=x.device) < x).float()
        value = float(self.model.elbo(x, generator=g).mean())
        self.model.train()
        return value

    def run(self, epochs: float | None = None, steps: int | None = None):
        """Train, yielding a ``Progress`` every ``report_every`` steps and at each epoch's end.

        Stops after ``epochs`` more epochs or ``steps`` more steps (whichever is given; both:
        the first reached). Breaking out of the loop stops training and keeps the model.
        """
        if epochs is None and steps is None:
            raise ConfigError("give epochs or steps")
        if epochs is not None and not 0 < epochs <= 100_000:
            raise ConfigError(f"epochs={epochs}: must be in (0, 100000]")
        steps_per_epoch = self.steps_per_epoch
        last = self.step_count + min(
            steps if steps is not None else math.inf,
            round(epochs * steps_per_epoch) if epochs is not None else math.inf,
        )
        every = self.settings["report_every"]
        sums, n, t0, seen = None, 0, time.perf_counter(), 0
        while self.step_count < last:
            beta = self.kl_weight()
            out = self.step()
            sums = out["elbo"] if sums is None else sums + out["elbo"]
            n, seen = n + 1, seen + len(out["x"]) * self.world
            end_epoch = self.pos >= len(self.perm)
            if n < every and not end_epoch and self.step_count < last:
                continue
            elbo = float(sums / n)  # the only host sync: once per report
            loss = -elbo + self.prior_term()  # F of eq. 13 per example, even during a warm-up
            message = None
            if not (math.isfinite(loss) and math.isfinite(elbo) and self._finite()):
                message = self._recover()
            else:
                self._snapshot()
            dt = max(time.perf_counter() - t0, 1e-9)
            p = Progress(
                step=self.step_count,
                epoch=self.epoch + self.pos / len(self.perm),
                free_energy=loss,
                elbo=elbo,
                samples_per_s=seen / dt,
                lr=self.lr,
                kl_weight=1.0 if beta is None else beta,
                end_of_epoch=end_epoch and message is None,
                message=message,
            )
            if p.end_of_epoch:
                p.valid_elbo = self.valid_elbo()
                self.history.append(
                    {k: v for k, v in asdict(p).items() if k not in ("end_of_epoch", "message")}
                )
            self.seconds += time.perf_counter() - t0  # not the caller's time between reports
            yield p
            sums, n, t0, seen = None, 0, time.perf_counter(), 0

    # ------------------------------------------------------------------ checkpoints
    def record(self) -> dict:
        """Write the run into the model's card: ``metadata["history"]`` (per-epoch reports),
        ``metadata["hosts"]`` (where it ran, see ``_host``) and ``metadata["training"]`` (the
        settings, steps and epochs done). Returns the latter."""
        self.model.metadata["history"] = self.history
        self.model.metadata["hosts"] = self.hosts
        self.model.metadata["training"] = {
            **self.settings,
            "steps": self.step_count,
            "epochs": round(self.epoch + self.pos / len(self.perm), 4),
        }
        return self.model.metadata["training"]

    def save(self, directory, **metadata):
        """Write the model (``model.safetensors`` + ``card.json``) and the training state
        (optimiser, random streams, position) so that ``resume`` continues bit for bit.
        Only a finite model is written. Returns the directory."""
        if not self._finite():
            raise TrainingError("refusing to write a checkpoint with non-finite weights")
        self.model.metadata.update(metadata)
        self.record()
        return _state.save(self, directory)

    def load_state(self, directory) -> None:
        """Restore the optimiser, random streams and position written by ``save``."""
        _state.load_into(self, directory)

    @classmethod
    def resume(cls, directory, x_train, *, device="auto", x_valid=None, **overrides):
        """Rebuild model and trainer from a directory written by ``save``."""
        model, settings = _state.read_model_and_settings(directory)
        settings.update(overrides)
        trainer = cls(model, x_train, device=device, x_valid=x_valid, _resuming=True, **settings)
        trainer.load_state(directory)
        return trainer


def fit(
    model, x_train, *, epochs=10, callback=None, checkpoint_dir=None, checkpoint_every=1, **settings
) -> Trainer:
    """Train ``model`` for ``epochs``; ``callback(progress)`` is called with every report and
    may return ``False`` to stop. Checkpoints go to ``checkpoint_dir`` every
    ``checkpoint_every`` epochs and at the end. Returns the Trainer."""
    trainer = Trainer(model, x_train, **settings)
    return continue_fit(
        trainer,
        epochs=epochs,
        callback=callback,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )


def continue_fit(trainer, *, epochs, callback=None, checkpoint_dir=None, checkpoint_every=1):
    """Run ``trainer`` until it has done ``epochs`` epochs in all (so a resumed run finishes
    where an uninterrupted one would)."""
    remaining = round(epochs * trainer.steps_per_epoch) - trainer.step_count
    if remaining <= 0:
        return trainer
    for p in trainer.run(steps=remaining):
        if (
            checkpoint_dir
            and trainer.rank == 0
            and p.end_of_epoch
            and (round(p.epoch) % checkpoint_every == 0)
        ):
            trainer.save(checkpoint_dir)
        if callback is not None and callback(p) is False:
            break
    if checkpoint_dir and trainer.rank == 0:
        trainer.save(checkpoint_dir)
    return trainer

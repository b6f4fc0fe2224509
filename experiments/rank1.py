"""Why rank-one trails diagonal, and what fixes it: paired runs on the Table 1 architecture.

Each *arm* is one recognition model and training recipe; each run is one (arm, seed). A run
trains with the library's own Trainer and then measures, on fixed data:

- the test ELBO on all 10,000 MNIST test images, binarised once with seed 1 (the CLI's
  evaluation seed for dynamically binarised models), 1 sample per image, analytic KL;
- the training ELBO on the first 10,000 training images (binarised once with seed 0): a lower
  training ELBO means worse optimisation, not overfitting;
- the importance-sampled NLL with K = ``--k`` on the first ``--nll-images`` test images;
- the posterior's shape over the test set: u^T D^{-1} u and eta = 1 / (1 + u^T D^{-1} u)
  (eq. 20), the precision diagonal d of the active latents, the number of active latents
  (Burda et al. 2016: Var_x E_q[xi_k] > 0.01; in all and per stochastic layer), the number
  of active *directions* (eigenvalues of Cov_x E_q[xi] above 0.01: the prior is isotropic, so
  a code spread along a direction u that is not an axis counts once), and per image the
  number of "sharp" latents, d_k > 2 (posterior variance along axis k under half the prior's;
  the rank-one term adds one sharp direction on top); the test ELBO's two terms,
  E_q log p(v|xi) and KL(q || p);
- the gradient of the recognition heads (mu, d, u) over 20 minibatches of 100 training
  images: norm of the mean gradient and the total variance across minibatches.

Per epoch it records the valid ELBO (first 1,000 test images, the Trainer's own) and the wall
time. Runs are resumable (the Trainer's checkpoint every epoch): rerun the same command.

Usage::

    python experiments/rank1.py run --arm rank1-delay --seed 0 --epochs 10
    python experiments/rank1.py report --epochs 10          # the paired table, markdown
    python experiments/rank1.py report --epochs 10 --json   # everything
    python experiments/rank1.py report --epochs 10 --baseline diag-2d --arms rank1-2d rank1-delay-2d

Runs go to ``experiments/runs/rank1/E{epochs}/{arm}-s{seed}/`` (not committed; ``result.json``
there holds every number). One torch thread per run (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlgm import DLGM, DLGMConfig  # noqa: E402
from dlgm.data import load_dataset, static_binarize  # noqa: E402
from dlgm.likelihood import log_likelihood  # noqa: E402
from dlgm.posteriors import layer_kl  # noqa: E402
from dlgm.sampling import layer_influence  # noqa: E402
from dlgm.train import STATE_FILE, Trainer  # noqa: E402

RUNS = ROOT / "experiments" / "runs" / "rank1"
TABLE1 = dict(n_latent=(200,), gen_hidden=(200, 200), rec_hidden=(200, 200), kappa=1.0)
MNIST2D = dict(n_latent=(2,), gen_hidden=(200, 200), rec_hidden=(200, 200), kappa=1.0)
# the deep model of pretrained/mnist-deep-rank1(-warmup): two stochastic layers (IWAE's 100, 50)
DEEP = dict(n_latent=(100, 50), gen_hidden=(200, 200), rec_hidden=(300, 300), kappa=1.0)
SHAPES = {"-2d": MNIST2D, "-deep": DEEP}
RECIPE = dict(optimizer="adam", lr=1e-3, batch_size=100, binarize="dynamic", report_every=100)


# arms whose u head starts from the library's initial weights times a factor (the objective
# is even in u, so u = 0 is a stationary point: does the collapse depend on how far from it u
# starts?)
U_SCALED = {"rank1-u-tiny": 1e-3}


def arm_settings(arm: str, epochs: int) -> tuple[dict, dict]:
    """(model config fields, Trainer settings) of an arm. ``-2d`` arms use the 2-latent MNIST
    model of the Embedding/Posterior pages instead of the Table 1 one, ``-deep`` arms the
    two-stochastic-layer model (``DEEP``)."""
    base, shape = arm, TABLE1
    for suffix, fields in SHAPES.items():
        if arm.endswith(suffix):
            base, shape = arm.removesuffix(suffix), fields
    arms = {
        "diag": ({"covariance": "diag"}, {}),
        "rank1": ({"covariance": "rank1"}, {}),
        "rank1-delay": ({"covariance": "rank1"}, {"u_delay": epochs // 2}),
        "rank1-delay1": ({"covariance": "rank1"}, {"u_delay": 1}),
        "rank1-noise": ({"covariance": "rank1"}, {"sample_noise": 0.1}),
        "diag-noise": ({"covariance": "diag"}, {"sample_noise": 0.1}),
        # #9's recipes: the output bias at the logit of the mean pixel; the IWAE lr schedule
        "diag-bias": ({"covariance": "diag"}, {"init_output_bias": True}),
        "rank1-delay-bias": (
            {"covariance": "rank1"},
            {"u_delay": epochs // 2, "init_output_bias": True},
        ),
        "diag-iwae": ({"covariance": "diag"}, {"lr_schedule": "iwae"}),
        # a KL warm-up: beta rises linearly from 0 to 1 over the first third of the epochs
        "diag-warmup": ({"covariance": "diag"}, {"kl_warmup": epochs / 3}),
        # ... over a tenth, or two thirds, of the epochs: how long must it be?
        "diag-warmup-short": ({"covariance": "diag"}, {"kl_warmup": epochs / 10}),
        "diag-warmup-long": ({"covariance": "diag"}, {"kl_warmup": 2 * epochs / 3}),
        "rank1-cap1-warmup": ({"covariance": "rank1", "u_cap": 1.0}, {"kl_warmup": epochs / 3}),
        # with the warm-up, is the bound still needed (u^T D^-1 u sits at 1 for every image in
        # the 655-epoch rank1-cap1 run with a warm-up)? No bound, and the looser bound of 4
        "rank1-warmup": ({"covariance": "rank1"}, {"kl_warmup": epochs / 3}),
        "rank1-cap-warmup": ({"covariance": "rank1", "u_cap": 4.0}, {"kl_warmup": epochs / 3}),
        # point 4's mechanism: after the delay u grows and d shrinks; bound u^T D^-1 u by 4
        "rank1-delay-cap": ({"covariance": "rank1", "u_cap": 4.0}, {"u_delay": epochs // 2}),
        "rank1-delay-cap1": ({"covariance": "rank1", "u_cap": 1.0}, {"u_delay": epochs // 2}),
        # the same bounds with u trained from the first step (no delay)
        "rank1-cap": ({"covariance": "rank1", "u_cap": 4.0}, {}),
        "rank1-cap1": ({"covariance": "rank1", "u_cap": 1.0}, {}),
        # u's initial weights 1,000 times smaller (std 1e-6 instead of U_INIT_STD = 1e-3)
        "rank1-u-tiny": ({"covariance": "rank1"}, {}),
        # the control: u never starts (the same runs as rank1-delay until epoch E/2, then diagonal)
        "rank1-off": ({"covariance": "rank1"}, {"u_delay": epochs}),
        # the deep models' recipes (with ``-deep``): joint rank-one q, u from epoch E/50, and
        # the KL warm-up over a tenth of the run (mnist-deep-rank1 and its -warmup twin)
        "rank1j": ({"covariance": "rank1-joint"}, {"u_delay": max(1, epochs // 50)}),
        "rank1j-warmup": (
            {"covariance": "rank1-joint"},
            {"u_delay": max(1, epochs // 50), "kl_warmup": epochs / 10},
        ),
        # free bits (Kingma et al. 2016): no layer's mean KL pulled below 3 nats (about the
        # log 10 of a digit's class), so that the top layer cannot be switched off by the prior
        "rank1j-fb3": (
            {"covariance": "rank1-joint"},
            {"u_delay": max(1, epochs // 50), "free_bits": 3.0},
        ),
        "rank1j-warmup-fb3": (
            {"covariance": "rank1-joint"},
            {"u_delay": max(1, epochs // 50), "kl_warmup": epochs / 10, "free_bits": 3.0},
        ),
        # is the top layer's KL (3.02 nats after 1,000 epochs with lambda = 3) set by the floor
        # or by the data? The same recipe with the floor doubled
        "rank1j-warmup-fb6": (
            {"covariance": "rank1-joint"},
            {"u_delay": max(1, epochs // 50), "kl_warmup": epochs / 10, "free_bits": 6.0},
        ),
    }
    if base not in arms:
        raise SystemExit(f"unknown arm {arm!r}; choose from {sorted(arms)} (+ '-2d', '-deep')")
    model, train = arms[base]
    return {**shape, **model}, {**RECIPE, **train}


def run_dir(arm: str, seed: int, epochs: int) -> Path:
    return RUNS / f"E{epochs}" / f"{arm}-s{seed}"


# ---------------------------------------------------------------------------- measurements
@torch.no_grad()
def active_by_layer(model, x: torch.Tensor) -> list[int]:
    """Active latents (Var_x E_q[xi_k] > 0.01) of each stochastic layer over the images x."""
    was_training = model.training
    model.eval()
    active = model.encode(x).mean.var(0) > 0.01
    model.train(was_training)
    return [int(a.sum()) for a in model.split(active)]


@torch.no_grad()
def posterior_shape(model, x: torch.Tensor) -> dict:
    """Quantiles of u^T D^{-1} u, eta and d over images (and active latents), active count."""
    q = model.encode(x)
    mean = q.mean  # (N, K)
    active = mean.var(0) > 0.01  # (K,)
    if hasattr(q, "d"):
        d = q.d
    else:  # DiagonalNormal: precision = 1 / scale^2
        d = q.scale.pow(-2)
    eig = torch.linalg.eigvalsh(torch.cov(mean.T.double()))  # (K,)
    sharp = (d > 2).sum(-1).double()  # (N,)
    out = {
        "active_latents": int(active.sum()),
        "active_by_layer": [int(a.sum()) for a in model.split(active)],
        "active_directions": int((eig > 0.01).sum()),
        "sharp_latents_q50": float(sharp.median()),
        "sharp_latents_mean": float(sharp.mean()),
        "d_active_q50": float(d[:, active].median()) if active.any() else None,
        "d_active_q90": float(d[:, active].quantile(0.9)) if active.any() else None,
    }
    if hasattr(q, "u"):
        s = q._s.squeeze(-1)  # (N,) one block
        levels = (10, 50, 90)
        qs = torch.tensor([p / 100 for p in levels], dtype=s.dtype)
        eta = 1.0 / (1.0 + s)
        for name, v in (("uDu", s), ("eta", eta)):
            out.update(
                {f"{name}_q{p}": float(x) for p, x in zip(levels, v.quantile(qs), strict=True)}
            )
    return out


def head_gradients(
    model, x: np.ndarray, n_batches: int = 20, batch: int = 100, seed: int = 0
) -> dict:
    """Norm of the mean gradient and total variance across minibatches of each recognition
    head's weight (the free energy without the weight prior, as Algorithm 1 sees it)."""
    g = torch.Generator().manual_seed(seed)
    heads = {"mu": model.head_loc.weight, "d": model.head_d.weight}
    if hasattr(model, "head_u"):
        heads["u"] = model.head_u.weight
    grads = {k: [] for k in heads}
    for _ in range(n_batches):
        idx = torch.randint(len(x), (batch,), generator=g)
        xb = torch.as_tensor(x[idx.numpy()])
        xb = (torch.rand(xb.shape, generator=g) < xb).float()
        eps = torch.randn(1, batch, model.latent_dim, generator=g)
        loss = model.free_energy(xb, eps=eps)["loss"]
        values = torch.autograd.grad(loss, list(heads.values()))
        for k, v in zip(heads, values, strict=True):
            grads[k].append(v.flatten())
    out = {}
    for k, gs in grads.items():
        gs = torch.stack(gs)  # (n_batches, P)
        out[f"grad_{k}_mean_norm"] = float(gs.mean(0).norm())
        out[f"grad_{k}_total_var"] = float(gs.var(0).sum())
    return out


@torch.no_grad()
def elbo_terms(model, x: torch.Tensor, seed: int = 0) -> dict:
    """Mean E_q log p(v | xi) (one sample), mean KL(q || N(0, I)) and mean KL of each stochastic
    layer's marginal (``dlgm.posteriors.layer_kl``) over ``x``, nats."""
    from torch.distributions import kl_divergence

    q = model.encode(x)
    xi = q.rsample(generator=torch.Generator().manual_seed(seed))
    return {
        "test_rec": float(model.log_likelihood(x, xi).mean()),
        "test_kl": float(kl_divergence(q, model.prior()).mean()),
        # each layer's marginal KL (under a joint q they sum to less than test_kl)
        "test_kl_by_layer": layer_kl(q, model.config.n_latent).mean(0).tolist(),
    }


def measure(model, test_x: np.ndarray, train_x: np.ndarray) -> dict:
    """Everything of a run's result that is cheap to recompute from its saved model."""
    x_test = torch.tensor(static_binarize(test_x, 1))
    x_train = torch.tensor(static_binarize(train_x[:10_000], 0))
    g = torch.Generator().manual_seed(0)
    test_elbo = model.elbo(x_test, generator=g).double().numpy()
    train_elbo = model.elbo(x_train, generator=g).double().numpy()
    return {
        "test_elbo": float(test_elbo.mean()),
        "train_elbo": float(train_elbo.mean()),
        "test_elbo_per_image": test_elbo.round(4).tolist(),
        **elbo_terms(model, x_test),
        **posterior_shape(model, x_test),
        **head_gradients(model, train_x),
        "pixel_change_by_layer": layer_influence(model, generator=torch.Generator().manual_seed(0)),
    }


def nll_of(model, test_x: np.ndarray, k: int, n: int) -> dict:
    """Importance-sampled NLL (K = k) of the first n test images (binarised with seed 1)."""
    x = torch.tensor(static_binarize(test_x[:n], 1))
    g = torch.Generator().manual_seed(1)
    nll = -log_likelihood(model, x, n_samples=k, generator=g).double().numpy()
    return {
        "nll_k": k,
        "nll_images": n,
        "nll": float(nll.mean()),
        "nll_per_image": nll.round(4).tolist(),
    }


def remeasure(args) -> None:
    """Recompute ``measure`` (and with ``--nll`` the NLL) of finished runs from their saved
    models."""
    import dlgm

    test, train = load_dataset("mnist", "test").x, load_dataset("mnist", "train").x
    torch.set_num_threads(args.threads)
    for f in sorted((RUNS / f"E{args.epochs}").glob("*/result.json")):
        r = json.loads(f.read_text())
        model = dlgm.load(f.parent).eval()
        r.update(measure(model, test, train))
        if args.nll:
            r.update(nll_of(model, test, r["nll_k"], r["nll_images"]))
        f.write_text(json.dumps(r))
        print(f"re-measured {f.parent.name}", flush=True)


# ---------------------------------------------------------------------------- one run
def run(args) -> dict:
    torch.set_num_threads(args.threads)
    out = run_dir(args.arm, args.seed, args.epochs)
    out.mkdir(parents=True, exist_ok=True)
    fields, settings = arm_settings(args.arm, args.epochs)
    train = load_dataset("mnist", "train")
    test = load_dataset("mnist", "test")
    valid = test.x[:1000]
    if (out / STATE_FILE).is_file():
        trainer = Trainer.resume(out, train.x, device="cpu", x_valid=valid)
        wall = json.loads((out / "card.json").read_text()).get("wall_time_s", 0.0)
    else:
        model = DLGM(DLGMConfig(data_shape=train.shape, **fields), seed=args.seed)
        if args.arm.removesuffix("-2d") in U_SCALED:  # u's initial weights, scaled
            with torch.no_grad():
                model.head_u.weight.mul_(U_SCALED[args.arm.removesuffix("-2d")])
        trainer = Trainer(model, train.x, device="cpu", x_valid=valid, seed=args.seed, **settings)
        wall = 0.0
    steps_per_epoch = math.ceil(trainer.n_data / trainer.settings["batch_size"])
    t0 = time.perf_counter()
    epoch_wall = (
        list(json.loads((out / "epoch_wall.json").read_text()))
        if (out / "epoch_wall.json").is_file()
        else []
    )
    # active latents per stochastic layer after each epoch, on the valid images: when does a
    # layer go silent?
    epoch_active = (
        list(json.loads((out / "epoch_active.json").read_text()))
        if (out / "epoch_active.json").is_file()
        else []
    )
    x_valid = torch.tensor(static_binarize(valid, 1))
    for p in trainer.run(steps=max(0, args.epochs * steps_per_epoch - trainer.step_count)):
        if p.end_of_epoch:
            epoch_wall.append(round(wall + time.perf_counter() - t0, 2))
            epoch_active.append(active_by_layer(trainer.model, x_valid))
            trainer.save(out, wall_time_s=epoch_wall[-1])
            (out / "epoch_wall.json").write_text(json.dumps(epoch_wall))
            (out / "epoch_active.json").write_text(json.dumps(epoch_active))
            print(
                f"{args.arm} s{args.seed} epoch {p.epoch:.0f}: valid ELBO {p.valid_elbo:.2f} "
                f"({epoch_wall[-1]:.0f} s)",
                flush=True,
            )
    model = trainer.model.eval()
    measured = measure(model, test.x, train.x)
    result = {
        "arm": args.arm,
        "seed": args.seed,
        "epochs": args.epochs,
        "settings": trainer.settings,
        "config": model.config.to_dict(),
        "wall_time_s": epoch_wall[-1] if epoch_wall else None,
        "epoch_wall_s": epoch_wall,
        "valid_elbo": [h["valid_elbo"] for h in trainer.history],
        "active_by_layer_per_epoch": epoch_active,
        **nll_of(model, test.x, args.k, args.nll_images),
        **measured,
    }
    (out / "result.json").write_text(json.dumps(result))
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}), flush=True)
    return result


# ---------------------------------------------------------------------------- headroom
def gaps(args) -> None:
    """For trained runs' decoders: the best diagonal and the best rank-one q per test image
    (``dlgm.gap``, by ``experiments/gaps.py``'s ``model_gaps``), so the rank-one family's
    headroom over the diagonal one, and each encoder's amortisation gap, on the first ``--n``
    test images (binarised with seed 1). A name is a run folder under ``experiments/runs/rank1/``
    (the result goes to its ``gaps.json``) or any model folder, such as ``pretrained/NAME`` (the
    result goes to ``experiments/runs/rank1/gaps/NAME.json``)."""
    from gaps import model_gaps

    import dlgm
    from dlgm.likelihood import log_likelihood as is_log_px

    torch.set_num_threads(args.threads)
    x = torch.tensor(static_binarize(load_dataset("mnist", "test").x[: args.n], 1))
    for name in args.runs:
        folder = RUNS / name
        out = folder / "gaps.json"
        if not folder.is_dir() and Path(name).is_dir():  # a model folder, e.g. pretrained/X
            folder = Path(name)
            out = RUNS / "gaps" / f"{folder.resolve().name}.json"  # never written into it
            out.parent.mkdir(parents=True, exist_ok=True)
        model = dlgm.load(folder).eval()
        log_px = is_log_px(model, x, n_samples=args.k, generator=torch.Generator().manual_seed(7))
        res = {"run": name, "n": args.n, "k": args.k, "steps": args.steps}
        res |= model_gaps(model, x, log_px, ("diag", "rank1"), steps=args.steps)
        out.write_text(json.dumps(res))
        d, r1 = (np.array(res[f]["elbo_qstar"]) for f in ("diag", "rank1"))
        own = np.array(res["diag"]["elbo_q"])
        head, se = paired(r1, d)
        print(
            f"{name}: log p {np.mean(log_px.numpy()):.2f}; ELBO(q) {own.mean():.2f}; "
            f"ELBO(q*diag) {d.mean():.2f}; ELBO(q*rank1) {r1.mean():.2f}; "
            f"rank-one headroom {head:+.3f} ± {se:.3f}",
            flush=True,
        )


# ---------------------------------------------------------------------------- the table
def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b and its standard error over pairs (seeds)."""
    diff = np.asarray(a) - np.asarray(b)
    se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return float(diff.mean()), float(se)


def load_results(epochs: int) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for f in sorted((RUNS / f"E{epochs}").glob("*/result.json")):
        r = json.loads(f.read_text())
        out.setdefault(r["arm"], {})[r["seed"]] = r
    return out


def report(args) -> None:
    res = load_results(args.epochs)
    if not res:
        raise SystemExit(f"no results under {RUNS / f'E{args.epochs}'}")
    base = args.baseline
    if args.arms:
        res = {arm: v for arm, v in res.items() if arm in args.arms or arm == base}
    keys = ["test_elbo", "train_elbo", "nll"]
    rows = []
    for arm, by_seed in sorted(res.items()):
        seeds = sorted(by_seed)
        row = {"arm": arm, "seeds": seeds}
        for k in keys:
            v = np.array([by_seed[s][k] for s in seeds])
            row[k] = float(v.mean())
            if base in res and arm != base:
                common = [s for s in seeds if s in res[base]]
                if len(common) >= 2:
                    a = [by_seed[s][k] for s in common]
                    b = [res[base][s][k] for s in common]
                    row[f"{k}_vs_{base}"] = paired(a, b)
        for k in (
            "active_latents",
            "active_directions",
            "sharp_latents_q50",
            "test_rec",
            "test_kl",
            "d_active_q90",
            "uDu_q50",
            "eta_q50",
            "wall_time_s",
            "grad_u_mean_norm",
            "grad_u_total_var",
            "grad_d_mean_norm",
            "grad_mu_mean_norm",
        ):
            vals = [by_seed[s].get(k) for s in seeds]
            row[k] = float(np.mean(vals)) if all(v is not None for v in vals) else None
        # per stochastic layer (models with more than one): means over seeds, active ranges
        for k in ("test_kl_by_layer", "pixel_change_by_layer", "active_by_layer"):
            vals = [by_seed[s].get(k) for s in seeds]
            if all(v is not None and len(v) > 1 for v in vals):
                v = np.array(vals, dtype=float)  # (seeds, layers)
                row[k] = v.mean(0).tolist()
                if k == "active_by_layer":
                    row["active_by_layer_range"] = [
                        [int(a), int(b)] for a, b in zip(v.min(0), v.max(0), strict=True)
                    ]
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return

    def fmt(row, k):
        pair = row.get(f"{k}_vs_{base}")
        s = f"{row[k]:.2f}"
        return s + (f" ({pair[0]:+.2f} ± {pair[1]:.2f})" if pair else "")

    def num(v, spec):
        return "-" if v is None else format(v, spec)

    print(
        f"| arm | seeds | test ELBO (vs {base}) | train ELBO (vs {base}) | NLL (vs {base}) | "
        "E log p(v|xi) | KL | active latents / directions | sharp latents q50 | d q90 | "
        "u'D⁻¹u q50 | eta q50 | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | {len(r['seeds'])} | {fmt(r, 'test_elbo')} | "
            f"{fmt(r, 'train_elbo')} | {fmt(r, 'nll')} | {num(r['test_rec'], '.2f')} | "
            f"{num(r['test_kl'], '.2f')} | {num(r['active_latents'], '.0f')} / "
            f"{num(r['active_directions'], '.0f')} | {num(r['sharp_latents_q50'], '.0f')} | "
            f"{num(r['d_active_q90'], '.2f')} | {num(r['uDu_q50'], '.1f')} | "
            f"{num(r['eta_q50'], '.4f')} | {num(r['wall_time_s'], '.0f')} |"
        )


def shape(args) -> None:
    """For model folders (e.g. ``pretrained/NAME``): the ELBO's two terms and the posterior's
    shape (active latents and directions, precisions; ``posterior_shape``) on the first ``--n``
    MNIST test images binarised with seed 1, and how much each stochastic layer moves the
    generated pixels (``dlgm.sampling.layer_influence``), one JSON line per model: what tells
    two runs of one recipe apart when their likelihoods differ, and whether a deep model uses
    its top layer."""
    import dlgm

    torch.set_num_threads(args.threads)
    x = torch.tensor(static_binarize(load_dataset("mnist", "test").x[: args.n], 1))
    for name in args.models:
        model = dlgm.load(name).eval()
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            row = {
                "model": name,
                "n": len(x),
                "test_elbo": float(model.elbo(x, generator=g).mean()),
            }
        row |= elbo_terms(model, x) | posterior_shape(model, x)
        g = torch.Generator().manual_seed(0)
        row["pixel_change_by_layer"] = layer_influence(model, generator=g)
        print(json.dumps(row), flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and measure one (arm, seed)")
    r.add_argument("--arm", required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--epochs", type=int, default=10)
    r.add_argument("--k", type=int, default=500, help="importance samples for the NLL")
    r.add_argument("--nll-images", type=int, default=1000)
    r.add_argument("--threads", type=int, default=1)
    gp = sub.add_parser("gaps", help="best diagonal vs best rank-one q per image")
    gp.add_argument(
        "runs", nargs="+", help="run folders under experiments/runs/rank1/, or model folders"
    )
    gp.add_argument("--n", type=int, default=200)
    gp.add_argument("--k", type=int, default=1000)
    gp.add_argument("--steps", type=int, default=300)
    gp.add_argument("--threads", type=int, default=1)
    m = sub.add_parser("remeasure", help="recompute the cheap measures of finished runs")
    m.add_argument("--epochs", type=int, default=10)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--nll", action="store_true", help="recompute the NLL too")
    t = sub.add_parser("report", help="the paired table of finished runs")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--baseline", default="diag")
    t.add_argument("--arms", nargs="+", help="only these arms (default: every finished arm)")
    t.add_argument("--json", action="store_true")
    sh = sub.add_parser("shape", help="ELBO terms and posterior shape of model folders")
    sh.add_argument("models", nargs="+", help="model folders, e.g. pretrained/NAME")
    sh.add_argument("--n", type=int, default=10_000, help="first N test images")
    sh.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    cmds = {"run": run, "remeasure": remeasure, "report": report, "gaps": gaps, "shape": shape}
    cmds[args.cmd](args)


if __name__ == "__main__":
    main()

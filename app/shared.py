"""Read-only results that the pages share between reruns and sessions (``st.cache_*``).

The pages are scripts that Streamlit executes on every rerun; a ``@st.cache_*`` decorator inside
one runs again each time and hashes the function's source (``inspect.getsource``) to name its
cache, 0.5-1 ms per function per rerun. The cached functions therefore live here, in a module
imported once per process.

What is cached is keyed by everything it depends on: a model's ``model_id`` (which changes with
its weights; a model trained or uploaded in one session has an id no other session knows), a
digest of the image (:func:`app.common.digest`) instead of the array, and every setting. Figures
are stored frozen (:func:`app.figures.freeze`): serialised once, shown by any number of reruns
without being rebuilt or copied. ``st.cache_resource`` hands out the stored object itself, so
nothing here is ever modified after it is stored.
"""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace

import numpy as np
import streamlit as st
import torch

from app.common import (
    DEFAULT_MODEL,
    binarized_test_images,
    digest,
    pretrained_entry,
    pretrained_names,
    test_images,
)
from app.figures.curves import (
    error_curves_figure,
    history_figure,
    k_curve_figure,
    nll_histogram_figure,
    table1_figure,
    variance_figure,
)
from app.figures.images import (
    image_figure,
    image_gallery_figure,
    image_grid_figure,
    imputation_strip_figure,
    manifold_figure,
    masked_image_figure,
)
from app.figures.latent import XI_TITLES, embedding_figure, posterior_figure, zoom_box
from app.figures.style import freeze
from app.limits import MAX_GRID, MAX_K
from dlgm.data import ImageData
from dlgm.estimators import ESTIMATORS, FUNCTIONS, variance_vs_dimension
from dlgm.grid import grid_basis, posterior_grid
from dlgm.impute import ImputationChain, missing_error
from dlgm.likelihood import log_likelihood
from dlgm.sampling import ancestral, resample_from_layer


def _read_only(tree):
    """Mark the numpy arrays of a dict (or one array) read-only; returns it."""
    for a in tree.values() if isinstance(tree, dict) else (tree,):
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    return tree


# ------------------------------------------------------------------------------ Posterior page
# The page's default settings (also what the server's warm-up computes, :func:`warm_defaults`).
POST_GRID, POST_RADIUS, POST_SAMPLES, POST_SEED = min(101, MAX_GRID), 5.0, 100, 0
_TWIN = re.compile(r"^(?P<stem>.+)-(?P<cov>diag|rank1-joint|rank1)$")
_COV_ORDER = ("diag", "rank1", "rank1-joint")


def twins(name: str, names: list[str]) -> list[str]:
    """The selected model and its covariance twins (same stem), diag first."""
    m = _TWIN.match(name)
    if not m:
        return [name]
    found = [f"{m['stem']}-{c}" for c in _COV_ORDER if f"{m['stem']}-{c}" in names]
    return found if name in found else [name]


def mass_view(g) -> tuple[float, float, float, float]:
    """A square view around the 3-sigma regions of p(xi | v) and q (log density within 4.5 of
    its peak) and the MAP."""
    yy, xx = np.meshgrid(g.ys, g.xs, indexing="ij")
    keep = (g.log_post > g.log_post.max() - 4.5) | (g.log_q > g.log_q.max() - 4.5)
    pts = np.concatenate([np.stack([xx[keep], yy[keep]], axis=1), g.map[None]])
    return zoom_box(pts, min_half_width=4 * (g.xs[1] - g.xs[0]))


@st.cache_resource(show_spinner="Decoding the grid...", max_entries=4)
def basis(_model, model_id: str, grid_size: int, radius: float):
    """The decoder on the grid nodes, once per model and grid (read-only, shared)."""
    return grid_basis(_model, grid_size=grid_size, radius=radius)


@st.cache_data(show_spinner="Evaluating the posterior on the grid...", max_entries=64)
def grid(_model, model_id: str, x: np.ndarray, grid_size: int, radius: float):
    """``dlgm.grid.posterior_grid`` for one image (D,), cached per model id and image; each new
    image costs one matrix-vector product with the model's cached grid basis."""
    return posterior_grid(_model, torch.from_numpy(x),
                          basis=basis(_model, model_id, grid_size, radius))


@st.cache_data(show_spinner=False, max_entries=64)
def samples(_model, model_id: str, x: np.ndarray, n: int, seed: int) -> dict:
    """``n`` samples of the prior N(0, I) and of q(xi | v), and the Monte Carlo ELBO of ``x``
    (1,000 samples, analytic KL), all from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x)[None]  # (1, D)
    with torch.no_grad():
        prior = _model.prior().rsample((n,), generator=g)  # (n, 2)
        q = _model.encode(xt).rsample((n,), generator=g)[:, 0]  # (n, 2)
        elbo = float(_model.elbo(xt, n_samples=1000, generator=g)[0])
    return dict(prior=prior.numpy(), q=q.numpy(), elbo=elbo)


@st.cache_resource(show_spinner="Evaluating the posterior on the grid...", max_entries=64)
def panel(_model, model_id: str, name: str, _x: np.ndarray, x_key: str, grid_size: int,
          radius: float, n: int, seed: int, zoom: bool) -> dict:
    """One model's panel for image ``_x`` (digest ``x_key``): its figure, frozen, and the
    numbers under it. Read-only and shared by every session asking for the same model id, image
    and settings, so a rerun (or another user) shows it again without rebuilding or copying it.
    """
    g = grid(_model, model_id, _x, grid_size, radius)
    mc = samples(_model, model_id, _x, n, seed)
    cov = _model.config.covariance
    fig = posterior_figure(
        g.xs, g.ys, g.log_post, log_q={f"q ({cov})": g.log_q},
        prior_samples=mc["prior"] if n else None, q_samples=mc["q"] if n else None,
        map_point=g.map, height=560, view=mass_view(g) if zoom else None,
        title=f"{name}: p(ξ | v) and q ({cov})")
    stats = SimpleNamespace(log_px=g.log_px, kl_q_p=g.kl_q_p, kl_p_q=g.kl_p_q, q_mass=g.q_mass,
                            map=g.map, q_mean=g.q_mean)
    return dict(fig=freeze(fig), stats=stats, mc=dict(elbo=mc["elbo"]))


@st.cache_resource(show_spinner=False, max_entries=64)
def image_panel(_x: np.ndarray, x_key: str, shape: tuple[int, int]):
    """The image being explained, frozen (shared like :func:`panel`)."""
    return freeze(image_figure(_x.reshape(shape), title="v", height=240))


# ---------------------------------------------------------------------------- Likelihoods page
K_CHOICES = tuple(k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
                  if k <= MAX_K)
N_WORST = 12


def live_defaults(n_max: int) -> tuple[int, int, int]:
    """The live estimate's default (test images, K, seed) for a data set of ``n_max`` images."""
    return min(200, n_max), min(100, K_CHOICES[-1]), 0


def test_seed(model) -> int:
    """Seed of the static binarisation of the test set that the model is evaluated on: the
    card's ``eval_binarization['eval_seed']``, else the CLI's rule (training seed + 1)."""
    evaluated = model.metadata.get("eval_binarization") or {}
    if "eval_seed" in evaluated:
        return int(evaluated["eval_seed"])
    trained = model.metadata.get("binarization") or {}
    return int(trained.get("seed", 0)) + 1


@st.cache_data(show_spinner=False, max_entries=256)
def log_px_cached(_model, model_id: str, data_name: str, n_images: int, k: int,
                  seed: int) -> np.ndarray:
    """Importance-sampled log p(v) per test image (nats), K = ``k`` samples; (n_images,)."""
    x = torch.tensor(evaluation_images(_model, data_name)[:n_images])  # a copy
    g = torch.Generator().manual_seed(seed * 100_003 + k)
    return log_likelihood(_model, x, n_samples=k, generator=g).double().numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def elbo_cached(_model, model_id: str, data_name: str, n_images: int, seed: int) -> np.ndarray:
    """Per-image ELBO (analytic KL, 10 samples for the reconstruction), nats; (n_images,)."""
    x = torch.tensor(evaluation_images(_model, data_name)[:n_images])  # a copy
    g = torch.Generator().manual_seed(seed)
    return _model.elbo(x, n_samples=10, generator=g).double().numpy()


def evaluation_images(model, data_name: str) -> np.ndarray:
    """Test images as the model sees them: statically binarised with the card's test seed
    for Bernoulli pixels, grey levels otherwise; (N, D) float32."""
    if model.config.likelihood == "bernoulli":
        return binarized_test_images(data_name, test_seed(model))
    return test_images(data_name).x


@st.cache_resource(show_spinner=False, max_entries=64)
def live_results(_model, model_id: str, name: str, data_name: str, n_images: int, k: int,
                 seed: int, k_choices: tuple[int, ...], n_worst: int) -> dict:
    """The Likelihoods page's live estimate for one model and setting: mean log p(v) at K =
    ``k`` and the mean ELBO (nats) and its three figures, frozen. Each K's per-image estimates
    come from :func:`log_px_cached`, so raising K computes only the new K."""
    ks = [kk for kk in k_choices if kk <= k]
    curves = [log_px_cached(_model, model_id, data_name, n_images, kk, seed) for kk in ks]
    elbo = elbo_cached(_model, model_id, data_name, n_images, seed)
    log_px = curves[-1]
    means = np.array([c.mean() for c in curves])
    nll = -log_px
    worst = np.argsort(nll)[::-1][:n_worst]
    images = evaluation_images(_model, data_name)[worst].reshape(-1, *_model.data_shape)
    labels = [f"#{i}: {nll[i]:.1f}" for i in worst]
    return dict(
        log_px_mean=float(log_px.mean()), elbo_mean=float(elbo.mean()),
        k_curve=freeze(k_curve_figure(np.array(ks), means, float(elbo.mean()), chosen=k,
                                      title=f"Importance-sampled log p(v) against K, {name}")),
        histogram=freeze(nll_histogram_figure(nll, title=f"Per-example test NLL, K = {k}")),
        worst=freeze(image_gallery_figure(images, labels, n_cols=4,
                                          title="Worst-modelled test images (NLL, nats)")))


@st.cache_resource(show_spinner=False, max_entries=32)
def table1_chart(rows_key: tuple, _rows: list[dict]):
    """``table1_figure`` of the charted rows, frozen; ``rows_key`` is their content as a
    hashable tuple (a model's card can change without its id changing)."""
    return freeze(table1_figure(_rows))


# ----------------------------------------------------------------------------- Imputation page
@st.cache_resource(show_spinner=False, max_entries=64)
def masked_image_chart(_image: np.ndarray, _mask: np.ndarray, key: str):
    """``masked_image_figure`` of an image (D,) and its mask (H, W), frozen; ``key`` is
    ``digest(image, mask)``."""
    return freeze(masked_image_figure(_image.reshape(_mask.shape), _mask,
                                      title="What the chains see"))


@st.cache_resource(show_spinner=False, max_entries=32)
def initial_chains(_model, _x: np.ndarray, _mask: torch.Tensor, signature: tuple) -> dict:
    """The Imputation page's chains at step 0, method -> ``ImputationChain``, for ``signature``
    = (model id, digest of mask and image, methods, initial fill, particles, seed). Never
    stepped: each session steps a deep copy of its own."""
    _, _, methods, init, particles, seed = signature
    chains = {}
    for i, method in enumerate(methods):
        g = torch.Generator().manual_seed(seed * 31 + i)
        chains[method] = ImputationChain(
            _model, torch.tensor(_x), _mask.clone(), method=method, init=init,
            n_particles=particles if method == "importance" else None, generator=g)
    return chains


def _strips(chains: dict, truth: np.ndarray, shape, use_probs: bool, n_shown: int,
            labels: dict):
    """Images of the last ``n_shown`` steps of every chain, after a truth column."""
    results = {m: c.result() for m, c in chains.items()}
    t = next(iter(chains.values())).state.step
    steps = list(range(max(0, t - n_shown + 1), t + 1))
    if steps[0] > 0:
        steps = [0] + steps[1:]  # always keep the initial fill
    strips = {}
    for method, r in results.items():
        frames = (r.probs if use_probs else r.images)[steps, 0].numpy()  # (C, D)
        strips[labels[method]] = np.concatenate([truth[None], frames]).reshape(-1, *shape)
    columns = ["truth"] + [str(s) for s in steps]
    return results, strips, columns


# The chains of the Imputation page are a deterministic function of their signature (model id,
# image and mask digest, chains, initial fill, particles, seed) and of the number of steps taken
# (``key`` = (signature, t)), so their figures are shared read-only between reruns and sessions.
@st.cache_resource(show_spinner=False, max_entries=64)
def strip_chart(_chains: dict, key: tuple, use_probs: bool, _truth: np.ndarray,
                _mask: np.ndarray, n_shown: int, labels: tuple):
    """The Fig. 5 strip of the last ``n_shown`` steps of ``_chains`` (method -> chain, at the
    state ``key``), frozen; ``labels`` are (method, label) pairs."""
    _, strips, columns = _strips(_chains, _truth, _mask.shape, use_probs, n_shown, dict(labels))
    marked = [False] + [True] * (len(columns) - 1)
    return freeze(imputation_strip_figure(strips, _mask, columns, marked=marked, tile_px=100,
                                          title=f"Imputation chains, iteration {key[-1]}"))


@st.cache_resource(show_spinner=False, max_entries=64)
def error_chart(_chains: dict, key: tuple, name: str, axis: str, _truth: np.ndarray,
                labels: tuple):
    """The error curves (``missing_error``'s ``name``; ``accuracy`` drawn as the error rate)
    of ``_chains`` at the state ``key``, frozen."""
    labels = dict(labels)
    curves = {}
    for method, chain in _chains.items():
        r = chain.result()
        err = missing_error(r, torch.from_numpy(_truth), r.mask)
        values = 1.0 - err[name] if name == "accuracy" else err[name]
        curves[labels[method]] = (err["steps"], values)
    return freeze(error_curves_figure(curves, metric=axis,
                                      title="Error on the missing pixels against the truth"))



# -------------------------------------------------------------------------------- Samples page
N_ROWS_LAYER, N_VARIATIONS = 6, 8  # resampling figure: rows of samples x variations
SAMPLES_N, SAMPLES_SEED = 36, 0  # the page's defaults


@st.cache_resource(show_spinner=False, max_entries=64)
def ancestral_samples(_model, model_id: str, n: int, seed: int) -> dict:
    """``n`` ancestral samples from ``seed``: read-only numpy ``probs`` (n, D), ``binary``
    (n, D), ``xi`` (n, K)."""
    s = ancestral(_model, n, generator=torch.Generator().manual_seed(seed))
    return _read_only({k: v.numpy() for k, v in s._asdict().items()})


@st.cache_resource(show_spinner=False, max_entries=64)
def resampled(_model, model_id: str, layer: int, seed: int) -> np.ndarray:
    """For ``N_ROWS_LAYER`` ancestral samples, ``N_VARIATIONS`` redraws of layers 1..layer:
    pixel probabilities, (N_ROWS_LAYER * N_VARIATIONS, D), read-only, one row per kept sample
    (its own first column is the original)."""
    g = torch.Generator().manual_seed(seed)
    base = ancestral(_model, N_ROWS_LAYER, generator=g)
    rows = []
    for i in range(N_ROWS_LAYER):
        new = resample_from_layer(_model, base.xi[i], layer, n=N_VARIATIONS - 1, generator=g)
        rows.append(torch.cat([base.probs[i:i + 1], new.probs]))
    return _read_only(torch.cat(rows).numpy())


@st.cache_resource(show_spinner=False, max_entries=128)
def grid_chart(_images: np.ndarray, images_key: str, shape: tuple[int, int],
               n_cols: int | None, height: int, title: str):
    """``image_grid_figure`` of ``_images`` (N, D), frozen; ``images_key`` is
    ``digest(_images)``."""
    return freeze(image_grid_figure(_images, shape=shape, n_cols=n_cols, height=height,
                                    title=title))


def image_grid_chart(images: np.ndarray, *, shape, title: str, height: int,
                     n_cols: int | None = None):
    """:func:`grid_chart` keyed by the images' content."""
    return grid_chart(images, digest(images), tuple(shape), n_cols, height, title)


# ------------------------------------------------------------------------------ Embedding page
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
MAX_POINTS = 5000
EMB_N = 2000  # the page's default number of test images (at most MAX_POINTS and the data set)
PLANE_NODES = 61  # per axis, the invisible clickable lattice


@st.cache_resource(show_spinner="Encoding the test images...", max_entries=16)
def embedding(_model, model_id: str, data_name: str, n: int) -> dict:
    """Posterior means E_q[xi | v] of the first ``n`` test images and their 2-D plane.

    Returns a dict of read-only numpy arrays: ``means`` (n, K), ``coords`` (n, 2), ``origin``
    (K,) and ``basis`` (2, K) with xi = origin + coords @ basis, plus ``axis_titles`` and
    ``explained`` (variance ratios of the two directions; None for a 2-latent model).
    """
    if _model.config.likelihood == "bernoulli":
        x = binarized_test_images(data_name)[:n]
    else:
        x = test_images(data_name).x[:n]
    with torch.no_grad():
        means = torch.cat([_model.encode(xb).loc for xb in torch.from_numpy(
            np.array(x)).split(1000)]).numpy()  # (n, K)
    k = means.shape[1]
    if k == 2:
        return _read_only(dict(means=means, coords=means, origin=np.zeros(2, np.float32),
                               basis=np.eye(2, dtype=np.float32), axis_titles=XI_TITLES,
                               explained=None))
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(means)
    ratio = pca.explained_variance_ratio_
    titles = tuple(f"PC {i + 1} of E_q[ξ | v] ({100 * ratio[i]:.0f}% of variance)"
                   for i in range(2))
    return _read_only(dict(means=means, coords=pca.transform(means).astype(np.float32),
                           origin=pca.mean_.astype(np.float32),
                           basis=pca.components_.astype(np.float32), axis_titles=titles,
                           explained=ratio))


def decode(model, origin, basis, plane) -> np.ndarray:
    """Pixel means E[v | xi] at plane positions (M, 2): xi = origin + plane @ basis; (M, D)."""
    xi = torch.from_numpy(np.asarray(origin + np.asarray(plane, np.float32) @ basis,
                                     dtype=np.float32))  # (M, K)
    with torch.no_grad():
        return model.pixel_mean(xi).numpy()


def plane_nodes(coords: np.ndarray) -> np.ndarray:
    """An invisible square lattice around the data, 20% wider than its larger side (it also
    sets the axes' range): (PLANE_NODES**2, 2)."""
    lo, hi = coords.min(0), coords.max(0)
    centre, half = (lo + hi) / 2, 0.6 * float((hi - lo).max()) + 1e-3
    axis = np.linspace(-half, half, PLANE_NODES, dtype=np.float32)
    yy, xx = np.meshgrid(axis + centre[1], axis + centre[0], indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


@st.cache_resource(show_spinner=False, max_entries=16)
def embedding_chart(_model, model_id: str, data_name: str, n: int):
    """The scatter of :func:`embedding`'s plane, coloured by class, frozen."""
    emb = embedding(_model, model_id, data_name, n)
    y = test_images(data_name).y
    x_title, y_title = emb["axis_titles"]
    return freeze(embedding_figure(
        emb["coords"], None if y is None else y[:n],
        title=f"{n} test images of {data_name}: posterior means", x_title=x_title,
        y_title=y_title, plane=plane_nodes(emb["coords"]),
        class_names=dict(enumerate(FASHION)) if data_name == "fashion-mnist" else None,
        marker_size=5 if n > 1000 else 7, height=640))


@st.cache_resource(show_spinner="Decoding the lattice...", max_entries=16)
def manifold_chart(_model, model_id: str, data_name: str, n: int, radius: float, side: int):
    """Pixel means decoded on a ``side`` x ``side`` lattice over [-radius, radius]^2 of
    :func:`embedding`'s plane, drawn as one picture, frozen."""
    emb = embedding(_model, model_id, data_name, n)
    coords = np.linspace(-radius, radius, side, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    plane = np.stack([xx.ravel(), yy.ravel()], axis=1)  # (side * side, 2)
    images = decode(_model, emb["origin"], emb["basis"], plane)
    x_title, y_title = emb["axis_titles"]
    return freeze(manifold_figure(
        images, coords, shape=test_images(data_name).shape, x_title=x_title, y_title=y_title,
        height=720, title=f"Pixel means decoded on a {side} × {side} lattice "
                          f"over [-{radius:g}, {radius:g}]²"))


# ---------------------------------------------------------------------- Gradient estimators page
TARGETS = {"mu": ("variance_mu", "d E[f] / d mu"), "sigma": ("variance_sigma", "d E[f] / d sigma")}
TARGETS_KEYS = ("variance_mu", "variance_mu_1", "variance_sigma")
MAX_ELEMENTS = 20_000_000  # largest R * S * K (times K for a full Hessian) computed


@st.cache_data(show_spinner=False, max_entries=2000)
def variance_cell(f: str, k: int, estimator: str, n_samples: int, n_repeats: int,
                  baseline: str | None, mu: float, sigma: float, seed: int) -> dict:
    """Per-coordinate variances of one estimator at one K (cached, so raising K is cheap)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + k * 7 + ESTIMATORS.index(estimator))
    out = variance_vs_dimension(f, [k], n_samples=n_samples, n_repeats=n_repeats, mu=mu,
                                sigma=sigma, estimators=[estimator], generator=g,
                                baseline=baseline if estimator == "score" else None)
    return {key: float(out[key][estimator][0]) for key in TARGETS_KEYS}


def too_big(f: str, k: int, estimator: str, n_samples: int, n_repeats: int) -> bool:
    """Whether one cell would hold more than ``MAX_ELEMENTS`` numbers (shared server)."""
    size = n_repeats * n_samples * k
    if estimator == "price" and not FUNCTIONS[f].separable:
        size *= k  # the full (K, K) Hessian per sample
    return size > MAX_ELEMENTS


def compute(s: dict) -> tuple[dict, list]:
    """{estimator: (n_K,) variances} for the chosen target, from cached cells (NaN where a
    cell is too big to compute), and the list of skipped (estimator, K)."""
    key = TARGETS[s["target"]][0]
    out, skipped = {}, []
    for e in s["estimators"]:
        values = []
        for k in s["ks"]:
            if too_big(s["f"], k, e, s["n_samples"], s["n_repeats"]):
                skipped.append((e, k))
                values.append(np.nan)
                continue
            cell = variance_cell(s["f"], k, e, s["n_samples"], s["n_repeats"], s["baseline"],
                                 s["mu"], s["sigma"], s["seed"])
            values.append(cell[key])
        out[e] = np.array(values)
    return out, skipped


@st.cache_resource(show_spinner=False, max_entries=64)
def variance_results(settings: tuple) -> dict:
    """:func:`compute` of the settings (``tuple(s.items())``), and its figure, frozen;
    read-only and shared. Each (estimator, K) cell is cached on its own
    (:func:`variance_cell`), so raising K computes only the new K."""
    s = dict(settings)
    variances, skipped = compute(s)
    what = TARGETS[s["target"]][1]
    fig = variance_figure(np.array(s["ks"]), variances,
                          y_title=f"variance of the estimate of {what} (per coordinate)",
                          title=f"Variance of {what} estimates against K, f = {s['f']} "
                                f"(S = {s['n_samples']}, R = {s['n_repeats']})")
    return dict(variances=_read_only(variances), skipped=tuple(skipped), fig=freeze(fig))


# --------------------------------------------------------------------------------- Models page
@st.cache_data(ttl=60, show_spinner=False)
def available_datasets() -> dict[str, str | None]:
    """Data set -> None if it can be loaded without downloading, else the reason."""
    from dlgm.data import DATASETS, DataError, load_dataset

    out = {}
    for name in DATASETS:
        try:
            load_dataset(name, "test", download=False)
            out[name] = None
        except DataError as e:
            out[name] = str(e)
    return out


@st.cache_resource(show_spinner=False, max_entries=64)
def _history_chart(_history: list[dict], key: str, title: str):
    return freeze(history_figure(_history, title))


def history_chart(history: list[dict], title: str):
    """:func:`history_figure`, frozen and shared, keyed by what it draws (a card's history can
    change without its model's id changing)."""
    drawn = repr([(h["epoch"], h["free_energy"], h.get("valid_elbo")) for h in history])
    key = hashlib.blake2b(drawn.encode(), digest_size=16).hexdigest()
    return _history_chart(history, key, title)


# ---------------------------------------------------------------------- server warm-up (limits)
def warm_defaults(name: str = DEFAULT_MODEL) -> list[str]:
    """Compute what a first visit of the pages shows for the default model and default
    settings, through the very functions the pages call (so the first visitor finds it
    cached): the Likelihoods live estimate, the Posterior panels (with the twins), the
    Embedding scatter, the Samples grids, and every shipped model loaded (the Likelihoods
    table reads their cards). Each part that fails is skipped (its page
    computes it, or reports the problem, itself). Returns the parts done."""
    done = []
    try:
        entry = pretrained_entry(name)
        model, data = entry.model, test_images(entry.data_name)
    except Exception:  # noqa: BLE001 - the pages report a missing model or data set
        return done
    if len(model.data_shape) != 2 or data.x.shape[1] != model.n_pixels:
        return done
    binary = model.config.likelihood == "bernoulli"
    x_seen = binarized_test_images(entry.data_name) if binary else data.x  # test_data_ui's

    def likelihoods():
        n, k, seed = live_defaults(len(data))
        live_results(model, entry.model_id, name, entry.data_name, n, k, seed, K_CHOICES,
                     N_WORST)

    def posterior():
        if model.latent_dim != 2:
            return
        x = np.array(x_seen[0], dtype=np.float32)  # the page's default image, index 0
        key = digest(x)
        image_panel(x, key, tuple(data.shape))
        for twin in twins(name, pretrained_names()):
            e = entry if twin == name else pretrained_entry(twin)
            panel(e.model, e.model_id, twin, x, key, POST_GRID, POST_RADIUS, POST_SAMPLES,
                  POST_SEED, True)

    def embedding_page():
        embedding_chart(model, entry.model_id, entry.data_name,
                        min(EMB_N, MAX_POINTS, len(data)))

    def samples_page():
        seen = ImageData(x=x_seen, y=data.y, shape=data.shape, name=entry.data_name)
        samples_charts(entry, seen, SAMPLES_N, SAMPLES_SEED)

    def table():  # the Likelihoods table reads every shipped model's card
        for other in pretrained_names():
            pretrained_entry(other)

    for part in (likelihoods, posterior, embedding_page, samples_page, table):
        try:
            part()
            done.append(part.__name__)
        except Exception:  # noqa: BLE001, S112 - the page computes it itself
            continue
    return done


def samples_charts(entry, data: ImageData, n: int, seed: int) -> list:
    """The Samples page's four grids (model probabilities, test grey levels; model samples,
    test images as the model sees them), frozen and shared, in that order; ``data`` are the
    test images as the model sees them (``app.widgets.test_data_ui``)."""
    model = entry.model
    s = ancestral_samples(model, entry.model_id, n, seed)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
    bernoulli = model.config.likelihood == "bernoulli"
    height, shape = 420, data.shape
    return [
        image_grid_chart(s["probs"], shape=shape, height=height,
                         title=f"Model: pixel probabilities E[v | h(ξ)], seed {seed}"
                         if bernoulli else f"Model: pixel means, seed {seed}"),
        image_grid_chart(test_images(entry.data_name).x[rows], shape=shape, height=height,
                         title=f"Test data: grey levels ({entry.data_name})"),
        image_grid_chart(s["binary"], shape=shape, height=height,
                         title="Model: binary samples v ~ π(v | h(ξ))" if bernoulli
                         else "Model: sampled pixels v ~ π(v | h(ξ))"),
        image_grid_chart(data.x[rows], shape=shape, height=height,
                         title="Test data as the model sees it" +
                               (" (binarised, seed 0)" if bernoulli else "")),
    ]

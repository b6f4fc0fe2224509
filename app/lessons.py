"""The lesson at the top of every page: the equations the page draws, what to look for, one
thing to try, and where it comes from in the paper (Rezende, Mohamed & Wierstra, 2014).

All lesson content lives here, as pure data (:data:`LESSONS`, one :class:`Lesson` per page of
the navigation, keyed by the page's file name), so it can be read, reviewed and tested in one
place. Equations are KaTeX (drawn by ``st.latex``) and use the names of ``dlgm``: v is ``x``,
xi is ``xi``, mu is ``q.loc``, d, u and eta are ``q.d``, ``q.u`` and ``q.eta``, R is
``q.scale_factor``, G_l and T_l are ``model.G[l]`` and ``model.T[l]``, pi is
``model.observation``. Each equation names the ``dlgm`` objects that compute it (dotted paths,
checked to exist by ``tests/app/test_lessons.py``).

:func:`lesson_ui` draws a lesson as an ``st.expander``: open the first time a page is visited in
a browser tab, collapsed on later visits; while the user stays on a page it keeps the state
the user left it in. This module imports only streamlit (no torch): the Models page draws its
lesson before the heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

PAPER = "Rezende, Mohamed & Wierstra (2014)"
PAPER_URL = "https://arxiv.org/abs/1401.4082"
_STATE = "lessons_state"  # {"page", "open", "seen"}; no widget owns it


@dataclass(frozen=True)
class Equation:
    """One displayed equation.

    Attributes
    ----------
    tex : str
        KaTeX source, display mode, without ``$$``.
    caption : str
        What it is and its number in the paper (Markdown).
    code : tuple of str
        Dotted names of the ``dlgm`` objects that compute it, e.g. ``"dlgm.grid.posterior_grid"``.
    """

    tex: str
    caption: str
    code: tuple[str, ...]


@dataclass(frozen=True)
class Lesson:
    """The lesson of one page.

    Attributes
    ----------
    title : str
        The expander's label follows "Lesson: ".
    equations : tuple of Equation
    look_for : str
        Two or three sentences on what to look for (Markdown).
    try_this : str
        One thing to try on the page (Markdown).
    section : str
        Where in the paper, e.g. "sec. 4.1, eq. 11-13".
    symbols : tuple of (str, str)
        (KaTeX symbol, its name in the code), drawn as inline maths.
    also : tuple of (str, str)
        Other sources: (citation, URL).
    """

    title: str
    equations: tuple[Equation, ...]
    look_for: str
    try_this: str
    section: str
    symbols: tuple[tuple[str, str], ...] = ()
    also: tuple[tuple[str, str], ...] = ()


CREMER = (
    "Cremer, Li & Duvenaud (2018), Inference suboptimality in variational autoencoders",
    "https://arxiv.org/abs/1801.03558",
)
MATTEI = (
    "Mattei & Frellsen (2018), Leveraging the exact likelihood of deep latent variable models",
    "https://arxiv.org/abs/1802.04826",
)
BURDA = (
    "Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders",
    "https://arxiv.org/abs/1509.00519",
)

# The inference gap and its two parts (Posterior and Likelihoods pages).
GAP = Equation(
    r"\begin{aligned} \log p(v) - \mathrm{ELBO}(q) &= \underbrace{\log p(v)"
    r" - \mathrm{ELBO}(q^*)}_{\text{approximation gap}} \\ &\quad + \underbrace{"
    r"\mathrm{ELBO}(q^*) - \mathrm{ELBO}(q)}_{\text{amortisation gap}} \end{aligned}",
    "The inference gap (Cremer et al., 2018). The whole gap is KL(q ‖ p(ξ | v)); q* is the "
    "member of q's family that maximises this one image's ELBO on its own.",
    ("dlgm.gap.inference_gaps", "dlgm.gap.optimal_q"),
)
GENERATIVE = Equation(
    r"\begin{gathered} \xi_l \sim \mathcal{N}(0, I), \qquad h_L = G_L \xi_L, \\ "
    r"h_l = T_l(h_{l+1}) + G_l \xi_l, \qquad v \sim \pi\big(v \mid T_0(h_1)\big)"
    r" \end{gathered}",
    "The generative model, eq. 1-4: Gaussian noise at every layer, pushed down through the "
    "MLPs T_l; layer 1 is nearest the data.",
    ("dlgm.model.DLGM.hidden", "dlgm.model.DLGM.decode", "dlgm.model.DLGM.observation"),
)
SYMBOLS_MODEL = (
    (r"v", "x"),
    (r"\xi", "xi"),
    (r"h_1", "model.hidden(xi)"),
    (r"G_l", "model.G[l]"),
    (r"T_l", "model.T[l]"),
    (r"\pi", "model.observation"),
)
SYMBOLS_Q = (
    (r"\mu", "q.loc"),
    (r"d", "q.d"),
    (r"u", "q.u"),
    (r"\eta", "q.eta"),
    (r"R", "q.scale_factor"),
)

LESSONS: dict[str, Lesson] = {
    "models": Lesson(
        title="the model and its free energy",
        equations=(
            GENERATIVE,
            Equation(
                r"\begin{aligned} \mathcal{F}(v) &= -\mathbb{E}_{q(\xi \mid v)}\big[\log"
                r" \pi(v \mid h(\xi))\big] \\ &\quad + \mathrm{KL}\big(q(\xi \mid v)"
                r" \,\|\, \mathcal{N}(0, I)\big) + \frac{\lVert \theta^g \rVert^2}{2 \kappa N}"
                r" \end{aligned}",
                "The free energy, eq. 13, per example (N training images): a reconstruction "
                "term, a KL term and the weight prior. F = −ELBO ≥ −log p(v).",
                ("dlgm.model.DLGM.free_energy", "dlgm.model.DLGM.weight_penalty"),
            ),
            Equation(
                r"\mathrm{KL}\big(\mathcal{N}(\mu, C) \,\|\, \mathcal{N}(0, I)\big)"
                r" = \tfrac{1}{2}\big[\operatorname{tr} C - \log \lvert C \rvert"
                r" + \mu^\top \mu - K\big]",
                "The KL term in closed form, eq. 13, for K latents in total.",
                (
                    "dlgm.posteriors.RankOneNormal.trace_covariance",
                    "dlgm.posteriors.RankOneNormal.log_det_covariance",
                ),
            ),
            Equation(
                r"\begin{gathered} \xi = \mu + R \epsilon, \qquad \epsilon \sim"
                r" \mathcal{N}(0, I), \\ \theta \leftarrow \theta - \Gamma \,"
                r" \nabla_\theta \mathcal{F} \end{gathered}",
                "One update of Algorithm 1 (Step mode): a reparameterised sample of q "
                "(eq. 21), then a preconditioned gradient step (eq. 18; RMSprop or Adam).",
                ("dlgm.posteriors.RankOneNormal.reparameterize", "dlgm.train.Trainer.step"),
            ),
        ),
        look_for=(
            "The card's test NLL, −log p(v) by importance sampling, is below the free energy: "
            "F is an upper bound on −log p(v), and the distance between them is how far q is "
            "from the true posterior. In training the free energy falls fast in the first "
            "epoch and slowly after; the test ELBO (−F on held-out images) follows it "
            "unless the model overfits."
        ),
        try_this=(
            "Open **Step mode**, start from *a fresh model*, and press **10 steps** a few "
            "times: does the free energy per update fall, and does the reconstruction "
            "E[v | h(ξ)] turn from a blur into the digit? ε is drawn afresh at every update."
        ),
        section="sec. 2 (eq. 1-6), sec. 4.1-4.2 (eq. 11-18) and Algorithm 1",
        symbols=SYMBOLS_MODEL + ((r"\mu", "q.loc"), (r"R", "q.scale_factor")),
    ),
    "samples": Lesson(
        title="ancestral sampling",
        equations=(
            GENERATIVE,
            Equation(
                r"\mathbb{E}[v \mid h_1] = \begin{cases} \operatorname{sigmoid}\big("
                r"T_0(h_1)\big) & \text{Bernoulli pixels} \\ T_0(h_1) & \text{Gaussian"
                r" pixels} \end{cases}",
                "Top row: the pixel probabilities (or, for Gaussian pixels, the means) of π; "
                "bottom row: pixels v drawn from π.",
                ("dlgm.sampling.ancestral", "dlgm.model.DLGM.pixel_mean"),
            ),
            Equation(
                r"\xi_{l+1}, \dots, \xi_L \;\text{kept}, \qquad "
                r"\xi_1, \dots, \xi_l \sim \mathcal{N}(0, I)",
                "Resampling from layer l down (models with several stochastic layers): the "
                "upper layers of a sample are kept, the lower ones redrawn.",
                ("dlgm.sampling.resample_from_layer",),
            ),
        ),
        look_for=(
            "Do the samples look like the test images beside them, and are all classes "
            "there, about equally often? The pixel probabilities are smooth; the sampled "
            "pixels add independent per-pixel noise, which is why the paper shows "
            "probabilities (Fig. 3a). For Gaussian pixels (grey levels) the top row is the "
            "mean of π and the bottom row adds noise of π's learned per-pixel variance."
        ),
        try_this=(
            "Change the **seed** a few times and count the classes you see. With a model of "
            "two stochastic layers (`mnist-deep-rank1`, or train one with latents `10, 2` on "
            "the Models page), resample from layer 1: does each row keep its digit while the "
            "style changes? Then pick `mnist-deep-rank1-warmup`: which of its layers moves "
            "the pixels? Its twin `mnist-deep-rank1-freebits` was trained the same way with "
            "free bits: what does its layer 2 hold, and what does layer 1 redraw?"
        ),
        section="sec. 2 (eq. 1-4) and sec. 5.2 (Fig. 3a)",
        symbols=SYMBOLS_MODEL,
    ),
    "embedding": Lesson(
        title="the recognition model as an embedding",
        equations=(
            Equation(
                r"\begin{gathered} q(\xi \mid v) = \mathcal{N}\big(\xi;\ \mu(v),\ C(v)"
                r"\big), \\ \text{point} = \mu(v) = \mathbb{E}_q[\xi \mid v]"
                r" \end{gathered}",
                "The recognition model, eq. 12: one pass of an MLP gives the mean and "
                "covariance of q for any image. Each point is one test image's mean.",
                ("dlgm.model.DLGM.encode",),
            ),
            Equation(
                r"\begin{gathered} \xi = \bar\mu + a \, \mathrm{PC}_1 + b \,"
                r" \mathrm{PC}_2, \\ \text{decoded: } \mathbb{E}[v \mid h(\xi)]"
                r" \end{gathered}",
                "For K > 2 latents the plane is spanned by the top two principal components "
                "of the means; a click on empty space (or the Manifold view) decodes the "
                "position. With K = 2 the plane is ξ itself.",
                ("dlgm.model.DLGM.pixel_mean",),
            ),
        ),
        look_for=(
            "The classes fall into separate regions although no label was used in training "
            "(Fig. 3b). The means stay within a few units of the origin, where the "
            "N(0, I) prior puts its mass, and the Manifold view changes smoothly from one "
            "class to the next."
        ),
        try_this=(
            "Click empty space between two clusters (say 4 and 9) and look at the decoded "
            "image: which digit is it, or is it both? Then switch to **Manifold** and widen "
            "the lattice: what does the decoder draw far from the data?"
        ),
        section="sec. 4.1 (eq. 12) and sec. 5.3 (Fig. 3b)",
        symbols=((r"v", "x"), (r"\xi", "xi"), (r"\mu(v)", "model.encode(x).loc")),
    ),
    "posterior": Lesson(
        title="the true posterior against q",
        equations=(
            Equation(
                r"\begin{gathered} p(\xi \mid v) = \frac{p(v, \xi)}{p(v)}, \\ "
                r"\log p(v, \xi) = \log \pi\big(v \mid h(\xi)\big)"
                r" + \log \mathcal{N}(\xi; 0, I) \end{gathered}",
                "The true posterior (filled contours) from the joint, eq. 6.",
                ("dlgm.model.DLGM.log_joint",),
            ),
            Equation(
                r"\log p(v) \approx \log \sum_{i, j} p(v, \xi_{ij}) \, \Delta^2,"
                r" \qquad \Delta = \frac{2r}{G - 1}",
                "log p(v) by quadrature on the G × G grid over [−r, r]²: exact up to the "
                "grid, possible only for 2 latents.",
                ("dlgm.grid.posterior_grid", "dlgm.grid.GridPosterior"),
            ),
            Equation(
                r"\begin{gathered} C^{-1} = D + u u^\top, \qquad \eta = \frac{1}{u^\top"
                r" D^{-1} u + 1}, \\ C = D^{-1} - \eta \, D^{-1} u u^\top D^{-1}"
                r" \end{gathered}",
                "The rank-one recognition covariance, eq. 19-20 (lines at 1, 2 and 3 σ). "
                "With u = 0 it is diagonal, so its ellipses stay axis-aligned; samples are "
                "ξ = μ + R ε with R of eq. 21.",
                (
                    "dlgm.posteriors.RankOneNormal.eta",
                    "dlgm.posteriors.RankOneNormal.covariance_matrix",
                    "dlgm.posteriors.RankOneNormal.reparameterize",
                ),
            ),
            GAP,
        ),
        look_for=(
            "Prior samples spread over the whole plane and few land where the posterior "
            "is, while q's samples sit on it: this is why q, not the prior, is the proposal "
            "for importance sampling (sec. 5.1). A diagonal q cannot tilt with a tilted "
            "posterior; a rank-one q can. The gap log p(v) − ELBO equals KL(q ‖ p(ξ | v)) "
            "up to Monte Carlo and grid error."
        ),
        try_this=(
            "Choose **Draw one** and draw an ambiguous digit (a 4 that could be a 9): does "
            "the posterior split into two modes, and where does q put its mass? Compare "
            "the gap of the diag and rank-one twins on the same image."
        ),
        section="sec. 4.3 (eq. 19-21) and sec. 5.1 (Fig. 2)",
        symbols=((r"v", "x"), (r"\xi", "xi"), *SYMBOLS_Q, (r"G", "grid_size"), (r"r", "radius")),
        also=(CREMER,),
    ),
    "imputation": Lesson(
        title="filling in missing pixels",
        equations=(
            Equation(
                r"\xi_t \sim q\big(\xi \mid v_o, v_m^{(t-1)}\big), \qquad "
                r"v_m^{(t)} \sim \pi\big(v_m \mid h(\xi_t)\big)",
                "The paper's pseudo-Gibbs chain (sec. 5.4, appendix F): observed pixels v_o "
                "stay fixed, missing ones v_m are redrawn. Exact only as far as q matches "
                "the true posterior.",
                ("dlgm.impute.ImputationChain", "dlgm.impute.impute"),
            ),
            Equation(
                r"\begin{gathered} \xi' \sim q(\xi \mid v), \\ \alpha = \min\left(1,"
                r"\ \frac{p(v, \xi') \,/\, q(\xi' \mid v)}{p(v, \xi_t) \,/\, q(\xi_t"
                r" \mid v)}\right) \end{gathered}",
                "Metropolis-within-Gibbs (Mattei & Frellsen, 2018): the same proposal, "
                "accepted with probability α, so the chain targets p(v_m | v_o) exactly.",
                ("dlgm.impute.ImputationChain.acceptance_rate",),
            ),
            Equation(
                r"w_p \propto \frac{p(v_o, \xi_p)}{q(\xi_p \mid v)}, \qquad "
                r"\mathrm{ESS} = \frac{1}{\sum_p w_p^2}",
                "Importance resampling: P particles weighted by the observed pixels only; "
                "each step draws one particle and its pixels.",
                ("dlgm.impute.ImputationChain.step", "dlgm.impute.ImputationChain.result"),
            ),
        ),
        look_for=(
            "Observed pixels never change; when they leave the digit's identity open, the "
            "pseudo-Gibbs chain can switch between digits, as in the paper's Fig. 5 (9 to "
            "7, 8 to 6). A low MWG acceptance rate, or an ESS far below P, "
            "says q is a poor proposal for this image. For Gaussian pixels (grey levels) "
            "the strip shows π's mean at the missing pixels unless you choose sampled "
            "pixels."
        ),
        try_this=(
            "Press **80% missing** and **Run** a few times: does the pseudo-Gibbs chain "
            "switch digits while the exact chain accepts few moves? Then hide a square "
            "over the middle of the digit instead (missing not at random)."
        ),
        section="sec. 5.4 (Fig. 5) and appendix F",
        symbols=(
            (r"v_o", "x[~mask]"),
            (r"v_m", "x[mask]"),
            (r"\xi", "xi"),
            (r"q(\xi \mid v)", "model.encode(v)"),
            (r"\log p(v, \xi)", "model.log_joint"),
        ),
        also=(MATTEI,),
    ),
    "estimators": Lesson(
        title="three gradient estimators and their variance",
        equations=(
            Equation(
                r"\begin{aligned} \nabla_\mu \mathbb{E}[f(\xi)] &= \mathbb{E}\Big[\big("
                r"f(\xi) - b\big)\, \nabla_\mu \log \mathcal{N}(\xi; \mu, \sigma^2 I)\Big]"
                r" \\ &= \mathbb{E}\Big[\big(f(\xi) - b\big)\, \frac{\epsilon}{\sigma}"
                r"\Big] \end{aligned}",
                "The score function (REINFORCE), with an optional baseline b.",
                ("dlgm.estimators.gradient_estimates",),
            ),
            Equation(
                r"\begin{gathered} \nabla_{\mu} \mathbb{E}[f(\xi)] = \mathbb{E}\big["
                r"\nabla_{\xi} f(\xi)\big], \\ \nabla_{C} \mathbb{E}[f(\xi)]"
                r" = \tfrac{1}{2} \mathbb{E}\big[\nabla^2_{\xi} f(\xi)\big] \end{gathered}",
                "Bonnet's (eq. 7) and Price's (eq. 8) theorems: the gradient and the Hessian of f.",
                ("dlgm.estimators.gradient_estimates",),
            ),
            Equation(
                r"\begin{gathered} \frac{\partial}{\partial R_{ij}} \mathbb{E}\big[f(\mu"
                r" + R \epsilon)\big] = \mathbb{E}\big[g_i \, \epsilon_j\big], \\"
                r" g = \nabla f(\mu + R\epsilon) \end{gathered}",
                "Gaussian backpropagation, eq. 10: autograd through ξ = μ + R ε. Here "
                "R = σ I, so the σ-gradient is E[g_k ε_k] (the page's R, the number of "
                "repeated estimates, is another R).",
                ("dlgm.estimators.gradient_estimates",),
            ),
            Equation(
                r"\operatorname{Var}\big[\hat g^{\,\text{score}}_k\big] = O(K), \qquad "
                r"\operatorname{Var}\big[\hat g^{\,\text{GBP}}_k\big] = O(1)",
                "Appendix D: per coordinate, the score function's variance grows with the "
                "dimension K (faster without a baseline when E[f] grows with K).",
                ("dlgm.estimators.variance_vs_dimension",),
            ),
        ),
        look_for=(
            "All three are unbiased; they differ in variance. On the log-log chart the "
            "score function's line climbs with K while Gaussian backpropagation's and "
            "Bonnet / Price's stay flat; the table's fitted exponent a (variance ∝ K^a) "
            "says by how much. A linear f has a constant gradient, so backpropagation's "
            "variance is exactly 0."
        ),
        try_this=(
            "Set **Largest K** to 500 and, under *More settings*, tick the leave-one-out "
            "baseline: how much does the score function's exponent drop, and does its line "
            "come down to the flat ones?"
        ),
        section="sec. 3 (eq. 7-10) and appendix D",
        symbols=(
            (r"\xi", "xi"),
            (r"\mu", "mu"),
            (r"\sigma", "sigma"),
            (r"\epsilon", "eps"),
            (r"b", "baseline"),
            (r"K", "ks"),
        ),
    ),
    "likelihoods": Lesson(
        title="importance-sampled log-likelihoods",
        equations=(
            Equation(
                r"\begin{gathered} \log p(v) \approx \log \frac{1}{K} \sum_{k=1}^{K}"
                r" \frac{p(v, \xi_k)}{q(\xi_k \mid v)}, \\ \xi_k \sim q(\xi \mid v)"
                r" \end{gathered}",
                "Importance sampling with the recognition model as proposal (sec. 5); here "
                "K counts importance samples, not latents.",
                ("dlgm.likelihood.log_likelihood", "dlgm.likelihood.evaluate"),
            ),
            Equation(
                r"\begin{aligned} \mathrm{ELBO}(q) &= \mathbb{E}_q\big[\log p(v, \xi)"
                r" - \log q(\xi \mid v)\big] \\ &\le \mathbb{E}\big[\log \hat p_K(v)"
                r"\big] \le \log p(v) \end{aligned}",
                "In expectation the estimate is a lower bound that rises with K from the "
                "ELBO (K = 1) towards log p(v) (Burda et al., 2016).",
                ("dlgm.model.DLGM.elbo", "dlgm.likelihood.iwae_bound"),
            ),
            GAP,
            Equation(
                r"\mathrm{NLL} = -\frac{1}{N} \sum_{n=1}^{N} \log \hat p_K(v_n)"
                r" \quad \text{nats per image}",
                "Table 1's number: the mean over N test images, lower is better.",
                ("dlgm.likelihood.evaluate",),
            ),
        ),
        look_for=(
            "The live estimate rises with K, fast at first, and the distance above the "
            "ELBO approaches the mean KL(q ‖ p(ξ | v)). Compare a model with Table 1 only "
            "when the data, its binarisation and the test images match: every row says "
            "which it used. Rank-one trailing diagonal in the 200-latent rows is a measured "
            "finding, not a bug: trained from the start its u turns q into a needle along "
            "one direction, and bounded (u_cap) it only draws level, also in the two -warmup "
            "rows, whose KL warm-up keeps more latents in use and reaches the paper's diagonal "
            "row; over 1,000 epochs the rank-one -warmup-1000 row passes the paper's "
            "rank-one row and leads its diagonal twin in each of three seeds (by "
            "0.10 ± 0.05 nats on average, a seventh of the paper's margin), "
            "and the two-layer -freebits row goes further "
            "(experiments/RESULTS.md, rank-one vs diagonal; a KL warm-up)."
        ),
        try_this=(
            "Slide **Importance samples K** from 1 to the largest value: by how many nats "
            "does the NLL fall below the negative ELBO, and has the curve flattened? Which "
            "test images are the worst modelled? In Fig. 2c, below Table 1, the paper's four "
            "methods share one architecture and one budget: which is closer to the DLGMs, "
            "factor analysis or wake-sleep, and what does the bound on u change for rank-one?"
        ),
        section="sec. 5.1-5.2 (Fig. 2c, Table 1)",
        symbols=((r"v", "x"), (r"\xi_k", "xi"), (r"K", "n_samples"), (r"N", "len(x)")),
        also=(BURDA, CREMER),
    ),
}


# ---------------------------------------------------------------------------- state
def opens_expanded(state: dict, page: str) -> bool:
    """Whether the lesson of ``page`` starts open, updating ``state`` (a tab's memory).

    Open on the first visit of a page in this tab, collapsed on later visits; every rerun
    within one visit gets the same answer (the expander keeps what the user did with it only
    while its arguments do not change).
    """
    seen = state.setdefault("seen", set())
    if state.get("page") != page:
        state["page"] = page
        state["open"] = page not in seen
        seen.add(page)
    return state["open"]


# ---------------------------------------------------------------------------- rendering
def code_names(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def paper_line(lesson: Lesson) -> str:
    """The paper section and link, and any other sources, as Markdown."""
    text = f"{PAPER}, {lesson.section}: [arXiv 1401.4082]({PAPER_URL})."
    if lesson.also:
        text += " See also " + "; ".join(f"[{cite}]({url})" for cite, url in lesson.also) + "."
    return text


def lesson_ui(page: str) -> None:
    """Draw the lesson of ``page`` (a key of :data:`LESSONS`) as an ``st.expander``."""
    lesson = LESSONS[page]
    state = st.session_state.setdefault(_STATE, {})
    with st.expander(
        f"Lesson: {lesson.title}",
        expanded=opens_expanded(state, page),
        icon=":material/school:",
    ):
        for eq in lesson.equations:  # the whole width: a column would clip the longer ones
            st.latex(eq.tex)
            st.caption(f"{eq.caption} Computed by {code_names(eq.code)}.")
        left, right = st.columns(2, gap="large")
        left.markdown(f"**What to look for.** {lesson.look_for}")
        left.markdown(f"**Try this.** {lesson.try_this}")
        if lesson.symbols:
            pairs = " · ".join(f"${tex}$: `{code}`" for tex, code in lesson.symbols)
            right.markdown(f"**In the code.** {pairs}")
        right.markdown(f"**From the paper.** {paper_line(lesson)}")

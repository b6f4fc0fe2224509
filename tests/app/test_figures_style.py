"""app/figures/style.py: one-call figures, frozen once for sharing."""

import numpy as np
import plotly.graph_objects as go

from app.figures import latent
from app.figures import style as F


def test_freeze_serialises_once_and_shows_the_same_json():
    import plotly.io as pio
    from plotly.tools import return_figure_from_figure_or_data

    rng = np.random.default_rng(0)
    xs = np.linspace(-3, 3, 21)

    def build():
        return latent.posterior_figure(
            xs,
            xs,
            rng.normal(size=(21, 21)),
            title="p",
            log_q={"q": rng.normal(size=(21, 21))},
            q_samples=rng.normal(size=(5, 2)),
            map_point=[0.0, 0.0],
        )

    rng = np.random.default_rng(0)
    expected = pio.to_json(build(), validate=False)
    rng = np.random.default_rng(0)
    fig = build()
    frozen = F.freeze(fig)
    assert frozen is fig and isinstance(frozen, F.FrozenFigure) and isinstance(fig, go.Figure)
    assert len(frozen.data) == 4  # still a complete figure
    # What st.plotly_chart does with it, twice: the same JSON each time, nothing consumed.
    for _ in range(2):
        shown = return_figure_from_figure_or_data(frozen, validate_figure=True)
        assert pio.to_json(shown, validate=False) == expected
    a, b = frozen.to_dict(), frozen.to_dict()
    assert a["data"][0] is not b["data"][0]  # fresh trace dicts (to_json pops their "uid")
    assert F.freeze(frozen) is frozen

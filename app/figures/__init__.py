"""Pure figure builders: numpy arrays in, Plotly figures out (no Streamlit, no torch).

One module per concept, each unit-tested on plain arrays (``tests/app/test_figures_*.py``):

- :mod:`app.figures.style`: the one way a figure is built (:func:`~app.figures.style.figure`),
  frozen for sharing (:func:`~app.figures.style.freeze`), and the app's one image style and
  palette;
- :mod:`app.figures.images`: images and grids of images (one tiler,
  :func:`~app.figures.images.tile_images`), imputation strips, galleries, painted masks;
- :mod:`app.figures.latent`: latent-space figures (embedding, posterior, latent bars);
- :mod:`app.figures.curves`: numbers against a variable (training curves, errors, variances,
  likelihoods, Table 1).

Conventions: every figure has a title and titled axes; images are ``go.Heatmap`` traces drawn
crisp (``zsmooth=False``), ink dark (grey level 1 is black), square pixels, row 0 at the top;
latent-space figures use the paper's names ``"ξ₁"``, ``"ξ₂"``. Pages show figures with
``app.widgets.show_figure``.
"""

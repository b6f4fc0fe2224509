"""DLGM Lab: the Streamlit entry point. Builds the page navigation, draws the model picker
(bound to the URL), runs the page, then draws the link to the view in the sidebar."""

import streamlit as st

from app.picker import PICKER_KEY, model_select_ui
from app.server import configure_server, first_page_done

configure_server()  # once per process: GC thresholds, the warm-up thread (torch threads after it)
st.set_page_config(page_title="DLGM Lab", page_icon=":material/blur_on:", layout="wide")

# The teaching order (sections of the sidebar): what the model is and what it generates; how
# the recognition model q infers, and how it is trained; what model and q are good for, and how
# good the model is. Each page opens with its lesson (app/lessons.py).
pages = {
    "1. The model": [
        st.Page(
            "app/pages/models.py", title="Models", icon=":material/model_training:", default=True
        ),
        st.Page("app/pages/samples.py", title="Samples", icon=":material/grid_view:"),
    ],
    "2. Inference": [
        st.Page("app/pages/embedding.py", title="Embedding", icon=":material/scatter_plot:"),
        st.Page("app/pages/posterior.py", title="Posterior", icon=":material/bubble_chart:"),
        st.Page(
            "app/pages/estimators.py", title="Gradient estimators", icon=":material/functions:"
        ),
    ],
    "3. Using the model": [
        st.Page("app/pages/imputation.py", title="Imputation", icon=":material/healing:"),
        st.Page("app/pages/likelihoods.py", title="Likelihoods", icon=":material/leaderboard:"),
    ],
}
MODEL_FREE = {"estimators"}  # URL paths of the pages that use no model: no picker there
try:
    page = st.navigation(pages)
    uses_model = page.url_path not in MODEL_FREE
    if uses_model:
        model_select_ui()  # one widget on every page, so its value and URL parameter stay
    page.run()
    from app.widgets import share_link_ui  # here: the page has imported it (and torch) already

    # After the page, so that every widget bound to the URL is in the link.
    share_link_ui(skip=() if uses_model else (PICKER_KEY,))
finally:
    first_page_done()  # the server's warm-up starts after the first page is drawn

"""DLGM Lab: the Streamlit entry point. Builds the page navigation and runs it."""

import streamlit as st

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
try:
    st.navigation(pages).run()
finally:
    first_page_done()  # the server's warm-up starts after the first page is drawn

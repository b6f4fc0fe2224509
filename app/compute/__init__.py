"""One module per page: that page's cached computations, its default settings and its part of
the server's warm-up (``warm(entry)``).

Each module is imported once per process (a ``@st.cache_*`` decorator inside a page script
would run again, and re-hash the function's source, on every rerun). Cached functions take the
model and the images themselves; :mod:`app.cache` turns them into keys. Results stored with
``cache_resource`` (figures frozen by ``app.figures.style.freeze``, read-only arrays) are shared
by every session and never modified.
"""

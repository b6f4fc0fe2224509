"""DLGM Lab's Streamlit front end: thin pages over ``dlgm`` and pure figure builders."""

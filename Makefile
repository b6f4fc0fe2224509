# make run   set up .venv and start the app on http://localhost:8501 (offline, pretrained models)
# make test  set up .venv with test packages and run the whole test suite
# make lint  ruff over the project
.PHONY: run test lint bench
run:
	bash scripts/setup.sh
	.venv/bin/streamlit run streamlit_app.py

test:
	bash scripts/setup.sh --dev
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check .

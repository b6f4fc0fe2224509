# make run   set up .venv and start the app on http://localhost:8501 (offline, pretrained models)
# make serve set up .venv and serve a class: N app processes behind nginx on :8501
#            (make serve N=4; default one per core; docs/serving.md)
# make test  set up .venv with test packages and run the whole test suite
# make lint  ruff check and ruff format --check over the project (after make test or
#            bash scripts/setup.sh --dev has installed ruff into .venv)
.PHONY: run serve test lint bench
run:
	bash scripts/setup.sh
	.venv/bin/streamlit run streamlit_app.py

serve:
	bash scripts/setup.sh
	.venv/bin/python scripts/serve.py $(if $(N),-n $(N))

test:
	bash scripts/setup.sh --dev
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

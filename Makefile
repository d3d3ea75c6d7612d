PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks demo
	$(BIN)/ruff format --check src tests benchmarks demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks demo
	$(BIN)/ruff format --check src tests benchmarks demo
	$(BIN)/python -m pytest

# the default model on OpenCV's cup clip: masks, an overlay video, and J / F on the hand-checked frames
demo: $(STAMP)
	$(BIN)/xmem segment demo/cup.mp4 --mask demo/cup-mask.png --out out/demo/masks \
		--overlay out/demo/cup-overlay.mp4 --overwrite
	$(BIN)/python benchmarks/demo_quality.py --masks out/demo/masks
	@echo "masks in out/demo/masks/, overlay video out/demo/cup-overlay.mp4"

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

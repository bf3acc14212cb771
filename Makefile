# The two quick-start commands are `make run` and `make test`; both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: setup run test test-fast bench clean

# The camera tracker's model files (docs/TRACKER.md): pinned, from the mediapipe wheel on PyPI.
TRACKER_FILES := models/blazepose/pose_landmark_full.tflite

setup: $(STAMP) $(TRACKER_FILES)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Without the package index the daemon still starts; camera frames for keypoint models then get a
# clear error (tracker_unavailable) until the files are fetched.
$(TRACKER_FILES): models/blazepose/card.toml | $(STAMP)
	$(VENV)/bin/pose2person models fetch blazepose || echo "warning: the camera tracker's files could not be fetched (see above)" >&2

run: setup  ## start the daemon on the default model (Ctrl-C stops it)
	$(VENV)/bin/pose2person serve $(ARGS)

# The Ray engine's tests need ray[serve] (the `ray` extra); `make run` does not install it.
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[ray]'
	touch $(RAY_STAMP)

test: setup $(RAY_STAMP)  ## the whole test suite
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

bench: setup
	$(PY) bench/transport.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

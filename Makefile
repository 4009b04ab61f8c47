# ssgan_fast: the two commands of the README are `make train` (the main job: SphericGAN on the
# built-in digits, CPU, a few minutes) and `make test`. Both install what they need first.
PY ?= python
export MAX_JOBS ?= 2

.PHONY: install train test bench bench-quick build-info clean test-device-versions aot-table lint

install:
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q ninja numpy scipy pytest scikit-learn tqdm pyyaml tensorboard open_clip_torch matplotlib
	@# the peers the metric tests compare with (tests/metrics/test_peers.py), held to the torch pin
	$(PY) -m pip install -q -c constraints.txt pytorch-fid torchmetrics torch-fidelity prdc clean-fid
	@# NVIDIA DALI (optional extra): its CPU operators let the tests check the DALI loader without a GPU
	$(PY) -m pip install -q nvidia-dali-cuda130 || echo "DALI not installed: the DALI loader tests will be skipped"
	@# A plain install: setup.py finds the CUDA toolkit (GPU or not) and compiles the CUDA kernels for
	@# sm_80 + sm_90 (+ compute_90 PTX) when no GPU is visible, so they cannot rot.
	$(PY) -m pip install --no-build-isolation --no-deps -e .
	$(PY) -c "import ssgan_fast; ssgan_fast.build_info(print_=True)"

train: install
	$(PY) -m ssgan_fast.train

test: install
	$(PY) -m pytest -q tests

# ruff with the named rule set of pyproject.toml [tool.ruff.lint] (E, F, W, I, B, UP; no ignores), the
# generated constants module current (tools/gen_constants.py), and the import contracts
# (pyproject.toml [tool.importlinter]): CLIs > engine > evaluation > models > nn, metrics, data > ops >
# _backends, weights, _constants; metrics and data independent; reference / _checks / host functions
# used by the ops only
lint:
	$(PY) -m pip install -q ruff==0.17.6 import-linter
	$(PY) -m ruff check .
	$(PY) tools/gen_constants.py --check
	$(PY) -c "from importlinter.cli import lint_imports_command; lint_imports_command()"

bench: install
	$(PY) bench/run.py

bench-quick: install
	$(PY) bench/run.py --quick --no-compile

# The test suite under the lent GPU machines' torch 2.11 + Triton 3.6, in a side venv and a copy of
# the tree (not part of `make test`: about 530 MB of wheels and a second build).
test-device-versions:
	bash tests/device_versions.sh

# The full ahead-of-time sweep (no GPU needed, about 11 minutes on 2 cores): record the Triton launches of
# the op tests under the interpreter, compile every specialisation for sm_90 / sm_80 under Triton 3.8 and
# the GPU machines' Triton 3.6 (side venv), read the CUDA kernels' ptxas resources from the built _C, and
# write the committed tables tools/aot_tables/ (tests/kernels/test_aot.py checks them).
TRITON36_VENV ?= /tmp/ssgan-triton36
aot-table:
	SSGAN_FAST_AOT_COVERAGE=0 $(PY) -m pytest -q -p no:cacheprovider tests/ops --triton-launches /tmp/ssgan-launches.jsonl
	$(PY) tools/aot.py table --launches /tmp/ssgan-launches.jsonl
	[ -x $(TRITON36_VENV)/bin/python ] || { $(PY) -m venv --system-site-packages $(TRITON36_VENV) && \
	  $(TRITON36_VENV)/bin/python -m pip install -q --no-deps triton==3.6.0; }
	$(TRITON36_VENV)/bin/python tools/aot.py table --launches /tmp/ssgan-launches.jsonl
	$(PY) tools/aot.py cuda
	$(PY) tools/aot.py summary

build-info:
	$(PY) -c "import ssgan_fast; ssgan_fast.build_info(print_=True)"

clean:
	rm -rf build dist *.egg-info ssgan_fast/_C*.so

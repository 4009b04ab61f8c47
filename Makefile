# ssgan_fast: the two commands of the README are `make train` (the main job: SphericGAN on the
# built-in digits, CPU, a few minutes) and `make test`. Both install what they need first.
PY ?= python
CUDA_HOME ?= /usr/local/cuda
TORCH_CUDA_ARCH_LIST ?= 9.0
export MAX_JOBS ?= 2

.PHONY: install train test bench bench-quick build-info clean test-device-versions

install:
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q ninja numpy scipy pytest scikit-learn tqdm pyyaml tensorboard open_clip_torch
	@# NVIDIA DALI (optional extra): its CPU operators let the tests check the DALI loader without a GPU
	$(PY) -m pip install -q nvidia-dali-cuda130 || echo "DALI not installed: the DALI loader tests will be skipped"
	@# CUDA kernels are compiled (and linked) whenever nvcc exists, GPU or not, so they cannot rot.
	if [ -x "$(CUDA_HOME)/bin/nvcc" ]; then \
	  FORCE_CUDA=1 CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" \
	    $(PY) -m pip install --no-build-isolation --no-deps -e . ; \
	else \
	  $(PY) -m pip install --no-build-isolation --no-deps -e . ; \
	fi
	$(PY) -c "import ssgan_fast; ssgan_fast.build_info(print_=True)"

train: install
	$(PY) -m ssgan_fast.train

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) bench/run.py

bench-quick: install
	$(PY) bench/run.py --quick --no-compile

# The test suite under the lent GPU machines' torch 2.11 + Triton 3.6, in a side venv and a copy of
# the tree (not part of `make test`: about 530 MB of wheels and a second build).
test-device-versions:
	bash tests/device_versions.sh

build-info:
	$(PY) -c "import ssgan_fast; ssgan_fast.build_info(print_=True)"

clean:
	rm -rf build dist *.egg-info ssgan_fast/_C*.so

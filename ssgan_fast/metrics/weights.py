"""The weights registry lives in ssgan_fast.weights (the bottom layer: nn, metrics and models use
it); this name stays for code that imported it from here."""
from ..weights import *  # noqa: F401,F403
from ..weights import REGISTRY, WeightSpec, WeightsError, load_state_dict, register_weights, sha256_file  # noqa: F401
from ..weights import weights_dir, weights_path  # noqa: F401

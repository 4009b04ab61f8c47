"""The weights registry lives in ssgan_fast.weights (the bottom layer: nn, metrics and models use
it); this name stays for code that imported it from here."""
from ..weights import *  # noqa: F401,F403
from ..weights import (  # noqa: F401  # noqa: F401
    REGISTRY,
    WeightsError,
    WeightSpec,
    load_state_dict,
    register_weights,
    sha256_file,
    weights_dir,
    weights_path,
)

"""The repository's tree (checkout only: the wheel's smoke tests copy tests/ops and tests/kernels, not this)."""


def test_every_family_has_one_name_in_every_place():
    """The op family is the unit of the tree: for each family of the index (ssgan_fast.ops.FAMILIES) its
    module, tests and benchmark carry its name, and a csrc/<family>/ folder registers its own ops
    (<family>_ops.cpp); no file outside a family's folder names a family's op in a registration."""
    import glob
    import importlib
    import os

    from ssgan_fast.ops import FAMILIES
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for fam in FAMILIES:
        assert os.path.isfile(os.path.join(root, "ssgan_fast", "ops", f"{fam}.py")), fam
        assert os.path.isfile(os.path.join(root, "tests", "ops", f"test_{fam}.py")), fam
        assert os.path.isfile(os.path.join(root, "bench", "ops", f"{fam}.py")), fam
        importlib.import_module(f"ssgan_fast.ops.{fam}")
    fams_c = {os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(root, "csrc", "*", "*_ops.cpp"))}
    for d in glob.glob(os.path.join(root, "csrc", "*", "")):
        name = os.path.basename(os.path.dirname(d))
        if name in ("common", "emu"):
            continue
        assert name in fams_c, f"csrc/{name}/ has no {name}_ops.cpp registering its ops"
        for f in glob.glob(os.path.join(d, "*")):  # every file of the folder carries the family's name
            assert os.path.basename(f).startswith(name), f
    module = open(os.path.join(root, "csrc", "common", "module.cpp")).read()
    assert "m.impl(" not in module and "_fwd" not in module  # the module names no family's op

"""The GPU machines' ssgan_fast._C, built ahead of time on the development machine.

GPU minutes go to tests and benchmarks, not to compiling: tools/gpu_prebuild.sh builds _C for the
lent machines (CPython 3.12, torch 2.11.0 + CUDA 13 headers, sm_90) into .prebuilt/ (git-ignored,
carried with the device run), and tools/gpu_session.sh installs it there with

    python3 tools/prebuilt.py use      # exit 0: installed; 3: not usable (why on stderr) -> build there

which checks, before copying it into ssgan_fast/, that it was built from these sources (sha256 of
csrc/ and setup.py), for this Python and this torch.

    python3 tools/prebuilt.py hash     # the sources' hash
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, ".prebuilt")
META = os.path.join(DIR, "_C.json")


def files_hash(paths) -> str:
    """sha256 over (path relative to the checkout, contents) of the files among `paths`, in order."""
    h = hashlib.sha256()
    for path in paths:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                h.update(os.path.relpath(path, ROOT).encode() + b"\0" + f.read())
    return h.hexdigest()


def sources_hash() -> str:
    """What the extension is built from: csrc/ and setup.py."""
    return files_hash(sorted(glob.glob(os.path.join(ROOT, "csrc", "**", "*"), recursive=True))
                      + [os.path.join(ROOT, "setup.py")])


def ext_suffix() -> str:
    return sysconfig.get_config_var("EXT_SUFFIX")


def use() -> int:
    if not os.path.exists(META):
        print("no prebuilt _C (.prebuilt/_C.json): build it with bash tools/gpu_prebuild.sh", file=sys.stderr)
        return 3
    with open(META) as f:
        meta = json.load(f)
    import torch
    problems = []
    if meta["sources_sha256"] != sources_hash():
        problems.append("it was built from other sources (csrc/ or setup.py changed since)")
    if meta["ext_suffix"] != ext_suffix():
        problems.append(f"it is for {meta['ext_suffix']}, this Python needs {ext_suffix()}")
    if meta["torch"].split("+")[0] != torch.__version__.split("+")[0]:
        problems.append(f"it was built against torch {meta['torch']}, this is {torch.__version__}")
    so = os.path.join(DIR, meta["file"])
    if not os.path.exists(so):
        problems.append(f"{so} is missing")
    if problems:
        print("prebuilt _C not usable: " + "; ".join(problems), file=sys.stderr)
        return 3
    for old in glob.glob(os.path.join(ROOT, "ssgan_fast", "_C*.so")):
        os.remove(old)
    shutil.copy2(so, os.path.join(ROOT, "ssgan_fast", meta["file"]))
    print(f"using the prebuilt {meta['file']} (torch {meta['torch']}, archs {meta['archs']}, sources "
          f"{meta['sources_sha256'][:12]})")
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "hash"
    if cmd == "hash":
        print(sources_hash())
    elif cmd == "use":
        sys.exit(use())
    else:
        sys.exit(__doc__)

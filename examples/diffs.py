"""Print the before/after diffs (docs/dropin.md) of the examples (python examples/diffs.py)."""
import difflib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAIRS = [("acgan_plain.py", "acgan_aam.py"), ("acgan_plain.py", "acgan_prototype.py"),
         ("acgan_plain.py", "acgan_cutmix.py"), ("fid_numpy.py", "fid_feature_stats.py")]


def unified(a: str, b: str) -> str:
    """The unified diff (one line of context) from examples/a to examples/b."""
    return "".join(difflib.unified_diff((HERE / a).read_text().splitlines(True),
                                        (HERE / b).read_text().splitlines(True),
                                        f"examples/{a}", f"examples/{b}", n=1))


if __name__ == "__main__":
    for a, b in PAIRS:
        print(f"<!-- diff {a} {b} -->\n```diff\n{unified(a, b)}```\n")

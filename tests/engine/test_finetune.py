"""Fine-tuning (issue 36): --init-from starts a new run from another run's weights where shapes match; a
new class count re-initialises the class layers and says which; optimizer states reset unless
--init-keep-opt; the source is recorded in config.json."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ssgan_fast.train import main as train_main

SMALL = ["--model", "medgan", "--size", "8", "--batch", "4", "--no-progress", "--no-final-eval", "--sample-every",
         "0", "--set", "model.z_dim=8", "--set", "model.ch=8", "--set", "model.c_ch=8"]


def _sd(run, name="last.pt"):
    return torch.load(run / "ckpt" / name, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    assert train_main(SMALL + ["--out", str(d), "--name", "src", "--steps", "3"]) == 0
    return d / "src"


def test_init_from_same_shapes_loads_everything_and_resets_the_optimizer(source, tmp_path, caplog):
    ft = tmp_path / "ft2"
    assert train_main(SMALL + ["--out", str(tmp_path), "--name", "ft2", "--steps", "1", "--init-from", str(source),
                               "--set", "model.lr=1e-12"]) == 0
    src, new = _sd(source), _sd(ft)
    cfg = json.loads((ft / "config.json").read_text())["train"]
    assert cfg["init_from"] == str(source) and cfg["init_keep_opt"] is False
    moving = ("._u", "._v", "running_mean", "running_var", "num_batches_tracked")  # updated by a forward pass
    for k, v in src["model"].items():  # one step at lr 1e-12: the weights are the source's
        if v.is_floating_point() and not k.endswith(moving):
            torch.testing.assert_close(new["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    opt = next(iter(new["optim"].values()))
    assert all(int(st["step"]) == 1 for st in opt["state"].values())  # reset: one step of Adam, not 3 + 1
    keep = tmp_path / "ft3"
    assert train_main(SMALL + ["--out", str(tmp_path), "--name", "ft3", "--steps", "1", "--init-from",
                               f"{source}/ckpt/last.pt", "--init-keep-opt"]) == 0
    opt = next(iter(_sd(keep)["optim"].values()))
    assert all(int(st["step"]) >= 2 for st in opt["state"].values())  # kept: the source's steps go on


def test_new_class_count_reinitialises_the_class_layers_and_lists_them(source, tmp_path, caplog, capsys):
    data = tmp_path / "three"
    # a 3-class folder data set from the digits
    from ssgan_fast.data import open_dataset
    ds = open_dataset("digits", size=8)
    for c in range(3):
        (data / f"c{c}").mkdir(parents=True)
        for i in np.nonzero(ds.labels == c)[0][:12]:
            Image.fromarray(ds.images[i][..., 0]).save(data / f"c{c}" / f"{i}.png")
    with caplog.at_level("INFO", logger="ssgan_fast"):
        assert train_main(SMALL + ["--out", str(tmp_path), "--name", "ft", "--steps", "1", "--data",
                                   f"folder:{data}", "--labels-per-class", "4", "--init-from", str(source)]) == 0
    text = caplog.text
    assert "re-initialised, their shapes differ" in text and "(10, " in text and "(3, " in text
    src, new = _sd(source), _sd(tmp_path / "ft")
    same = [k for k, v in new["model"].items() if k in src["model"] and src["model"][k].shape == v.shape]
    assert len(same) > len(new["model"]) // 2  # most of the network came from the source
    with pytest.raises(SystemExit) as e:  # the optimizer cannot be kept across different shapes
        train_main(SMALL + ["--out", str(tmp_path), "--name", "ft2", "--steps", "1", "--data", f"folder:{data}",
                            "--labels-per-class", "4", "--init-from", str(source), "--init-keep-opt"])
    assert e.value.code == 2 and "--init-keep-opt" in capsys.readouterr().err
    for bad, msg in ((["--init-from", str(tmp_path / "nope")], "neither a checkpoint"),
                     (["--init-keep-opt"], "needs --init-from")):
        with pytest.raises(SystemExit) as e:
            train_main(SMALL + ["--out", str(tmp_path / "bad"), "--steps", "1", *bad])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())

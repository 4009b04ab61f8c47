"""stylegan2-ada's data set format (sg2:PATH): a zip or folder written exactly as its dataset_tool.py writes
them - uncompressed PNGs at <idx[:5]>/img<idx:08d>.png, dataset.json {"labels": [[name, class], ...] | null}
- through the real data path: loaders, streaming, bad-file counting, the statistics cache key."""
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from ssgan_fast.data import DataError, make_split, open_dataset
from ssgan_fast.data.loaders import make_loader


def _write(dest, images, labels, as_zip: bool):
    """dataset_tool.py's layout: archive_fname = f'{idx_str[:5]}/img{idx_str}.png', idx_str = f'{idx:08d}';
    PNG without compression; metadata = {'labels': labels if all(x is not None ...) else None}."""
    files, meta = {}, []
    for idx, (img, lab) in enumerate(zip(images, labels, strict=True)):
        idx_str = f"{idx:08d}"
        name = f"{idx_str[:5]}/img{idx_str}.png"
        b = io.BytesIO()
        Image.fromarray(img, {1: "L", 3: "RGB"}[img.shape[2]] if img.shape[2] == 3 else "L").save(
            b, format="png", compress_level=0, optimize=False)
        files[name] = b.getvalue()
        meta.append([name, lab] if lab is not None else None)
    dataset_json = json.dumps({"labels": meta if all(x is not None for x in meta) else None})
    if as_zip:
        with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as z:
            for n, b in files.items():
                z.writestr(n, b)
            z.writestr("dataset.json", dataset_json)
    else:
        for n, b in files.items():
            (dest / n).parent.mkdir(parents=True, exist_ok=True)
            (dest / n).write_bytes(b)
        (dest / "dataset.json").write_text(dataset_json)
    return dest


def _digits(n):
    d = open_dataset("digits", size=16)
    imgs = [np.repeat(d.images[i], 3, axis=2) for i in range(n)]
    return imgs, [int(d.labels[i]) for i in range(n)]


@pytest.mark.parametrize("as_zip", [True, False])
def test_sg2_zip_and_folder_read_as_dataset_tool_writes_them(tmp_path, as_zip):
    imgs, labels = _digits(40)
    src = _write(tmp_path / ("d.zip" if as_zip else "d"), imgs, labels, as_zip)
    if not as_zip:
        src.mkdir(exist_ok=True)
    ds = open_dataset(f"sg2:{src}", size=16)
    assert len(ds) == 40 and ds.num_classes == 10 and ds.labels.tolist() == labels
    assert ds.ids[0] == "00000/img00000000.png"
    assert np.array_equal(ds.load(3), imgs[3])  # decoded exactly (PNG, same size)
    split = make_split(ds.labels, ds.num_classes, None, 1.0, 0)
    for kind in ("tensor", "torch"):
        b = next(make_loader(kind, ds, split, 4, 0, "cpu", seed=0))
        assert b["x_l"].shape == (4, 3, 16, 16)
    from ssgan_fast.evaluation import data_hash
    h = data_hash(ds)
    assert h == data_hash(open_dataset(f"sg2:{src}", size=16))  # the cache key is stable


def test_sg2_unlabeled_and_bad_files(tmp_path):
    imgs, _ = _digits(12)
    src = _write(tmp_path / "u.zip", imgs, [None] * 12, True)  # dataset_tool: labels null
    ds = open_dataset(f"sg2:{src}", size=16)
    assert (ds.labels == -1).all() and ds.num_classes == 0
    # a label file that lists only some images: the rest unlabeled (an extension of the format)
    d = tmp_path / "part"
    _write(d.mkdir() or d, imgs, list(range(12)), False)
    meta = json.loads((d / "dataset.json").read_text())
    meta["labels"] = meta["labels"][:6]
    (d / "dataset.json").write_text(json.dumps(meta))
    ds = open_dataset(f"sg2:{d}", size=16)
    assert ds.labels.tolist() == list(range(6)) + [-1] * 6
    (d / "00000" / "img00000002.png").write_bytes(b"not a png")  # bad file: counted and named by the loaders
    from ssgan_fast.data.stream import stream
    with pytest.raises(DataError, match="img00000002.png"):
        list(stream(ds, np.arange(12), batch=4, max_bad_fraction=0.0))
    for bad, msg in ((tmp_path / "nope.zip", "does not exist"), (tmp_path / "u.zip", None)):
        if msg:
            with pytest.raises(DataError, match=msg):
                open_dataset(f"sg2:{bad}", size=16)
    meta["labels"][0][1] = [0.5, 1.0]  # vector labels are not class labels
    (d / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="class index"):
        open_dataset(f"sg2:{d}", size=16)


def test_sg2_trains_end_to_end(tmp_path):
    from ssgan_fast.train import main as train_main
    imgs, labels = _digits(60)
    src = _write(tmp_path / "t.zip", imgs, labels, True)
    assert train_main(["--model", "medgan", "--data", f"sg2:{src}", "--size", "8", "--batch", "4", "--steps", "2",
                       "--labels-per-class", "2", "--out", str(tmp_path / "runs"), "--no-progress",
                       "--no-final-eval", "--sample-every", "0"]) == 0

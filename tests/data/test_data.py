"""Data sets on generated fixtures, split and sampler, loaders (tensor / torch / DALI CPU)."""
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ssgan_fast.data import (
    Augment,
    DaliLoader,
    DataError,
    SemiSupervisedSampler,
    Split,
    TensorLoader,
    TorchLoader,
    dali_available,
    make_loader,
    make_split,
    open_dataset,
)
from ssgan_fast.data.augment import to_unit


def _img(h, w, seed, mode="RGB"):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    return Image.fromarray(a[..., :3]).convert(mode) if mode != "RGBA" else Image.fromarray(a, "RGBA")


@pytest.fixture
def folder(tmp_path):
    """3 classes; RGB jpg/png, grayscale, RGBA, palette; non-square sizes."""
    root = tmp_path / "folder"
    k = 0
    for name in ["cat", "dog", "eel"]:
        (root / name).mkdir(parents=True)
        for j, (mode, ext) in enumerate([("RGB", "png"), ("RGB", "jpg"), ("L", "png"), ("RGBA", "png"), ("P", "png"),
                                         ("RGB", "png")]):
            _img(12 + j, 17, k, mode).save(root / name / f"{j}.{ext}")
            k += 1
    return root


def test_specs_and_conversions(folder):
    ds = open_dataset(f"folder:{folder}", size=8)
    assert len(ds) == 18 and ds.num_classes == 3 and ds.class_names == ["cat", "dog", "eel"]
    for i in range(len(ds)):
        im = ds.load(i)
        assert im.shape == (8, 8, 3) and im.dtype == np.uint8  # gray / RGBA / palette -> RGB, centre crop
    d = open_dataset("digits", size=16)
    assert d.images.shape[1:] == (16, 16, 1) and len(open_dataset("digits", "test")) + len(d) == 1797
    r = open_dataset("ring2d")
    assert r.points.shape == (8 * 272, 2) and (r.labels >= 0).sum() == 128
    centres = np.array([[np.cos(2 * k * np.pi / 8), np.sin(2 * k * np.pi / 8)] for k in range(8)])
    for k in range(8):
        pts = r.points[r.labels == k]
        assert np.linalg.norm(pts.mean(0) - centres[k]) < 0.3
    assert abs(r.points[:272].var(0).mean() - 0.1) < 0.03  # the paper's variance
    assert abs(np.linalg.norm(open_dataset("ring2d-cvae").points - 100, axis=1).mean() - 2.0) < 0.05


def test_bad_data_errors(tmp_path, folder):
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(f"folder:{tmp_path / 'nope'}")
    (folder / "empty").mkdir()
    with pytest.raises(DataError, match="without images.*empty"):
        open_dataset(f"folder:{folder}")
    with pytest.raises(DataError, match="unknown data set"):
        open_dataset("mnist")
    with pytest.raises(DataError, match="npz"):
        open_dataset(f"npz:{tmp_path / 'x.npz'}")
    np.savez(tmp_path / "bad.npz", images=np.zeros((3, 4, 4, 3), np.float32), labels=np.zeros(3))
    with pytest.raises(DataError, match="uint8"):
        open_dataset(f"npz:{tmp_path / 'bad.npz'}", size=4)


def test_cub_layout(tmp_path):
    root = tmp_path / "CUB_200_2011"
    (root / "images" / "001.A").mkdir(parents=True)
    (root / "images" / "002.B").mkdir(parents=True)
    lines, labels, split, boxes = [], [], [], []
    for i in range(1, 7):
        rel = f"{'001.A' if i <= 3 else '002.B'}/{i}.jpg"
        _img(20, 30, i).save(root / "images" / rel)
        lines.append(f"{i} {rel}")
        labels.append(f"{i} {1 if i <= 3 else 2}")
        split.append(f"{i} {int(i % 3 != 0)}")
        boxes.append(f"{i} 2.0 3.0 10.0 12.0")
    for name, rows in (("images.txt", lines), ("image_class_labels.txt", labels), ("train_test_split.txt", split),
                       ("bounding_boxes.txt", boxes), ("classes.txt", ["1 001.A", "2 002.B"])):
        (root / name).write_text("\n".join(rows) + "\n")
    tr = open_dataset(f"cub200:{tmp_path}?bbox=1", "train", size=8)
    te = open_dataset(f"cub200:{tmp_path}", "test", size=8)
    assert len(tr) == 4 and len(te) == 2 and tr.labels.tolist() == [0, 0, 1, 1] and tr.boxes.shape == (4, 4)
    assert tr.load(0).shape == (8, 8, 3) and tr.class_names[:2] == ["001.A", "002.B"]
    (root / "image_class_labels.txt").write_text("\n".join(labels[:-1]) + "\n")
    with pytest.raises(DataError, match="image_class_labels.txt lists 5"):
        open_dataset(f"cub200:{tmp_path}")


def test_cifar_npz_domains(tmp_path, folder):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(range(4))}, f)
    c = open_dataset(f"cifar10:{tmp_path}")
    assert c.images.shape == (20, 32, 32, 3) and c.num_classes == 10 and len(open_dataset(f"cifar10:{d}", "test")) == 4
    np.savez(tmp_path / "s.npz", images=rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8),
             labels=np.array([0, 1, -1, 2, -1]))
    n = open_dataset(f"npz:{tmp_path / 's.npz'}", size=8)
    assert n.num_classes == 3 and (n.labels == -1).sum() == 2
    (folder / "attrs.csv").write_text("file,smile,young\n" + "".join(
        f"{p.relative_to(folder)},{i % 2},1\n" for i, p in enumerate(sorted(folder.rglob("*.*")))
        if p.suffix != ".csv"))
    dom = open_dataset(f"domains:{folder}", size=8)
    assert dom.attrs.shape == (18, 2) and dom.attr_names == ["smile", "young"]


def test_split_rules_and_persistence(tmp_path):
    labels = np.repeat(np.arange(5), 20)
    labels[::7] = -1  # some images come unlabeled
    a = make_split(labels, 5, labels_per_class=4, seed=1)
    b = make_split(labels, 5, labels_per_class=4, seed=1)
    c = make_split(labels, 5, labels_per_class=4, seed=2)
    assert np.array_equal(a.labeled, b.labeled) and not np.array_equal(a.labeled, c.labeled)
    assert a.labeled_counts(labels).tolist() == [4] * 5
    assert len(a.labeled) + len(a.unlabeled) == 100 and not set(a.labeled) & set(a.unlabeled)
    assert all(labels[i] >= 0 for i in a.labeled)
    f = make_split(labels, 5, label_fraction=0.25, seed=0)
    assert abs(len(f.labeled) - 0.25 * (labels >= 0).sum()) <= 5
    with pytest.raises(DataError, match="fewer labeled"):
        make_split(labels, 5, labels_per_class=30)
    a.save(tmp_path / "split.json")
    assert np.array_equal(Split.load(tmp_path / "split.json", labels).labeled, a.labeled)
    with pytest.raises(DataError, match="other data"):
        Split.load(tmp_path / "split.json", labels[::-1])
    # the papers' counts are expressible: CIFAR-10 4 000 labels = 400 per class
    cifar = np.repeat(np.arange(10), 5000)
    assert len(make_split(cifar, 10, labels_per_class=400).labeled) == 4000


def test_sampler_static_shapes_epochs_balance_resume():
    labels = np.r_[np.zeros(30), np.ones(5), np.full(5, 2)].astype(np.int64)
    sp = make_split(np.r_[labels, np.full(100, -1)], 3, seed=0)
    s = SemiSupervisedSampler(sp, np.r_[labels, np.full(100, -1)], 6, 16, seed=3, class_balanced=True)
    assert len(s) == 100 // 16 == s.steps_per_epoch
    seen_u = []
    counts = np.zeros(3)
    for _ in range(len(s)):
        lab, unl = next(s)
        assert lab.shape == (6,) and unl.shape == (16,)
        seen_u += unl.tolist()
        counts += np.bincount(labels[lab], minlength=3)
    assert len(set(seen_u)) == len(seen_u)  # one pass over the unlabeled pool per epoch, no repeats
    assert counts.min() == counts.max()  # class balanced despite 30 / 5 / 5
    # resume mid-epoch reproduces the continuation exactly
    t = SemiSupervisedSampler(sp, np.r_[labels, np.full(100, -1)], 6, 16, seed=3, class_balanced=True)
    for _ in range(3):
        next(t)
    state = t.state_dict()
    want = [next(t) for _ in range(10)]
    u = SemiSupervisedSampler(sp, np.r_[labels, np.full(100, -1)], 6, 16, seed=3, class_balanced=True)
    u.load_state_dict(state)
    for (a1, b1), (a2, b2) in zip(want, [next(u) for _ in range(10)], strict=False):
        assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    # DDP ranks take disjoint shares
    r0 = SemiSupervisedSampler(sp, np.r_[labels, np.full(100, -1)], 2, 8, rank=0, world_size=2)
    r1 = SemiSupervisedSampler(sp, np.r_[labels, np.full(100, -1)], 2, 8, rank=1, world_size=2)
    assert not set(r0.unl) & set(r1.unl) and not set(r0.lab) & set(r1.lab)
    with pytest.raises(DataError, match="fewer than one batch"):
        SemiSupervisedSampler(sp, np.r_[labels, np.full(100, -1)], 2, 500)


def test_tensor_and_torch_loaders_agree(folder):
    ds = open_dataset(f"folder:{folder}", size=8)
    sp = make_split(ds.labels, 3, labels_per_class=2, seed=0)
    a = TensorLoader(ds, sp, 3, 4, seed=5)
    b = TorchLoader(ds, sp, 3, 4, seed=5, num_workers=2)
    for _ in range(5):
        x, y = next(a), next(b)
        for k in ("x_l", "y_l", "x_u"):
            assert torch.equal(x[k], y[k]), k
    assert x["x_l"].shape == (3, 3, 8, 8) and x["x_l"].min() >= -1 and x["x_l"].max() <= 1
    # with augmentation: same generator seed, same batched ops -> still identical
    a = TensorLoader(ds, sp, 3, 4, seed=5, augment=Augment(flip=True, crop_pad=2, translate=0.125))
    b = TorchLoader(ds, sp, 3, 4, seed=5, augment=Augment(flip=True, crop_pad=2, translate=0.125), num_workers=0)
    xa, xb = next(a), next(b)
    assert torch.equal(xa["x_u"], xb["x_u"])
    # static buffers (CUDA-graph replay) are filled in place
    bufs = {k: torch.empty_like(v) for k, v in next(a).items()}
    ptr = bufs["x_l"].data_ptr()
    a.next_into(bufs)
    assert bufs["x_l"].data_ptr() == ptr


def test_corrupt_images(folder, caplog):
    (folder / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    good = folder / "dog" / "1.jpg"
    (folder / "dog" / "trunc.jpg").write_bytes(good.read_bytes()[:60])
    ds = open_dataset(f"folder:{folder}", size=8)
    sp = make_split(ds.labels, 3, seed=0)
    with caplog.at_level(logging.WARNING, logger="ssgan_fast"):
        t = TensorLoader(ds, sp, 4, 0, max_bad_fraction=0.2)
    assert len(t.bad_files) == 2 and "2 corrupt" in caplog.text
    for _ in range(10):
        assert next(t)["x_l"].shape[0] == 4
    with pytest.raises(DataError, match="corrupt"):
        TensorLoader(ds, sp, 4, 0, max_bad_fraction=0.05)
    # torch loader: bad items replaced by the next good one of the pool, counted per epoch
    tl = TorchLoader(ds, sp, 4, 0, max_bad_fraction=0.5, num_workers=0)
    for _ in range(tl.steps_per_epoch * 2):
        assert next(tl)["x_l"].shape == (4, 3, 8, 8)
    strict = TorchLoader(ds, sp, 4, 0, max_bad_fraction=0.0, num_workers=0)
    with pytest.raises(DataError, match="corrupt"):
        for _ in range(strict.steps_per_epoch * 3):
            next(strict)


def test_auto_and_dali_errors(folder, monkeypatch):
    ds = open_dataset(f"folder:{folder}", size=8)
    sp = make_split(ds.labels, 3, labels_per_class=2, seed=0)
    assert isinstance(make_loader("auto", ds, sp, 2, 2), TensorLoader)  # small: decoded into memory
    from ssgan_fast.data import TorchLoader as TL
    assert isinstance(make_loader("auto", ds, sp, 2, 2, memory_budget=10), TL)
    with pytest.raises(DataError, match="unknown loader"):
        make_loader("fast", ds, sp, 2, 2)
    ok, _ = dali_available()
    with pytest.raises(DataError, match="dali"):
        DaliLoader(ds, sp, 2, 2, device="cpu")  # not installed, or no GPU: a clear error either way
    d = open_dataset("digits")
    with pytest.raises(DataError):
        make_loader("dali", d, make_split(d.labels, 10, labels_per_class=5), 2, 2, device="cpu")


@pytest.mark.skipif(not dali_available()[0], reason="NVIDIA DALI is not installed")
def test_dali_cpu_pipeline(folder):
    (folder / "eel" / "bad.png").write_bytes(b"\x89PNG garbage")
    ds = open_dataset(f"folder:{folder}", size=8)
    sp = make_split(ds.labels, 3, labels_per_class=2, seed=0)
    dl = DaliLoader(ds, sp, 3, 4, device="cpu", augment=Augment(flip=True, crop_pad=1), max_bad_fraction=0.2,
                    _dali_device="cpu", num_threads=1)
    assert dl.bad == 1
    for _ in range(6):  # beyond one epoch of either pool
        b = next(dl)
        assert b["x_l"].shape == (3, 3, 8, 8) and b["x_u"].shape == (4, 3, 8, 8) and b["y_l"].shape == (3,)
        assert b["x_l"].min() >= -1 and b["x_l"].max() <= 1
        assert set(b["y_l"].tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("aug", [Augment(flip=True), Augment(crop_pad=3), Augment(flip=True, crop_pad=2),
                                 Augment(translate=0.25), Augment(flip=True, crop_pad=4, translate=0.125)],
                         ids=["flip", "crop", "flip-crop", "translate", "all"])
def test_augment_fused_cpu_kernel_equals_torch_ops(aug, monkeypatch):
    """The C++ one-pass kernel (CPU loaders) and the torch ops (GPU) give identical batches: widths
    below, at and well above the kernel's 8-wide vector steps (with tails), values exactly UNIT_LUT's.
    Without ssgan_fast._C it is skipped, and fails where SSGAN_FAST_REQUIRE_C=1 (CI)."""
    from ssgan_fast import _backends
    from ssgan_fast.data import augment
    from ssgan_fast.data.augment import UNIT_LUT
    ok, why = _backends.availability("cpp", "cpu")
    if not ok:
        assert os.environ.get("SSGAN_FAST_REQUIRE_C") != "1", \
            f"SSGAN_FAST_REQUIRE_C=1 but the cpp kernels cannot run: {why}"
        pytest.skip(why)
    monkeypatch.setenv("SSGAN_FAST_BACKEND", "cpp")
    calls = []
    real = _backends.c_ops("cpp").augment_shift
    monkeypatch.setattr(augment, "c_ops", lambda name: type("K", (), {"augment_shift": staticmethod(
        lambda *a: calls.append(1) or real(*a))}))
    for shape in [(9, 3, 7, 10), (5, 3, 6, 8), (7, 2, 5, 37), (3, 1, 4, 64)]:
        x = torch.randint(0, 256, shape, dtype=torch.uint8)
        got = aug.to_unit(x, torch.Generator().manual_seed(4))
        shifted = aug(x, torch.Generator().manual_seed(4))  # torch ops only (uint8 gather)
        assert got.dtype == torch.float32 and torch.equal(got, UNIT_LUT[shifted.long()])
        assert torch.equal(to_unit(shifted), UNIT_LUT[shifted.long()])
    every = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 4, 64)  # each byte value once
    assert torch.equal(to_unit(every), UNIT_LUT.reshape(1, 1, 4, 64))
    assert calls, "the C++ kernel was never called"
    # reflect padding semantics: equal to F.pad(reflect) + per-image crop
    import torch.nn.functional as F
    xf = torch.randn(3, 2, 6, 7)
    g = torch.Generator().manual_seed(3)
    dy, dx = torch.randint(-2, 3, (3,), generator=g), torch.randint(-2, 3, (3,), generator=g)
    out = Augment._apply(xf, 0, dy, dx, None)
    xp = F.pad(xf, (2, 2, 2, 2), mode="reflect")
    ref = torch.stack([xp[i, :, 2 + dy[i]:2 + dy[i] + 6, 2 + dx[i]:2 + dx[i] + 7] for i in range(3)])
    assert torch.equal(out, ref)


def test_dogs120_layout(tmp_path):
    """Stanford Dogs as distributed (Images/ + MATLAB lists at the root or in lists/): the lists' split,
    classes = the sorted breed folders (names without the WordNet id), missing files named."""
    import shutil

    from tests.layouts import make_dogs
    root = make_dogs(tmp_path / "dogs", classes=3, train=4, test=2)
    tr, te = open_dataset(f"dogs120:{root}", "train", size=16), open_dataset(f"dogs120:{root}", "test", size=16)
    assert len(tr) == 12 and len(te) == 6 and tr.num_classes == 3
    assert tr.class_names == ["Breed_0", "Breed_1", "Breed_2"]
    assert sorted(set(tr.labels.tolist())) == [0, 1, 2] and np.bincount(te.labels).tolist() == [2, 2, 2]
    assert set(tr.ids).isdisjoint(te.ids) and len(open_dataset(f"dogs120:{root}", "all", size=16)) == 18
    assert tr.load(0).shape == (16, 16, 3)
    (root / "lists").mkdir()
    for f in ("train_list.mat", "test_list.mat"):
        shutil.move(str(root / f), str(root / "lists" / f))
    assert len(open_dataset(f"dogs120:{root}", "train", size=16)) == 12
    first = sorted((root / "Images").rglob("*.jpg"))[0]
    first.unlink()
    with pytest.raises(DataError, match="1 listed image file"):
        open_dataset(f"dogs120:{root}", "all", size=16)
    (root / "lists" / "test_list.mat").unlink()
    with pytest.raises(DataError, match="missing test_list.mat"):
        open_dataset(f"dogs120:{root}", "test", size=16)


def test_celeba500_layout(tmp_path):
    """CelebA as distributed (Img/img_align_celeba + Anno/identity_CelebA.txt): the `classes` largest
    identities (ties to the smaller id), 2/3 of each identity's sorted files for training."""
    from tests.layouts import make_celeba
    root = make_celeba(tmp_path / "celeba", sizes=(9, 6, 6, 3, 1))
    tr = open_dataset(f"celeba500:{root}?classes=3", "train", size=16)
    te = open_dataset(f"celeba500:{root}?classes=3", "test", size=16)
    assert tr.num_classes == 3 and tr.class_names == ["101", "102", "103"]
    assert np.bincount(tr.labels).tolist() == [6, 4, 4] and np.bincount(te.labels).tolist() == [3, 2, 2]
    assert set(tr.ids).isdisjoint(te.ids) and tr.load(0).shape == (16, 16, 3)
    assert tr.ids[:6] == sorted(tr.ids[:6])  # an identity's first files (sorted) are its training images
    tie = open_dataset(f"celeba500:{root}?classes=2", "all", size=16)
    assert tie.class_names == ["101", "102"]  # 102 and 103 tie at 6 images: the smaller id
    with pytest.raises(DataError, match="fewer than classes=500"):
        open_dataset(f"celeba500:{root}", "train", size=16)
    with pytest.raises(DataError, match="classes must be an integer"):
        open_dataset(f"celeba500:{root}?classes=x", "train", size=16)
    (root / "Anno" / "identity_CelebA.txt").write_text("000001.jpg\n")
    with pytest.raises(DataError, match="expected '<file> <identity>'"):
        open_dataset(f"celeba500:{root}?classes=2", "train", size=16)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit grey PNG decodes to its grey levels / 257 (was: 99.5 % white after PIL's clip to 255)."""
    from ssgan_fast.data.datasets import decode_image
    a = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63 000
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I")
    got = decode_image(str(path), 8)
    assert got.shape == (8, 8, 3) and np.array_equal(got[..., 0], got[..., 2])
    assert np.abs(got[..., 0].astype(int) - np.round(a / 257.0).astype(int)).max() <= 1
    assert (got == 255).mean() < 0.05


@pytest.mark.parametrize("labels,msg", [
    (np.array([0, 1, 2, 999] * 5), "have no image"),             # one label far off builds a 1000-class model
    (np.array([0.0, 1.0, np.nan, 2.0] * 5), "must be integers"),  # NaN was "unlabeled"
    (np.array([0.0, 1.7, 1.0, 2.0] * 5), "must be integers"),     # 0.7-offset labels were truncated
    (np.array([0, 1, -3, 2] * 5), "below -1"),                   # negative was "unlabeled"
    (np.array(["a", "b", "c", "d"] * 5), "must be integers"),
])
def test_npz_labels_must_be_integers_in_range(tmp_path, labels, msg):
    p = tmp_path / "d.npz"
    np.savez(p, images=np.zeros((20, 8, 8, 1), np.uint8), labels=labels)
    with pytest.raises(DataError, match=msg) as e:
        open_dataset(f"npz:{p}", size=8)
    assert str(p) in str(e.value)
    np.savez(p, images=np.zeros((20, 8, 8, 1), np.uint8), labels=np.array([0, 1, -1, 2.0] * 5))
    ds = open_dataset(f"npz:{p}", size=8)  # integral floats and -1 (unlabeled) are fine
    assert ds.num_classes == 3 and (ds.labels == -1).sum() == 5


def test_unreadable_npz_names_the_file(tmp_path):
    bad = tmp_path / "notzip.npz"
    bad.write_bytes(b"not a zip file at all")
    obj = tmp_path / "obj.npz"
    np.savez(obj, images=np.zeros((2, 8, 8, 1), np.uint8), labels=np.array([{"a": 1}, {"b": 2}], dtype=object))
    for p in (bad, obj):
        with pytest.raises(DataError, match="cannot be read") as e:
            open_dataset(f"npz:{p}", size=8)
        assert str(p) in str(e.value)

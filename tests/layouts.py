"""On-disk data set layouts as users have them, written by the tests: CUB-200-2011 exactly as
distributed (images/<class>/<file>.jpg, images.txt, classes.txt, image_class_labels.txt,
train_test_split.txt, bounding_boxes.txt), a nested image folder, CIFAR-10/100 python pickles and
an .npz. Images are small class-coloured pictures of varied sizes and modes (RGB, grayscale and
CMYK JPEGs, a PNG with alpha), so clustering has structure to find."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 200, 30), (160, 40, 200)]


def picture(c: int, i: int, h: int, w: int, rng) -> np.ndarray:
    """uint8 [h, w, 3]: class colour background with a bright disc whose place varies with i."""
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.array(COLOURS[c % len(COLOURS)], np.float32) * (0.6 + 0.4 * rng.random())
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h * (0.25 + 0.5 * rng.random()), w * (0.25 + 0.5 * rng.random())
    r = min(h, w) * (0.15 + 0.1 * (i % 3))
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 255 - img[0, 0] * 0.5
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _save(img: np.ndarray, path: Path, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(img)
    if mode == "L":
        im.convert("L").save(path, quality=90)
    elif mode == "CMYK":
        im.convert("CMYK").save(path, "JPEG", quality=90)
    elif mode == "RGBA":
        a = Image.fromarray(np.full(img.shape[:2], 200, np.uint8))
        rgba = im.convert("RGBA")
        rgba.putalpha(a)
        rgba.save(path)
    else:
        im.save(path, quality=90)


MODES = ("RGB", "L", "CMYK", "RGB", "RGBA")


def make_cub(root: Path, classes: int = 3, per_class: int = 8, seed: int = 0, corrupt: int = 0) -> Path:
    """CUB_200_2011/ under root with `classes` classes (ids 1..classes, names as CUB's), half of each
    class in the test split; `corrupt` files are truncated JPEGs."""
    rng = np.random.default_rng(seed)
    base = root / "CUB_200_2011"
    (base / "images").mkdir(parents=True, exist_ok=True)
    lines = {k: [] for k in ("images", "labels", "split", "boxes")}
    cls_lines = []
    n = 0
    for c in range(classes):
        cname = f"{c + 1:03d}.Bird_{c + 1}"
        cls_lines.append(f"{c + 1} {cname}")
        for i in range(per_class):
            n += 1
            h, w = int(rng.integers(70, 200)), int(rng.integers(70, 200))
            mode = MODES[n % len(MODES)]
            ext = ".png" if mode == "RGBA" else ".jpg"
            rel = f"{cname}/{cname.split('.')[1]}_{n:04d}{ext}"
            _save(picture(c, i, h, w, rng), base / "images" / rel, mode)
            lines["images"].append(f"{n} {rel}")
            lines["labels"].append(f"{n} {c + 1}")
            lines["split"].append(f"{n} {int(i % 2 == 0)}")
            bx, by = rng.uniform(0, w / 4), rng.uniform(0, h / 4)
            lines["boxes"].append(f"{n} {bx:.1f} {by:.1f} {w / 2:.1f} {h / 2:.1f}")
    for k in range(corrupt):
        f = base / "images" / lines["images"][k * 3].split()[1]
        f.write_bytes(f.read_bytes()[:100])
    (base / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (base / "classes.txt").write_text("\n".join(cls_lines) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (base / "bounding_boxes.txt").write_text("\n".join(lines["boxes"]) + "\n")
    return base


def make_folder(root: Path, classes: int = 3, per_class: int = 8, seed: int = 1) -> Path:
    """root/<class>/[sub/]<file>: a nested image folder, mixed extensions and modes."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        for i in range(per_class):
            sub = "nested/deeper" if i % 3 == 0 else ("nested" if i % 3 == 1 else "")
            mode = MODES[(c + i) % len(MODES)]
            ext = ".png" if mode == "RGBA" else (".jpeg" if i % 2 else ".JPG")
            _save(picture(c, i, int(rng.integers(60, 150)), int(rng.integers(60, 150)), rng),
                  root / f"class_{c}" / sub / f"img_{i}{ext}", mode)
    return root


def make_cifar(root: Path, n: int = 10, per_batch: int = 8, seed: int = 2) -> Path:
    """cifar-10-batches-py/ (5 train batches + test_batch) or cifar-100-python/ (train, test)."""
    rng = np.random.default_rng(seed)
    sub = root / ("cifar-10-batches-py" if n == 10 else "cifar-100-python")
    sub.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if n == 10 else ["train", "test"]
    for b in names:
        k = per_batch * (3 if n == 100 and b == "train" else 1)
        labels = [int(v) % 3 for v in range(k)]  # 3 classes used (of n)
        data = np.stack([picture(y, i, 32, 32, rng).transpose(2, 0, 1).reshape(-1) for i, y in enumerate(labels)])
        d = {b"data": data, b"labels" if n == 10 else b"fine_labels": labels}
        with open(sub / b, "wb") as f:
            pickle.dump(d, f)
    return root


def make_npz(path: Path, n: int = 30, size: int = 48, classes: int = 3, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    imgs = np.stack([picture(int(y), i, size, size, rng) for i, y in enumerate(labels)])
    tl = np.arange(12) % classes
    timgs = np.stack([picture(int(y), i, size, size, rng) for i, y in enumerate(tl)])
    np.savez(path, images=imgs, labels=labels, test_images=timgs, test_labels=tl)
    return path


def make_dogs(root: Path, classes: int = 3, train: int = 6, test: int = 3, seed: int = 4) -> Path:
    """Stanford Dogs as distributed: Images/n020856xx-Breed_k/n020856xx_<i>.jpg and the MATLAB lists
    train_list.mat / test_list.mat (file_list: a cell array of relative paths, labels: 1-based)."""
    from scipy.io import savemat
    rng = np.random.default_rng(seed)
    lists = {"train": [], "test": []}
    for c in range(classes):
        folder = f"n0208{5620 + c}-Breed_{c}"
        for i in range(train + test):
            rel = f"{folder}/n0208{5620 + c}_{i}.jpg"
            _save(picture(c, i, int(rng.integers(80, 140)), int(rng.integers(80, 140)), rng), root / "Images" / rel,
                  "RGB")
            lists["train" if i < train else "test"].append((rel, c + 1))
    for which, rows in lists.items():
        fl = np.empty((len(rows), 1), dtype=object)
        for k, (rel, _) in enumerate(rows):
            fl[k, 0] = np.array([rel])
        savemat(str(root / f"{which}_list.mat"),
                {"file_list": fl, "labels": np.array([[y] for _, y in rows], dtype=np.float64)})
    return root


def make_celeba(root: Path, sizes=(9, 6, 6, 3, 1), seed: int = 5) -> Path:
    """CelebA as distributed: Img/img_align_celeba/<000001>.jpg and Anno/identity_CelebA.txt, with
    identity ids 101, 102, ... having sizes[k] images each (interleaved file numbers, as in CelebA)."""
    rng = np.random.default_rng(seed)
    rows, n = [], 0
    left = list(sizes)
    while any(left):
        for k in range(len(sizes)):
            if left[k]:
                n += 1
                left[k] -= 1
                name = f"{n:06d}.jpg"
                _save(picture(k, n, 109, 89, rng), root / "Img" / "img_align_celeba" / name, "RGB")
                rows.append(f"{name} {101 + k}")
    (root / "Anno").mkdir(parents=True, exist_ok=True)
    (root / "Anno" / "identity_CelebA.txt").write_text("\n".join(rows) + "\n")
    return root

"""Data sets from spec strings.

    digits                    scikit-learn's 8x8 digits (offline, the default), upsampled to `size`; 1 channel
    ring2d[:variance]         MED-GAN toy data: 8 Gaussians at (cos 2k pi/8, sin 2k pi/8), variance 0.1
                              (the paper's value), 16 labeled + 256 unlabeled points per mode
    ring2d-cvae               CVAE-GAN toy data: a ring of radius 2 (radial std 0.1) centred at (100, 100)
    folder:/path              one sub-folder per class (sorted names = class indices)
    images:/path              every image file under the folder (recursively, sorted), unlabeled: e.g. a
                              folder of generated samples, or a flat reference set for FID / KID / P/R
    domains:/path             StarGAN / AAM data: one sub-folder per domain; optional attrs.csv
                              (`file,attr1,attr2,...` with 0/1 values) adds attribute labels
    cub200:/path[?bbox=1]     CUB_200_2011 layout (images.txt, image_class_labels.txt,
                              train_test_split.txt, bounding_boxes.txt); bbox=1 crops to the box
    cifar10:/path, cifar100:/path   the python pickle batches (the folder or its parent)
    dogs120:/path             Stanford Dogs: Images/<wnid-name>/*.jpg + train_list.mat / test_list.mat
                              (in the folder or its lists/); classes = the sorted breed folders
    sg2:/path                 stylegan2-ada's format (its dataset_tool.py): a .zip or a folder of images (any
                              depth, e.g. 00000/img00000000.png) with an optional dataset.json
                              {"labels": [[name, class], ...] | null}; images without a label (null, or not
                              listed) are unlabeled; no dataset.json: all unlabeled
    celeba500:/path[?classes=500]   CelebA identities: img_align_celeba/ + identity_CelebA.txt (in the
                              folder or its Img/ / Anno/); the `classes` largest identities (ties: the
                              smaller id), per identity the first 2/3 of its files (sorted) train, the rest test

More: docs/modules.md, section ssgan_fast.data.datasets.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("ssgan_fast")

#: how every file-backed image is brought to size x size (part of the reference statistics' cache key)
RESIZE_RULE = "pil-rgb/shorter-side-bilinear-antialias/center-crop"

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

__all__ = ["ImageDataset", "PointDataset", "open_dataset", "parse_spec", "load_arrays", "images_to_tensor",
           "decode_image", "resize_crop", "DataError", "read_images"]


class DataError(ValueError):
    """Bad data: missing paths, empty classes, inconsistent label files, too many corrupt images."""


def images_to_tensor(images) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1] (the loaders' conversion, ssgan_fast.data.augment.to_unit)."""
    from .augment import to_unit
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.dim() != 4:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {tuple(t.shape)} {t.dtype}")
    return to_unit(t.permute(0, 3, 1, 2).contiguous())


def resize_crop(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 HWC -> uint8 [size, size, C]: shorter side to `size` (bilinear, antialiased), centre crop."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    t = t[0, :, y0:y0 + size, x0:x0 + size].round().clamp(0, 255).to(torch.uint8)
    return t.permute(1, 2, 0).numpy()


def _grey16_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Integer grey levels -> uint8: 16-bit modes (I;16*) and "I" images whose values fit 16 bits are
    divided by 257 (65535 -> 255); "I" images with larger values by their own maximum / 255."""
    a = a.astype(np.float64)
    top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) <= 65535 else float(a.max())
    return np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)


ZIP_SEP = "::"  # a file inside a zip archive: "<archive.zip>::<member>"
_zips: dict = {}


def _zip(path: str):
    """One open ZipFile per archive, process and thread (ZipFile objects are not shared across threads)."""
    import threading
    import zipfile
    key = (path, os.getpid(), threading.get_ident())
    z = _zips.get(key)
    if z is None:
        z = _zips[key] = zipfile.ZipFile(path)
    return z


def open_image(path: str):
    """PIL.Image.open of an image file or of a zip member ("archive.zip::name")."""
    from PIL import Image
    if ZIP_SEP in path:
        import io
        archive, member = path.split(ZIP_SEP, 1)
        return Image.open(io.BytesIO(_zip(archive).read(member)))
    return Image.open(path)


def file_signature(path: str) -> str:
    """What identifies a file's content for the statistics cache: size and mtime (a zip member: its size,
    CRC and the archive's mtime)."""
    if ZIP_SEP in path:
        archive, member = path.split(ZIP_SEP, 1)
        info = _zip(archive).getinfo(member)
        return f"{info.file_size}\0{info.CRC}\0{os.stat(archive).st_mtime_ns}"
    st = os.stat(path)
    return f"{st.st_size}\0{st.st_mtime_ns}"


def decode_image(path: str, size: int, box=None) -> np.ndarray:
    """Decode an image file (or zip member) to RGB uint8 [size, size, 3] (optionally cropped to box =
    (x, y, w, h)). Raises OSError / ValueError for corrupt or truncated files."""
    from PIL import Image
    with open_image(path) as im:
        im.load()  # truncated files fail here
        if im.mode.startswith("I"):  # 16-bit / 32-bit integer grey (16-bit PNGs): scale, never clip to white
            im = Image.fromarray(_grey16_to_uint8(np.array(im), im.mode)).convert("L")
        if im.mode != "RGB":
            im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "LA") else im.convert("RGB")
        if box is not None:
            x, y, w, h = (float(v) for v in box)
            im = im.crop((int(x), int(y), int(math.ceil(x + w)), int(math.ceil(y + h))))
        arr = np.array(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{path}: empty image")
    return resize_crop(arr, size)


@dataclass
class ImageDataset:
    """Images with class labels (-1 = unlabeled), in memory (`images`) or as `files`."""
    name: str
    labels: np.ndarray
    num_classes: int
    size: int
    channels: int = 3
    images: np.ndarray | None = None
    files: list | None = None
    boxes: np.ndarray | None = None
    attrs: np.ndarray | None = None
    attr_names: list = field(default_factory=list)
    class_names: list = field(default_factory=list)
    ids: list | None = None  # the layout's own image ids (CUB-200: images.txt), for --labeled files
    root: str = ""  # the folder file paths are relative to
    kind: str = "image"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def load(self, i: int) -> np.ndarray:
        """uint8 [size, size, C] of item i (raises for corrupt files)."""
        if self.images is not None:
            return self.images[i]
        return decode_image(self.files[i], self.size, None if self.boxes is None else self.boxes[i])

    def try_load(self, i: int) -> np.ndarray | None:
        """load(i), or None where the file is corrupt or unreadable (the loaders and streams skip
        and count those)."""
        try:
            return self.load(int(i))
        except Exception:  # noqa: BLE001 - PIL raises many types for bad files
            return None

    def nbytes(self) -> int:
        return len(self) * self.size * self.size * self.channels


@dataclass
class PointDataset:
    """2-D points [N, 2] float32 with labels (-1 = unlabeled)."""
    name: str
    points: np.ndarray
    labels: np.ndarray
    num_classes: int
    kind: str = "points"
    size: int = 0
    channels: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return True


def parse_spec(spec: str) -> tuple[str, str, dict]:
    """'name:path?k=v&k2=v2' -> (name, path, {k: v}); 'ring2d:0.05' -> ('ring2d', '0.05', {})."""
    if not isinstance(spec, str) or not spec:
        raise DataError("empty data set spec")
    name, _, rest = spec.partition(":")
    path, _, q = rest.partition("?")
    opts = {}
    for kv in filter(None, q.split("&")):
        k, eq, v = kv.partition("=")
        if not eq:
            raise DataError(f"bad option {kv!r} in data spec {spec!r} (want key=value)")
        opts[k] = v
    return name, path, opts


# ------------------------------------------------------------------------------ built-in sets

def _digits(size: int, split: str) -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    imgs = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = d.target.astype(np.int64)
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=labels)
    sel = {"train": np.sort(tr), "test": np.sort(te), "all": idx}[split]
    return ImageDataset(f"digits{size}-{split}", labels[sel], 10, size, channels=1,
                        images=np.ascontiguousarray(imgs[sel]),
                        class_names=[str(i) for i in range(10)])


def _ring2d(arg: str, split: str) -> PointDataset:
    """MED-GAN Sec. 5.2: 8 modes, `variance` each, 16 labeled + 256 unlabeled per mode (fixed seed)."""
    var = float(arg) if arg else 0.1
    if not var > 0:
        raise DataError(f"ring2d variance must be > 0, got {var}")
    rng = np.random.default_rng(1234 if split != "test" else 4321)
    pts, labels = [], []
    for k in range(8):
        mu = np.array([math.cos(2 * k * math.pi / 8), math.sin(2 * k * math.pi / 8)])
        p = rng.normal(mu, math.sqrt(var), size=(16 + 256, 2))
        pts.append(p)
        labels.append(np.r_[np.full(16, k), np.full(256, -1)])
    return PointDataset(f"ring2d-var{var}-{split}", np.concatenate(pts).astype(np.float32),
                        np.concatenate(labels).astype(np.int64), 8)


def _ring2d_cvae(split: str) -> PointDataset:
    """CVAE-GAN Sec. 4: a ring centred at (100, 100), far from the generator's initial outputs."""
    rng = np.random.default_rng(99 if split != "test" else 98)
    n = 4000
    th = rng.uniform(0, 2 * math.pi, n)
    r = 2.0 + rng.normal(0, 0.1, n)
    pts = np.stack([100 + r * np.cos(th), 100 + r * np.sin(th)], 1).astype(np.float32)
    return PointDataset(f"ring2d-cvae-{split}", pts, np.zeros(n, dtype=np.int64), 1)


# ------------------------------------------------------------------------------ files on disk

def _check_dir(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not path:
        raise DataError(f"{what} needs a path, e.g. {what}:/data/set")
    if not p.exists():
        raise DataError(f"{what}: path {p} does not exist")
    if not p.is_dir():
        raise DataError(f"{what}: {p} is not a directory")
    return p


def _sg2(path: str, size: int) -> ImageDataset:
    """stylegan2-ada's data set format (read from its training/dataset.py and dataset_tool.py): every image
    of a zip or folder (sorted relative names), labels from dataset.json's "labels" ([[name, class], ...],
    or null); here an image may also be unlabeled (a null label or not listed: -1)."""
    import json
    import zipfile
    p = Path(path).expanduser()
    if not path or not p.exists():
        raise DataError(f"sg2: path {p} does not exist (a .zip or folder made by stylegan2-ada's dataset_tool.py)")
    if p.is_file():
        if not zipfile.is_zipfile(p):
            raise DataError(f"sg2: {p} is not a zip archive")
        z = _zip(str(p))
        names = sorted(n for n in z.namelist() if Path(n).suffix.lower() in IMAGE_EXTS)
        files = [f"{p}{ZIP_SEP}{n}" for n in names]
        meta = z.read("dataset.json") if "dataset.json" in z.namelist() else None
    else:
        names = sorted(f.relative_to(p).as_posix() for f in _image_files(p))
        files = [str(p / n) for n in names]
        meta = (p / "dataset.json").read_bytes() if (p / "dataset.json").is_file() else None
    if not names:
        raise DataError(f"sg2: {p} holds no images ({', '.join(IMAGE_EXTS)})")
    labels = np.full(len(names), -1, dtype=np.int64)
    if meta is not None:
        try:
            raw = json.loads(meta).get("labels")
        except (ValueError, AttributeError) as e:
            raise DataError(f"sg2: {p} dataset.json is not a JSON object with 'labels' ({e})") from None
        if raw is not None:
            table = {}
            for entry in raw:
                if entry is None:
                    continue
                if not (isinstance(entry, list) and len(entry) == 2):
                    raise DataError(f"sg2: {p} dataset.json: each label must be [name, class], got {entry!r}")
                name, c = entry
                if c is None:
                    continue
                if isinstance(c, bool) or not isinstance(c, int) or c < 0:
                    raise DataError(f"sg2: {p} dataset.json: the label of {name} must be a class index >= 0, got "
                                    f"{c!r} (vector labels are not class labels)")
                table[str(name).replace("\\", "/")] = c
            unknown = sorted(set(table) - set(names))
            if unknown:
                raise DataError(f"sg2: {p} dataset.json labels {len(unknown)} image(s) that are not there: "
                                f"{unknown[:5]}")
            labels = np.array([table.get(n, -1) for n in names], dtype=np.int64)
    nc = int(labels.max()) + 1 if (labels >= 0).any() else 0
    return ImageDataset(f"sg2:{p.resolve()}", labels, nc, size, files=files, class_names=[str(c) for c in range(nc)],
                        ids=names, root=str(p))


def _image_files(d: Path) -> list[Path]:
    return sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)


def _folder(path: str, size: int, what: str = "folder") -> ImageDataset:
    root = _check_dir(path, what)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{what}: {root} has no class sub-folders (expected {root}/<class>/<image files>)")
    files, labels = [], []
    empty = []
    for c, name in enumerate(classes):
        fs = _image_files(root / name)
        if not fs:
            empty.append(name)
        files += [str(f) for f in fs]
        labels += [c] * len(fs)
    if empty:
        raise DataError(f"{what}: class folder(s) without images under {root}: {empty[:10]}"
                        f"{' ...' if len(empty) > 10 else ''} (image extensions: {', '.join(IMAGE_EXTS)})")
    return ImageDataset(f"{what}:{root.resolve()}", np.array(labels, dtype=np.int64), len(classes), size, files=files,
                        class_names=classes, root=str(root))


def _images(path: str, size: int) -> ImageDataset:
    root = _check_dir(path, "images")
    files = [str(f) for f in _image_files(root)]
    if not files:
        raise DataError(f"images: {root} holds no image files ({', '.join(IMAGE_EXTS)})")
    return ImageDataset(f"images:{root.resolve()}", np.full(len(files), -1, dtype=np.int64), 0, size, files=files,
                        root=str(root))


def _domains(path: str, size: int) -> ImageDataset:
    ds = _folder(path, size, "domains")
    root = Path(path).expanduser()
    attr_file = root / "attrs.csv"
    if attr_file.is_file():
        with open(attr_file, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0][0] != "file":
            raise DataError(f"{attr_file}: the first row must be 'file,<attr names>'")
        names = rows[0][1:]
        table = {}
        for r in rows[1:]:
            if len(r) != len(names) + 1:
                raise DataError(f"{attr_file}: row {r[:1]} has {len(r) - 1} values, expected {len(names)}")
            table[r[0]] = [float(v) for v in r[1:]]
        rel = [str(Path(f).relative_to(root)) for f in ds.files]
        missing = [r for r in rel if r not in table and Path(r).name not in table]
        if missing:
            raise DataError(f"{attr_file}: no attributes for {len(missing)} image(s), e.g. {missing[:3]}")
        ds.attrs = np.array([table.get(r, table.get(Path(r).name)) for r in rel], dtype=np.float32)
        ds.attr_names = names
    return ds


def _read_table(path: Path, ncols: int, what: str) -> dict:
    if not path.is_file():
        raise DataError(f"{what}: missing {path}")
    out = {}
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < ncols:
            raise DataError(f"{path}:{ln}: expected {ncols} columns, got {line!r}")
        out[int(parts[0])] = parts[1:ncols] if ncols > 2 else parts[1]
    return out


def _cub200(path: str, size: int, split: str, opts: dict) -> ImageDataset:
    root = _check_dir(path, "cub200")
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    images = _read_table(root / "images.txt", 2, "cub200")
    labels = _read_table(root / "image_class_labels.txt", 2, "cub200")
    is_train = _read_table(root / "train_test_split.txt", 2, "cub200")
    ids = sorted(images)
    for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        if sorted(table) != ids:
            raise DataError(f"cub200: {name} lists {len(table)} images but images.txt lists {len(ids)} "
                            f"(ids differ: {sorted(set(ids) ^ set(table))[:5]})")
    bbox = opts.get("bbox", "0") not in ("0", "false", "")
    boxes = None
    if bbox:
        bb = _read_table(root / "bounding_boxes.txt", 5, "cub200")
        if sorted(bb) != ids:
            raise DataError(f"cub200: bounding_boxes.txt lists {len(bb)} images but images.txt lists {len(ids)}")
    keep = [i for i in ids if split == "all" or (is_train[i] == "1") == (split == "train")]
    files = [str(root / "images" / images[i]) for i in keep]
    missing = [f for f in files[:] if not os.path.isfile(f)]
    if missing:
        raise DataError(f"cub200: {len(missing)} image file(s) listed in images.txt do not exist, e.g. {missing[:3]}")
    # classes: those classes.txt lists (a cut-down CUB keeps its own count), else those the labels use;
    # class ids map to 0..n-1 in id order, over the whole set so train and test agree
    classes_file = root / "classes.txt"
    if classes_file.is_file():
        named = sorted((int(k), v) for k, v in _read_table(classes_file, 2, "cub200").items())
        class_ids, names = [k for k, _ in named], [v for _, v in named]
    else:
        class_ids = sorted({int(v) for v in labels.values()})
        names = [str(k) for k in class_ids]
    index = {k: n for n, k in enumerate(class_ids)}
    unknown = sorted({int(labels[i]) for i in ids} - set(index))
    if unknown:
        raise DataError(f"cub200: image_class_labels.txt uses class id(s) {unknown[:5]} that {classes_file} does not "
                        "list")
    y = np.array([index[int(labels[i])] for i in keep], dtype=np.int64)
    if bbox:
        boxes = np.array([[float(v) for v in bb[i]] for i in keep], dtype=np.float32)
    return ImageDataset(f"cub200:{root.resolve()}{'-bbox' if bbox else ''}-{split}", y, len(class_ids), size,
                        files=files, boxes=boxes, class_names=names, ids=[str(i) for i in keep], root=str(root))


def _find(root: Path, name: str, subs=("",)) -> Path | None:
    for sub in subs:
        f = root / sub / name if sub else root / name
        if f.exists():
            return f
    return None


def _mat_files(f: Path, what: str) -> list[str]:
    """The relative image paths of a Stanford Dogs list file (MATLAB cell array 'file_list')."""
    from scipy.io import loadmat
    try:
        m = loadmat(str(f))
        return [str(np.asarray(e).ravel()[0]) for e in np.asarray(m["file_list"]).ravel()]
    except Exception as e:  # noqa: BLE001 - scipy raises several types for bad files
        raise DataError(f"{what}: {f} is not a Stanford Dogs list file with a file_list ({type(e).__name__}: {e})") \
            from None


def _dogs120(path: str, size: int, split: str) -> ImageDataset:
    root = _check_dir(path, "dogs120")
    images = _find(root, "Images")
    if images is None or not images.is_dir():
        raise DataError(f"dogs120: {root} has no Images/ folder (Images/<wnid-breed>/*.jpg)")
    classes = sorted(d.name for d in images.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"dogs120: {images} has no breed folders")
    index = {c: i for i, c in enumerate(classes)}
    files = []
    for which in (("train", "test") if split == "all" else (split,)):
        f = _find(root, f"{which}_list.mat", ("", "lists"))
        if f is None:
            raise DataError(f"dogs120: missing {which}_list.mat in {root} or {root / 'lists'}")
        files += _mat_files(f, "dogs120")
    unknown = sorted({Path(r).parts[0] for r in files} - set(index))
    if unknown:
        raise DataError(f"dogs120: the list files name breed folder(s) not under {images}: {unknown[:5]}")
    paths = [str(images / r) for r in files]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"dogs120: {len(missing)} listed image file(s) do not exist, e.g. {missing[:3]}")
    y = np.array([index[Path(r).parts[0]] for r in files], dtype=np.int64)
    names = [c.split("-", 1)[1] if "-" in c else c for c in classes]
    return ImageDataset(f"dogs120:{root.resolve()}-{split}", y, len(classes), size, files=paths, class_names=names,
                        ids=files, root=str(images))


def _celeba500(path: str, size: int, split: str, opts: dict) -> ImageDataset:
    root = _check_dir(path, "celeba500")
    try:
        k = int(opts.get("classes", 500))
    except ValueError:
        raise DataError(f"celeba500: classes must be an integer, got {opts['classes']!r}") from None
    if k < 2:
        raise DataError(f"celeba500: classes must be >= 2, got {k}")
    img_dir = _find(root, "img_align_celeba", ("", "Img"))
    ident = _find(root, "identity_CelebA.txt", ("", "Anno"))
    if img_dir is None or ident is None:
        raise DataError(f"celeba500: {root} needs img_align_celeba/ and identity_CelebA.txt (there, or in Img/ and "
                        "Anno/)")
    by_id: dict[int, list[str]] = {}
    for ln, line in enumerate(ident.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{ident}:{ln}: expected '<file> <identity>', got {line!r}")
        by_id.setdefault(int(parts[1]), []).append(parts[0])
    if len(by_id) < k:
        raise DataError(f"celeba500: {ident} has {len(by_id)} identities, fewer than classes={k}")
    top = sorted(by_id, key=lambda i: (-len(by_id[i]), i))[:k]
    files, labels = [], []
    for c, i in enumerate(sorted(top)):  # class index = rank of the identity id among the chosen
        fs = sorted(by_id[i])
        n_train = round(len(fs) * 2 / 3)
        part = {"train": fs[:n_train], "test": fs[n_train:], "all": fs}[split]
        files += part
        labels += [c] * len(part)
    paths = [str(img_dir / f) for f in files]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"celeba500: {len(missing)} image file(s) listed in {ident.name} do not exist, e.g. "
                        f"{missing[:3]}")
    return ImageDataset(f"celeba500:{root.resolve()}-k{k}-{split}", np.array(labels, dtype=np.int64), k, size,
                        files=paths, class_names=[str(i) for i in sorted(top)], ids=files, root=str(img_dir))


def _cifar(path: str, size: int, split: str, n: int) -> ImageDataset:
    root = _check_dir(path, f"cifar{n}")
    sub = "cifar-10-batches-py" if n == 10 else "cifar-100-python"
    if (root / sub).is_dir():
        root = root / sub
    if n == 10:
        names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    else:
        names = {"train": ["train"], "test": ["test"]}
    names["all"] = names["train"] + names["test"]
    xs, ys = [], []
    for b in names[split]:
        f = root / b
        if not f.is_file():
            raise DataError(f"cifar{n}: missing batch file {f}")
        with open(f, "rb") as fh:
            try:
                d = pickle.load(fh, encoding="bytes")
            except Exception as e:
                raise DataError(f"cifar{n}: {f} is not a CIFAR python pickle ({e})") from e
        data = d.get(b"data")
        lab = d.get(b"labels" if n == 10 else b"fine_labels")
        if data is None or lab is None or len(data) != len(lab):
            raise DataError(f"cifar{n}: {f} lacks data / labels or their lengths differ")
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(lab, dtype=np.int64))
    imgs = np.concatenate(xs)
    if size != 32:
        imgs = np.stack([resize_crop(im, size) for im in imgs])
    return ImageDataset(f"cifar{n}:{root.resolve()}-{split}-{size}", np.concatenate(ys), n, size,
                        images=np.ascontiguousarray(imgs))


def _check_labels(raw: np.ndarray, p: Path, key: str, split: str) -> np.ndarray:
    """npz labels: integers in [-1, C) (-1 = unlabeled), as int64; in the training split every class
    0..C-1 has at least one image. Anything else names the file and the bad values."""
    raw = np.asarray(raw)
    if raw.dtype.kind == "f":
        bad = raw[~np.isfinite(raw) | (raw != np.round(raw))]
        if bad.size:
            raise DataError(f"npz: {p}: {key} must be integers (-1 = unlabeled); found {np.unique(bad)[:5].tolist()}")
    elif raw.dtype.kind not in "iub":
        raise DataError(f"npz: {p}: {key} must be integers (-1 = unlabeled), got dtype {raw.dtype}")
    labels = raw.astype(np.int64)
    if labels.size and labels.min() < -1:
        raise DataError(f"npz: {p}: {key} below -1 (the unlabeled mark): {np.unique(labels[labels < -1])[:5].tolist()}")
    known = np.unique(labels[labels >= 0])
    if split != "test" and known.size and known.size != known.max() + 1:
        missing = sorted(set(range(int(known.max()) + 1)) - set(known.tolist()))
        raise DataError(f"npz: {p}: {key} must number the classes 0..C-1; classes {missing[:5]}"
                        f"{' ...' if len(missing) > 5 else ''} have no image (largest label {int(known.max())})")
    return labels


def _npz(path: str, size: int, split: str) -> ImageDataset:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"npz: file {p} does not exist")
    key_i, key_l = ("test_images", "test_labels") if split == "test" else ("images", "labels")
    try:
        with np.load(p) as z:
            if key_i not in z or key_l not in z:
                raise DataError(f"npz: {p} needs arrays {key_i!r} (uint8 [N, H, W, C]) and {key_l!r} (int [N]); "
                                f"it has {list(z.keys())}")
            imgs, raw = z[key_i], z[key_l]
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - not a zip, object arrays (pickle), truncated: name the file
        raise DataError(f"npz: {p} cannot be read as a .npz of plain arrays ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    labels = _check_labels(raw, p, key_l, split)
    if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[-1] not in (1, 3, 4):
        raise DataError(f"npz: {p}: {key_i} must be uint8 [N, H, W, 1|3|4], got {imgs.shape} {imgs.dtype}")
    if labels.shape != (imgs.shape[0],):
        raise DataError(f"npz: {p}: {key_l} must have shape [{imgs.shape[0]}], got {labels.shape}")
    if imgs.shape[-1] == 4:
        imgs = imgs[..., :3]
    if imgs.shape[1:3] != (size, size):
        imgs = np.stack([resize_crop(im, size) for im in imgs])
    known = labels[labels >= 0]
    return ImageDataset(f"npz:{p.resolve()}-{split}-{size}", labels, int(known.max()) + 1 if known.size else 0, size,
                        channels=imgs.shape[-1], images=np.ascontiguousarray(imgs))


def open_dataset(spec: str = "digits", split: str = "train", size: int = 32):
    """The data set of a spec string (see the module docstring)."""
    if split not in ("train", "test", "all"):
        raise DataError(f"split must be train, test or all, got {split!r}")
    if not isinstance(size, int) or size < 1:
        raise DataError(f"size must be a positive int, got {size!r}")
    name, path, opts = parse_spec(spec)
    if name == "digits":
        return _digits(size, split)
    if name == "ring2d":
        return _ring2d(path, split)
    if name == "ring2d-cvae":
        return _ring2d_cvae(split)
    if name in ("folder", "domains", "images") and split == "test":
        raise DataError(f"{name}: data sets have no train/test split (use a separate {name}:/path for held-out data)")
    if name == "folder":
        return _folder(path, size)
    if name == "domains":
        return _domains(path, size)
    if name == "images":
        return _images(path, size)
    if name == "cub200":
        return _cub200(path, size, split, opts)
    if name in ("cifar10", "cifar100"):
        return _cifar(path, size, split, 10 if name == "cifar10" else 100)
    if name == "dogs120":
        return _dogs120(path, size, split)
    if name == "celeba500":
        return _celeba500(path, size, split, opts)
    if name == "npz":
        return _npz(path, size, split)
    if name == "sg2":
        if split == "test":
            raise DataError("sg2: data sets have no train/test split (use a separate sg2:/path for held-out data)")
        return _sg2(path, size)
    raise DataError(f"unknown data set {name!r} in spec {spec!r}; known: digits, ring2d, ring2d-cvae, folder:, "
                    "images:, domains:, cub200:, cifar10:, cifar100:, dogs120:, celeba500:, npz:, sg2:")


def load_arrays(spec: str, split: str = "train", size: int = 32) -> ImageDataset:
    """An in-memory image data set (decodes file data sets; corrupt files are an error here)."""
    ds = open_dataset(spec, split, size)
    if ds.kind != "image":
        raise DataError(f"{spec} is not an image data set")
    if not ds.in_memory:
        ds.images = np.stack([ds.load(i) for i in range(len(ds))])
        ds.files = None
    return ds


def read_images(paths, size: int, channels: int) -> tuple[torch.Tensor, list[str]]:
    """Image files for the applications (inpaint, morph, translate): ``paths`` are files or
    folders (every image file inside, sorted). Returns ([N, channels, size, size] in [-1, 1],
    the file names). Missing paths, folders without images and unreadable files are errors
    naming the file."""
    files: list[Path] = []
    for p in map(lambda s: Path(s).expanduser(), paths):
        if p.is_dir():
            found = _image_files(p)
            if not found:
                raise DataError(f"{p} holds no image files ({', '.join(sorted(IMAGE_EXTS))})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p} does not exist")
    out = []
    for f in files:
        try:
            img = decode_image(str(f), size)
        except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
            raise DataError(f"cannot read image {f}: {e}") from e
        if channels == 1:
            img = np.round(img.astype(np.float32).mean(2, keepdims=True)).astype(np.uint8)
        out.append(img)
    return images_to_tensor(np.stack(out)), [str(f) for f in files]

"""Generate samples from a trained run, and the models' applications.

    python -m ssgan_fast.generate [sample] --ckpt runs/sphericgan-digits --n 100 --out samples.npz [--png grid.png]
    python -m ssgan_fast.generate sample --ckpt RUN --classes 3,7 --seeds 0-99 --truncation 0.7 --format png --out DIR
    python -m ssgan_fast.generate inpaint --ckpt runs/cvaegan-digits --images DIR|FILES --out DIR [--box y0,x0,y1,x1]
    python -m ssgan_fast.generate morph --ckpt runs/cvaegan-digits (--images A B | --classes K1 K2) --out morph.png
    python -m ssgan_fast.generate translate --ckpt runs/aam-stargan-rafd --images DIR --domain K --out DIR
    python -m ssgan_fast.generate translate --ckpt runs/aam-stargan-celeba --images DIR --attrs 1,0,0,1,1 --out DIR
    python -m ssgan_fast.generate interp --ckpt runs/sphericgan-digits --classes 0 3 7 --out interp.png

``sample`` (the default) writes ``images`` (uint8 [N, H, W, C]), ``labels`` and ``seeds`` (int64 [N]) - for
2-D data ``points`` (float32 [N, 2]) instead of images - for ``--classes`` (all, 3,7 or 0-4) x the per-image
seeds (``--seeds 0-99``, or ``--n N`` from ``--seed``): image (class c, seed s) is the same on every call
(``ssgan_fast.engine.sampler.Sampler`` is the Python API). ``--truncation PSI`` pulls the noise towards the
mean latent (PSI z for the models with Gaussian noise; SphericGAN and AAM-StarGAN say why it does not apply).
``--format png`` writes ``OUT/<class>/<seed>.png`` for other tools, ``both`` also ``OUT/samples.npz``.
``inpaint`` (CVAE-GAN Sec. 5.4, Eq. 8)
corrupts a box of each image (default: a random square of 50/128 of the side, as the paper) and
fills it by encode -> generate -> keep the known pixels, ``--iters`` times (``--optimize-steps``
adds latent optimisation on the known pixels); ``morph`` (Sec. 5.3) interpolates the latent codes
of two images or the class between two classes; ``translate`` (StarGAN) maps every image to
domain K; ``interp`` (SphericGAN Fig. 7) draws great-circle paths in the latent sphere from one
latent through a prototype to another (or between two prototypes, ``--prototypes I J``), one row per
class and path. Image outputs are PNG files (one per input, plus a grid) and an .npz. The EMA networks
are used when the run kept them (``--no-ema``: the raw ones).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("ssgan_fast")
COMMANDS = ("sample", "inpaint", "morph", "translate", "interp")


def build_parser(cmd: str) -> argparse.ArgumentParser:
    from ._cli import Parser, count, natural, unit
    p = Parser(prog=f"python -m ssgan_fast.generate {cmd}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="run folder (with ckpt/last.pt)")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--seed", type=natural, default=None,
                   help="the random seed (default 123; sample: the first per-image seed, default 0)")
    p.add_argument("--device", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (default: refuse)")
    if cmd == "sample":
        p.add_argument("--classes", default="all", help="the classes: all (default), 3,7 or 0-4")
        n = p.add_mutually_exclusive_group()
        n.add_argument("--n", "--per-class", dest="n", type=count, default=None,
                       help="images per class, seeds --seed .. --seed + N - 1 (default 100, from seed 0)")
        n.add_argument("--seeds", default=None,
                       help="the per-image seeds, e.g. 0-99 or 1,5,9: image (class, seed) is the same on every call")
        p.add_argument("--truncation", type=unit, default=None, metavar="PSI",
                       help="truncation trick: the noise pulled towards the mean latent by PSI in [0, 1] (models "
                            "with Gaussian noise: PSI z; the others say why it does not apply)")
        p.add_argument("--format", choices=("npz", "png", "both"), default="npz",
                       help="npz: --out is an .npz (images, labels, seeds); png: --out is a folder of "
                            "<class>/<seed>.png; both: that folder and OUT/samples.npz")
        p.add_argument("--batch", type=count, default=100, help="images per generator call")
        p.add_argument("--out", required=True, help="output .npz (--format npz) or folder (png, both)")
        p.add_argument("--png", default=None, help="also save a grid (one row per class, at most 10 per row)")
        return p
    p.add_argument("--out", required=True, help="output folder (morph, interp: a .png file)")
    if cmd == "inpaint":
        p.add_argument("--images", nargs="+", required=True, help="image files or folders")
        p.add_argument("--label", type=int, default=None, help="class of the images (default: C's prediction)")
        p.add_argument("--box", default=None, help="corrupted box y0,x0,y1,x1 in pixels (default: random, 50/128 side)")
        p.add_argument("--iters", type=count, default=10, help="encode-generate-paste rounds (Eq. 8)")
        p.add_argument("--optimize-steps", type=natural, default=0,
                       help="latent optimisation steps on the known pixels")
    elif cmd == "morph":
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--images", nargs=2, help="two image files: interpolate their latent codes")
        g.add_argument("--classes", nargs=2, type=int, help="two classes: interpolate the class, one latent")
        p.add_argument("--steps", type=int, default=8)
    elif cmd == "interp":
        p.add_argument("--classes", nargs="+", type=int, default=[0], help="one row of paths per class")
        p.add_argument("--paths", type=count, default=2, help="paths per class (each from its own two noise vectors)")
        p.add_argument("--steps", type=count, default=8, help="images per segment")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--prototype", type=int, default=None, help="the prototype the path passes (default: nearest)")
        g.add_argument("--prototypes", nargs=2, type=int, default=None, help="interpolate between two prototypes")
    elif cmd == "translate":
        p.add_argument("--images", nargs="+", required=True, help="image files or folders")
        t = p.add_mutually_exclusive_group(required=True)
        t.add_argument("--domain", type=int, help="target domain index")
        t.add_argument("--attrs", help="target attributes, comma-separated 0/1 (multi-attribute models)")
    return p


def _savez(path, **arrays) -> None:
    """np.savez to exactly `path` (np.savez on a name appends .npz to one without it)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _need(model, method: str, cmd: str):
    if not hasattr(model, method):
        raise ValueError(f"'{cmd}' needs a model with {method}(); {model.name} has none "
                         f"(inpaint / morph: cvaegan; translate: aam-stargan; interp: sphericgan)")


def _save_images(x, names, out: Path, nrow: int):
    import torch
    import torchvision.utils as vu
    out.mkdir(parents=True, exist_ok=True)
    x = x.float().clamp(-1, 1).add(1).div(2).cpu()
    for t, n in zip(x, names, strict=False):
        vu.save_image(t, out / f"{Path(n).stem}.png")
    vu.save_image(x, out / "grid.png", nrow=nrow)
    np.savez(out / "images.npz", images=(x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


def _application(cmd: str, args, run) -> int:
    import torch

    from .data import read_images
    model, dev = run.model.eval(), run.device
    nets = run.generator(not args.no_ema)
    out = Path(args.out)
    size, ch = run.info["size"], run.info["channels"]
    torch.manual_seed(args.seed)
    if cmd == "translate":
        _need(model, "translate", cmd)
        multi = getattr(model, "na", 0)
        if multi and args.attrs is None:
            raise ValueError(f"this model translates by {multi} attributes: give --attrs with {multi} values of 0 / 1")
        if not multi and args.domain is None:
            raise ValueError("this model translates between domains: give --domain K")
        if multi:
            try:
                target = [int(v) for v in args.attrs.split(",")]
            except ValueError:
                raise ValueError(f"--attrs {args.attrs!r}: give comma-separated 0 / 1 values") from None
            tag = "".join(map(str, target))
        else:
            if not 0 <= args.domain < model.nc:
                raise ValueError(f"--domain {args.domain}: the model has domains 0..{model.nc - 1}")
            target, tag = args.domain, str(args.domain)
        x, names = read_images(args.images, size, ch)
        y = model.translate(x.to(dev), target, nets["G"])
        _save_images(torch.cat([x, y.cpu()]), names + [f"{Path(n).stem}_to{tag}" for n in names], out, len(names))
        log.info("translated %d image(s) to %s %s: %s", len(names), "attributes" if multi else "domain", tag, out)
        return 0
    if cmd == "interp":
        _need(model, "interpolation", cmd)
        if args.steps < 2 or args.paths < 1:
            raise ValueError("--steps must be >= 2 and --paths >= 1")
        g = torch.Generator().manual_seed(args.seed)
        rows, lat = [], []
        for c in args.classes:
            for _ in range(1 if args.prototypes else args.paths):
                x, z = model.interpolation(c, args.steps, args.prototype, args.prototypes, generator=g, modules=nets)
                rows.append(x.float().cpu())
                lat.append(z.cpu())
        import torchvision.utils as vu
        out.parent.mkdir(parents=True, exist_ok=True)
        grid = torch.cat(rows)
        vu.save_image(grid.clamp(-1, 1).add(1).div(2), out, nrow=rows[0].shape[0])
        np.savez(out.with_suffix(".npz"), images=((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                 .permute(0, 2, 3, 1).numpy(), latents=torch.stack(lat).numpy())
        log.info("wrote %d interpolation path(s) of %d images to %s", len(rows), rows[0].shape[0], out)
        return 0
    if cmd == "inpaint":
        _need(model, "inpaint", cmd)
        x, names = read_images(args.images, size, ch)
        x = x.to(dev)
        mask = torch.zeros(x.shape[0], 1, size, size, device=dev)
        if args.box:
            try:
                y0, x0, y1, x1 = (int(v) for v in args.box.split(","))
            except ValueError:
                raise ValueError(f"--box {args.box!r}: give y0,x0,y1,x1 (integers)") from None
            if not (0 <= y0 < y1 <= size and 0 <= x0 < x1 <= size):
                raise ValueError(f"--box {args.box}: must lie inside the {size} x {size} image with y0 < y1, x0 < x1")
            mask[:, :, y0:y1, x0:x1] = 1
        else:
            side = max(1, round(size * 50 / 128))
            g = torch.Generator().manual_seed(args.seed)
            for i in range(x.shape[0]):
                a, b = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=g))
                mask[i, :, a:a + side, b:b + side] = 1
        if args.label is not None and not 0 <= args.label < model.nc:
            raise ValueError(f"--label {args.label}: the model has classes 0..{model.nc - 1}")
        y = None if args.label is None else torch.full((x.shape[0],), args.label, dtype=torch.int64, device=dev)
        corrupted = x * (1 - mask) - mask  # the hole shown black
        filled, y = model.inpaint(corrupted, mask, y, iters=args.iters, optimize_steps=args.optimize_steps,
                                  modules=nets)
        _save_images(torch.cat([x, corrupted, filled]).cpu(),
                     [f"{Path(n).stem}_{t}" for t in ("orig", "corrupt", "inpaint") for n in names], out, len(names))
        log.info("inpainted %d image(s) (classes %s): %s", len(names), y.tolist(), out)
        return 0
    # morph
    _need(model, "morph", cmd)
    if args.steps < 2:
        raise ValueError("--steps must be >= 2")
    if args.images:
        x, _ = read_images(args.images, size, ch)
        frames = model.morph(args.steps, x=x.to(dev), modules=nets)
    else:
        bad = [k for k in args.classes if not 0 <= k < model.nc]
        if bad:
            raise ValueError(f"--classes {bad}: the model has classes 0..{model.nc - 1}")
        z = model.noise(1, generator=torch.Generator().manual_seed(args.seed), device="cpu").to(dev)
        frames = model.morph(args.steps, classes=args.classes, z=z, modules=nets)
    import torchvision.utils as vu
    out.parent.mkdir(parents=True, exist_ok=True)
    vu.save_image(frames.float().clamp(-1, 1).add(1).div(2).cpu(), out, nrow=args.steps)
    log.info("wrote %d morph frames to %s", args.steps, out)
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv.pop(0) if argv and argv[0] in COMMANDS else "sample"
    p = build_parser(cmd)
    args = p.parse_args(argv)
    from .engine.run import USER_ERRORS, check_output, load_run
    try:
        if cmd == "sample" and args.format != "npz":  # a folder of <class>/<seed>.png (+ samples.npz)
            check_output(args.out, "folder", args.overwrite)
        elif cmd in ("sample", "morph", "interp"):  # one file (sample: an .npz; morph / interp: a .png + .npz)
            check_output(args.out, "file", args.overwrite)
            if cmd == "interp":
                check_output(Path(args.out).with_suffix(".npz"), "file", args.overwrite, "--out (its .npz)")
        else:
            check_output(args.out, "folder", args.overwrite)
        if getattr(args, "png", None):
            check_output(args.png, "file", args.overwrite, "--png")
        run = load_run(args.ckpt, args.device, use_ema=not args.no_ema)
        if cmd != "sample":
            args.seed = 123 if args.seed is None else args.seed
            if run.info["kind"] != "image":
                raise ValueError(f"'{cmd}' works on images; this run trained on {run.info['kind']}")
            return _application(cmd, args, run)
        return _sample(args, run)
    except USER_ERRORS as e:
        p.fail(e)


def _sample(args, run) -> int:
    """generate sample: the classes x seeds asked for, as .npz (images or points, labels, seeds) and / or
    <class>/<seed>.png files, plus an optional grid."""
    import torch

    from .engine.run import save_points_density, to_uint8
    from .engine.sampler import Sampler, parse_seeds
    first = args.seed or 0
    seeds = parse_seeds(args.seeds) if args.seeds is not None else list(range(first, first + (args.n or 100)))
    x, labels = Sampler(run, use_ema=not args.no_ema).sample(args.classes, seeds=seeds, truncation=args.truncation,
                                                             batch=args.batch)
    labels = labels.cpu().numpy()
    per_seed = np.tile(np.asarray(seeds, dtype=np.int64), len(labels) // len(seeds))
    out = Path(args.out)
    npz = out / "samples.npz" if args.format == "both" else out
    if run.info["kind"] == "points":
        pts = x.float().cpu()
        npz.parent.mkdir(parents=True, exist_ok=True)
        _savez(npz, points=pts.numpy().astype(np.float32), labels=labels, seeds=per_seed)
        if args.png:
            save_points_density(pts, args.png, pts.min(0).values - 0.5, pts.max(0).values + 0.5)
        log.info("wrote %d points to %s", len(labels), npz)
        return 0
    imgs = to_uint8(x)
    if args.format != "npz":  # one file per image, for other tools
        from PIL import Image
        for img, c, s in zip(imgs, labels, per_seed, strict=True):
            d = out / str(int(c))
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(d / f"{int(s)}.png")
    if args.format != "png":
        npz.parent.mkdir(parents=True, exist_ok=True)
        _savez(npz, images=imgs, labels=labels, seeds=per_seed)
    if args.png:
        import torchvision.utils as vu
        k = min(len(seeds), 10)
        sel = np.concatenate([np.nonzero(labels == c)[0][:k] for c in np.unique(labels)])
        grid = torch.from_numpy(imgs[sel]).permute(0, 3, 1, 2).float() / 255
        vu.save_image(grid, args.png, nrow=k)
    log.info("wrote %d samples to %s", len(labels), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

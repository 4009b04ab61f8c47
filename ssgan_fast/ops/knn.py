"""Op family 5: k-nearest-neighbour radii and radius counts of two feature sets, in tiles (the hot loop
of precision / recall (Kynkäänniemi et al.) and density / coverage (Naeem et al.)).

Both ops work on **squared** Euclidean distances, formed tile by tile as ||a||^2 + ||b||^2 - 2 a.b
(a GEMM plus the row norms, clamped at 0); no [M, N] matrix is ever made:

- ``knn_smallest(x, ref=None, k)`` [M, k]: the k smallest squared distances, ascending, from each row of
  x to the rows of ref; ref None: to the other rows of x, the row itself excluded by index (column k - 1
  is prdc's k + 1-th value of a row that includes itself; a duplicate row is a neighbour at 0). One
  search gives the radii of every k' <= k (P/R's k = 3 and D/C's k = 5 from one pass). On CPU a self
  search computes each tile pair once (the upper block triangle: half the GEMM work) and updates both
  sides.
- ``knn_radius_count(a, b, ra2, rb2, inclusive=False)`` -> (cnt_a [M], cnt_b [N], nn_a [M]): in one
  pass over the pairs, cnt_a[i] = #{j : d_ij < rb2[j]} (the b balls that hold a_i), cnt_b[j] =
  #{i : d_ij < ra2[i]} (the a balls that hold b_j) and nn_a[i] = min_j d_ij; inclusive compares with <=
  (stylegan2-ada-pytorch's P/R) instead of < (prdc).

Backends: C++ (at::mm tiles + a fused epilogue, CPU), Triton and CUDA (a program per row tile loops
over all column tiles: top-k in registers, column counts by integer atomics), float64 reference
(``reference.knn_smallest`` / ``knn_radius_count``: exact differences, torch.cdist without the GEMM form).
Numerics: the GEMM form rounds a squared distance to about eps * (||a||^2 + ||b||^2) (eps = 6e-8 in
float32); a pair closer to a radius than that may be counted on the other side of it than the float64
reference counts it - the stated tie tolerance (``TIE_RTOL``; tests/ops/test_knn.py checks every
disagreement lies within it). Triton computes in float32 (float64 inputs are rounded first); the C++
and CUDA kernels compute in the input's dtype (float32 / float64); float16 / bfloat16 inputs are
computed in float32. No autograd: the results are counts and order statistics.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._backends import c_ops, op_scope, pick_backend, triton_kernels
from . import reference
from ._checks import check_float_matrix, check_tensor, values_checkable

__all__ = ["knn_smallest", "knn_radius_count", "TIE_RTOL", "MAX_K"]

# a squared distance within TIE_RTOL * (||a||^2 + ||b||^2) of a radius may land on either side of it
# (float32 GEMM form; about 16 float32 ulps)
TIE_RTOL = 1e-6
MAX_K = 64  # the largest k the GPU kernels keep in registers / a local array


def _prepare(t: Tensor) -> Tensor:
    return (t if t.dtype in (torch.float32, torch.float64) else t.float()).contiguous()


def _check_finite(t: Tensor, name: str):
    if values_checkable() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(1).sum()) if t.dim() == 2 else int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} has {bad} row(s) with NaN or inf values: the neighbour distances would be NaN")


def _check_sets(a: Tensor, b: Tensor, aname: str, bname: str):
    check_float_matrix(a, aname, "M")
    check_float_matrix(b, bname, "N")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{aname} has D = {a.shape[1]} features but {bname} has D = {b.shape[1]} "
                         "(features of different extractors?)")
    if a.shape[1] == 0:
        raise ValueError(f"{aname} and {bname} have D = 0 features")
    if a.device != b.device:
        raise ValueError(f"{aname} is on {a.device} but {bname} is on {b.device}: put both on one device")


def knn_smallest(x: Tensor, ref: Tensor | None = None, k: int = 1) -> Tensor:
    """The k smallest squared Euclidean distances [M, k], ascending, from each row of x [M, D] to the rows
    of ref [N, D] (ref None: to the other rows of x). Float32 out for float32 / half inputs, float64 for
    float64 (Triton: float32)."""
    if ref is None:
        check_float_matrix(x, "x", "M")
    else:
        _check_sets(x, ref, "x", "ref")
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    n_other = x.shape[0] - 1 if ref is None else ref.shape[0]
    if not 1 <= k <= n_other:
        raise ValueError(f"k = {k} neighbours need k in 1..{n_other} ("
                         f"{'the other rows of x' if ref is None else 'the rows of ref'})")
    backend = pick_backend(x.device)
    if backend in ("triton", "cuda", "cuda_emu") and k > MAX_K:
        raise ValueError(f"k = {k}: the {backend} kernel keeps at most MAX_K = {MAX_K} neighbours per row")
    x = _prepare(x.detach())
    r = None if ref is None else _prepare(ref.detach()).to(x.dtype)
    _check_finite(x, "x")
    if r is not None:
        _check_finite(r, "ref")
    with torch.no_grad(), op_scope("knn_smallest", x=x, ref=r):
        if backend == "ref":
            return reference.knn_smallest(x, r, k)
        if backend == "triton":
            return triton_kernels("knn").knn_smallest(x, r, k)
        return c_ops(backend).knn_smallest(x, r, k)


def knn_radius_count(a: Tensor, b: Tensor, ra2: Tensor, rb2: Tensor,
                     inclusive: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """(cnt_a [M] int64, cnt_b [N] int64, nn_a [M]) of two feature sets a [M, D], b [N, D] and squared
    radii ra2 [M], rb2 [N] (see the module docstring)."""
    _check_sets(a, b, "a", "b")
    for r, name, n in ((ra2, "ra2", a.shape[0]), (rb2, "rb2", b.shape[0])):
        check_tensor(r, name)
        if r.dim() != 1 or r.shape[0] != n:
            raise ValueError(f"{name} must have shape [{n}] (one squared radius per row), got {tuple(r.shape)}")
        if not r.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {r.dtype}")
        if r.device != a.device:
            raise ValueError(f"{name} is on {r.device} but the features are on {a.device}")
    if not isinstance(inclusive, bool):
        raise TypeError(f"inclusive must be a bool, got {type(inclusive).__name__}")
    backend = pick_backend(a.device)
    a = _prepare(a.detach())
    b = _prepare(b.detach()).to(a.dtype)
    ra2 = ra2.detach().to(a.dtype).contiguous()
    rb2 = rb2.detach().to(a.dtype).contiguous()
    for t, name in ((a, "a"), (b, "b"), (ra2, "ra2"), (rb2, "rb2")):
        _check_finite(t, name)
    with torch.no_grad(), op_scope("knn_radius_count", a=a, b=b):
        if backend == "ref":
            return reference.knn_radius_count(a, b, ra2, rb2, inclusive)
        if backend == "triton":
            return triton_kernels("knn").knn_radius_count(a, b, ra2, rb2, inclusive)
        return c_ops(backend).knn_radius_count(a, b, ra2, rb2, inclusive)


def aot_cases(full: bool):
    """(label, thunk) pairs over the Triton dispatch of this family's ops, on meta tensors (tools/aot.py):
    P/R k = 3, D/C k = 5, up to MAX_K; Inception (2048) and small extractors."""
    from ._meta import t
    for D in ((3, 64, 100, 512, 2048) if full else (3, 2048)):
        for N in (1, 7, 1000):
            for k in (1, 3, 5, 10, MAX_K):
                def nn(D=D, N=N, k=k):
                    if k < N:
                        knn_smallest(t(N, D), None, k)
                    if k <= N:
                        knn_smallest(t(N + 3, D), t(N, D), k)
                yield f"knn_smallest N{N} D{D} k{k}", nn

            def rc(D=D, N=N):
                for inclusive in (False, True):
                    knn_radius_count(t(N, D), t(N + 5, D), t(N), t(N + 5), inclusive)
            yield f"knn_radius_count N{N} D{D}", rc

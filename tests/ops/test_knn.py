"""Op family knn: knn_smallest and knn_radius_count against the float64 reference (exact differences), shapes
swept (odd sizes, several tiles, the CPU kernel's symmetric self search over several tile pairs), the
tie tolerance, exact ties (< vs <=), duplicates, and bad input."""
import pytest
import torch

from ssgan_fast.ops import reference as R
from ssgan_fast.ops.knn import TIE_RTOL, knn_radius_count, knn_smallest

from .util import BACKENDS

ALL = BACKENDS + [pytest.param("cpu", "ref", id="cpu-ref")]


def _shapes(backend):
    """(M, N, D, k): odd sizes; C++ tiles are 1024 rows, Triton 64 (the interpreter is slow: small)."""
    if backend == "cpp":
        return [(1, 5, 3, 2), (37, 53, 19, 3), (1100, 1030, 9, 5), (2049, 7, 4, 1)]
    return [(1, 5, 3, 2), (37, 53, 19, 3), (130, 70, 33, 5)]


def _tol(x, r, dtype, backend):
    """Bound on the error of a squared distance in the GEMM form: TIE_RTOL (float32) or 1e-12 (float64)
    times ||a||^2 + ||b||^2."""
    scale = float(x.double().square().sum(1).max() + r.double().square().sum(1).max())
    rel = 1e-12 if dtype == torch.float64 and backend != "triton" else TIE_RTOL
    return rel * scale


@pytest.mark.parametrize("device,backend", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["fp32", "fp64", "bf16"])
def test_knn_smallest_matches_reference(device, backend, dtype, use_backend):
    use_backend(backend)
    g = torch.Generator().manual_seed(0)
    for M, N, D, k in _shapes(backend):
        x = (torch.randn(M, D, generator=g) + 3.0).to(dtype)  # an offset: the norms dominate, as for features
        r = (torch.randn(N, D, generator=g) + 3.0).to(dtype)
        xd, rd = x.double(), r.double()
        got = knn_smallest(x.to(device), r.to(device), k)
        assert got.shape == (M, k)
        assert got.dtype == (torch.float64 if dtype == torch.float64 and backend != "triton" else torch.float32)
        want = R.knn_smallest(xd, rd, k)
        tol = _tol(xd, rd, dtype, backend)
        err = (got.double().cpu() - want).abs().max().item()
        assert err <= tol, f"cross M{M} N{N} D{D} k{k}: error {err:.3g} > {tol:.3g}"
        if M > k:
            got = knn_smallest(x.to(device), None, k)
            want = R.knn_smallest(xd, None, k)
            tol = _tol(xd, xd, dtype, backend)
            err = (got.double().cpu() - want).abs().max().item()
            assert err <= tol, f"self M{M} D{D} k{k}: error {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("device,backend", ALL)
def test_knn_smallest_excludes_the_row_itself_by_index(device, backend, use_backend):
    """A duplicated row is its twin's neighbour at distance 0; the row itself never is."""
    use_backend(backend)
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    want = torch.tensor([[0.0, 25.0, 100.0], [0.0, 25.0, 100.0], [25.0, 25.0, 25.0], [25.0, 100.0, 100.0]])
    torch.testing.assert_close(knn_smallest(x.to(device), None, 3).cpu(), want)
    # cross (ref given, even the same rows): the row itself counts
    torch.testing.assert_close(knn_smallest(x.to(device), x.to(device), 1).cpu(), torch.zeros(4, 1))


def _count_bounds(a, b, ra2, rb2, tol):
    """Reference counts with the radii moved by -tol and +tol: any count within them is right up to the
    tie tolerance."""
    lo = R.knn_radius_count(a, b, ra2 - tol, rb2 - tol)
    hi = R.knn_radius_count(a, b, ra2 + tol, rb2 + tol)
    return lo, hi


@pytest.mark.parametrize("device,backend", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_knn_radius_count_matches_reference(device, backend, dtype, use_backend):
    use_backend(backend)
    g = torch.Generator().manual_seed(1)
    for M, N, D, k in _shapes(backend):
        a = (torch.randn(M, D, generator=g) + 3.0).to(dtype)
        b = (torch.randn(N, D, generator=g) * 1.1 + 3.0).to(dtype)
        ad, bd = a.double(), b.double()
        # radii of the kind the metrics use: each set's own k-th neighbour distances (squared)
        ra2 = R.knn_smallest(ad, None, min(k, M - 1))[:, -1] if M > 1 else torch.full((M,), 50.0, dtype=torch.float64)
        rb2 = R.knn_smallest(bd, None, min(k, N - 1))[:, -1]
        for inclusive in (False, True):
            cnt_a, cnt_b, nn_a = knn_radius_count(a.to(device), b.to(device), ra2.to(device, dtype),
                                                  rb2.to(device, dtype), inclusive=inclusive)
            assert cnt_a.dtype == cnt_b.dtype == torch.int64
            want = R.knn_radius_count(ad, bd, ra2, rb2, inclusive)
            tol = _tol(ad, bd, dtype, backend)
            lo, hi = _count_bounds(ad, bd, ra2, rb2, tol)
            for got, w, lo_, hi_, name in ((cnt_a, want[0], lo[0], hi[0], "cnt_a"),
                                           (cnt_b, want[1], lo[1], hi[1], "cnt_b")):
                got = got.cpu()
                assert bool(((got >= lo_) & (got <= hi_)).all()), \
                    f"{name} M{M} N{N} D{D}: {int((got != w).sum())} counts outside the tie tolerance"
            if dtype == torch.float64 and backend != "triton":
                assert torch.equal(cnt_a.cpu(), want[0]) and torch.equal(cnt_b.cpu(), want[1])
            err = (nn_a.double().cpu() - want[2]).abs().max().item()
            assert err <= tol, f"nn_a M{M} N{N}: error {err:.3g}"


@pytest.mark.parametrize("device,backend", ALL)
def test_knn_radius_count_exact_ties(device, backend, use_backend):
    """Integer features: every squared distance is exact in every backend, so points on a radius are
    counted by <= and not by < (stylegan2-ada's P/R vs prdc's)."""
    use_backend(backend)
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 3, (40, 6), generator=g).float()
    b = torch.randint(0, 3, (29, 6), generator=g).float()
    ra2 = torch.randint(0, 6, (40,), generator=g).float()
    rb2 = torch.randint(0, 6, (29,), generator=g).float()
    for inclusive in (False, True):
        got = knn_radius_count(a.to(device), b.to(device), ra2.to(device), rb2.to(device), inclusive=inclusive)
        want = R.knn_radius_count(a.double(), b.double(), ra2.double(), rb2.double(), inclusive)
        assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])
        torch.testing.assert_close(got[2].double().cpu(), want[2])
    strict = R.knn_radius_count(a.double(), b.double(), ra2.double(), rb2.double(), False)[1].sum()
    assert int(want[1].sum()) > int(strict), "the data must hold points exactly on a radius"


def test_knn_bad_input():
    x, r = torch.randn(5, 4), torch.randn(6, 4)
    with pytest.raises(ValueError, match="D = 4 features but ref has D = 3"):
        knn_smallest(x, torch.randn(6, 3), 1)
    with pytest.raises(ValueError, match="k in 1..4"):
        knn_smallest(x, None, 5)
    with pytest.raises(ValueError, match="k in 1..6"):
        knn_smallest(x, r, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        knn_smallest(x, r, 1.0)
    with pytest.raises(ValueError, match="empty"):
        knn_smallest(torch.randn(0, 4), r, 1)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="1 row\\(s\\) with NaN"):
        knn_smallest(bad, r, 1)
    with pytest.raises(ValueError, match="rb2 must have shape \\[6\\]"):
        knn_radius_count(x, r, torch.ones(5), torch.ones(5))
    with pytest.raises(TypeError, match="must be floating point"):
        knn_radius_count(x, r, torch.ones(5, dtype=torch.long), torch.ones(6))
    with pytest.raises(TypeError, match="must be a floating-point tensor"):
        knn_radius_count(x.long(), r, torch.ones(5), torch.ones(6))

"""The pure-Python distribution functions against scipy (1e-11 relative or better)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from abtest.stats import distributions as d

DIST_REL = 1e-11

PROBABILITIES = [
    *np.logspace(-300, -2, 40).tolist(),
    *np.linspace(0.01, 0.99, 25).tolist(),
    0.025,
    0.05,
    0.5,
    0.8,
    0.975,
    0.995,
    1 - 1e-10,
]
# Welch degrees of freedom from 1 (two users per arm) to beyond 2e7 (ten million users per arm).
DEGREES_OF_FREEDOM = [
    1.0,
    1.0001,
    1.5,
    2.0,
    2.7,
    3.0,
    5.0,
    9.99,
    29.3,
    99.5,
    100.0,
    250.0,
    1e3,
    12345.6,
    1e5,
    2e7,
    1e9,
]
T_VALUES = [0.001, 0.3, 1.0, 1.5, 1.7, 1.96, 2.5, 3.0, 5.0, 8.0, 12.0, 30.0, 1e4, -0.4, -2.0, -7.0]


@pytest.mark.parametrize("p", PROBABILITIES)
def test_normal_quantiles_match_scipy(p: float) -> None:
    assert d.norm_ppf(p) == pytest.approx(scipy.stats.norm.ppf(p), rel=1e-13)
    assert d.norm_isf(p) == pytest.approx(scipy.stats.norm.isf(p), rel=1e-13)


@pytest.mark.parametrize("x", np.linspace(-37.0, 37.0, 75).tolist())
def test_normal_cdf_pdf_match_scipy(x: float) -> None:
    assert d.norm_cdf(x) == pytest.approx(scipy.stats.norm.cdf(x), rel=1e-12)
    assert d.norm_sf(x) == pytest.approx(scipy.stats.norm.sf(x), rel=1e-12)
    assert d.norm_pdf(x) == pytest.approx(scipy.stats.norm.pdf(x), rel=1e-12)


@pytest.mark.parametrize("df", DEGREES_OF_FREEDOM)
def test_student_t_cdf_and_sf_match_scipy(df: float) -> None:
    for t in T_VALUES:
        assert d.t_sf(t, df) == pytest.approx(scipy.stats.t.sf(t, df), rel=DIST_REL, abs=1e-300), t
        assert d.t_cdf(t, df) == pytest.approx(scipy.stats.t.cdf(t, df), rel=DIST_REL, abs=1e-300), t
        assert d.t_pdf(t, df) == pytest.approx(scipy.stats.t.pdf(t, df), rel=1e-10, abs=1e-300), t
    assert d.t_sf(0.0, df) == 0.5
    assert d.t_sf(math.inf, df) == 0.0


@pytest.mark.parametrize("df", DEGREES_OF_FREEDOM)
def test_student_t_quantiles_match_scipy(df: float) -> None:
    for q in [0.4, 0.1, 0.05, 0.025, 0.005, 0.0005, 1e-6, 1e-12, 1e-40, 0.6, 0.975, 0.999]:
        assert d.t_isf(q, df) == pytest.approx(scipy.stats.t.isf(q, df), rel=DIST_REL), q
        assert d.t_ppf(q, df) == pytest.approx(scipy.stats.t.ppf(q, df), rel=DIST_REL), q
        # Round trip through the cdf.
        assert d.t_sf(d.t_isf(q, df), df) == pytest.approx(q, rel=1e-12)
    assert d.t_isf(0.5, df) == 0.0


def test_student_t_extreme_tails_stay_finite_and_monotone() -> None:
    values = [d.t_sf(t, 2e7) for t in (5.0, 10.0, 20.0, 30.0, 38.0, 40.0, 100.0)]
    assert all(0.0 <= v < 1e-6 for v in values)
    assert values == sorted(values, reverse=True)
    assert d.t_sf(1e300, 3.0) == pytest.approx(scipy.stats.t.sf(1e300, 3.0), rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 9, 19, 49])
def test_chi_squared_sf_matches_scipy(df: int) -> None:
    for x in [1e-6, 0.01, 0.5, 1.0, 2.0, 3.84, 5.0, 10.0, 20.0, 40.0, 100.0, 300.0, 1000.0]:
        assert d.chi2_sf(x, df) == pytest.approx(scipy.stats.chi2.sf(x, df), rel=1e-12, abs=1e-300), x
    assert d.chi2_sf(0.0, df) == 1.0


@pytest.mark.parametrize(
    ("a", "b"), [(0.5, 0.5), (1, 3), (9.9, 10.5), (15, 2.5), (1e3, 0.5), (300, 700), (5e4, 20)]
)
def test_log_beta_matches_scipy(a: float, b: float) -> None:
    assert d.log_beta(a, b) == pytest.approx(scipy.special.betaln(a, b), rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("a", [10.0, 1e4, 1e7, 1e9, 1e12])
def test_log_beta_large_arguments_exact_identities(a: float) -> None:
    # B(a, 1) = 1/a and B(a, 2) = 1/(a (a+1)) exactly; scipy's betaln loses ~6 digits at a = 1e9.
    assert d.log_beta(a, 1.0) == pytest.approx(-math.log(a), rel=1e-14)
    assert d.log_beta(a, 2.0) == pytest.approx(-math.log(a) - math.log1p(a), rel=1e-14)
    # B(a, a) = Gamma(a)^2 / Gamma(2a): duplication formula gives log B(a,a) = log(sqrt(pi)) + lgamma(a)
    # - lgamma(a + 1/2) - (2a - 1) log 2; compare through the large-a branch's own consistency.
    assert d.log_beta(a, 1.0) - d.log_beta(a + 1.0, 1.0) == pytest.approx(math.log1p(1 / a), rel=1e-9)


@pytest.mark.parametrize(
    ("a", "b"), [(0.5, 0.5), (2.0, 3.0), (0.5, 40.0), (40.0, 0.5), (150.0, 0.5), (7.5, 120.0)]
)
def test_regularized_beta_matches_scipy(a: float, b: float) -> None:
    for x in [1e-12, 1e-4, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-9]:
        assert d.regularized_beta(a, b, x) == pytest.approx(
            scipy.special.betainc(a, b, x), rel=1e-11, abs=1e-300
        )
    assert d.regularized_beta(a, b, 0.0) == 0.0
    assert d.regularized_beta(a, b, 1.0) == 1.0


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (d.norm_ppf, (0.0,)),
        (d.norm_ppf, (1.0,)),
        (d.norm_isf, (1.5,)),
        (d.t_ppf, (0.5, 0.0)),
        (d.t_isf, (0.0, 3.0)),
        (d.t_sf, (1.0, -1.0)),
        (d.t_sf, (math.nan, 3.0)),
        (d.chi2_sf, (1.0, 0.0)),
        (d.log_beta, (0.0, 1.0)),
        (d.regularized_gamma_q, (-1.0, 1.0)),
    ],
)
def test_invalid_arguments_raise_value_error(call: object, args: tuple[float, ...]) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=r"must|need|NaN"):
        call(*args)

"""Every comparison of one treatment against the control, from the two arms' moments.

Ratio and quantile metrics reduce to `Moments(n, mean, variance)` (see `ratio.ratio_moments`,
`quantile.quantile_moments`), where `variance / n` is the squared standard error of the arm's estimate.
`compare_moments` then runs the same tests `analyze` runs for a mean metric, and returns the same JSON
shape as one entry of `analyze`'s "comparisons" (without `treatment_index` and `cuped_absolute`), so a
results handler can show every metric type alike.
"""

from __future__ import annotations

from typing import Any

from abtest.stats.bayesian import effect_bayesian_test
from abtest.stats.frequentist import two_sided_ttest
from abtest.stats.inputs import GaussianPrior
from abtest.stats.moments import Moments
from abtest.stats.sequential import sequential_test

__all__ = ["compare_moments"]


def compare_moments(
    control: Moments,
    treatment: Moments,
    *,
    alpha: float = 0.05,
    prior: GaussianPrior | None = None,
    sequential_tuning_parameter: float = 5000.0,
) -> dict[str, Any]:
    """{"relative", "absolute", "sequential_relative", "bayes_relative"} of treatment against control.

    Relative and absolute lifts use Welch's test (gbstats `TwoSidedTTest`), the always-valid interval is
    gbstats' `SequentialTwoSidedTTest` on the relative lift, the posterior gbstats' `EffectBayesianABTest`.
    """
    relative = two_sided_ttest(control, treatment, relative=True, alpha=alpha)
    absolute = two_sided_ttest(control, treatment, relative=False, alpha=alpha)
    sequential = sequential_test(
        relative, control.n + treatment.n, alpha=alpha, tuning_parameter=sequential_tuning_parameter
    )
    bayes = effect_bayesian_test(control, treatment, alpha=alpha, prior=prior)
    return {
        "relative": relative.to_dict(),
        "absolute": absolute.to_dict(),
        "sequential_relative": sequential.to_dict(),
        "bayes_relative": bayes.to_dict(),
    }

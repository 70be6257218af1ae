"""Pure A/B test statistics on per-variant sufficient statistics (variant 0 is the control).

Standard library and pydantic only at run time (no scipy: it would add ~0.7 s to a Lambda cold start).
Entry points: `analyze` (everything for one metric, JSON-ready) and the building blocks below; ratio and
quantile metrics reduce to `Moments` (`ratio_moments`, `quantile_moments`) for `compare_moments`.
`python -m abtest.stats` runs `analyze` on a JSON object read from stdin.
"""

from abtest.stats.analysis import analyze, analyze_request
from abtest.stats.bayesian import BayesianResult, effect_bayesian_test, expected_losses
from abtest.stats.capping import Capping, cap_value, capped_mean_stats, capped_ratio_stats
from abtest.stats.compare import compare_moments
from abtest.stats.cuped import CupedSums, adjusted_moments, cuped_ttest, pooled_theta
from abtest.stats.frequentist import FrequentistResult, difference, two_sided_ttest, welch_dof
from abtest.stats.inputs import (
    BinomialRequest,
    BinomialStats,
    Correction,
    GaussianPrior,
    MeanRequest,
    MeanStats,
    StatsInputError,
    parse_request,
)
from abtest.stats.moments import Moments, moments
from abtest.stats.multiple import adjust_p_values
from abtest.stats.noninferiority import NonInferiorityResult, noninferiority_test
from abtest.stats.outputs import (
    BayesianBlock,
    Comparison,
    FrequentistBlock,
    MetricAnalysis,
    PowerBlock,
    SequentialBlock,
)
from abtest.stats.power import PowerResult, power_analysis, required_sample_size
from abtest.stats.quantile import QuantileSummary, quantile_moments, quantile_summary
from abtest.stats.ratio import RatioStats, ratio_moments
from abtest.stats.sequential import SequentialResult, sequential_test
from abtest.stats.srm import SrmResult, srm_check, srm_p_value

__all__ = [
    "BayesianBlock",
    "BayesianResult",
    "BinomialRequest",
    "BinomialStats",
    "Capping",
    "Comparison",
    "Correction",
    "CupedSums",
    "FrequentistBlock",
    "FrequentistResult",
    "GaussianPrior",
    "MeanRequest",
    "MeanStats",
    "MetricAnalysis",
    "Moments",
    "NonInferiorityResult",
    "PowerBlock",
    "PowerResult",
    "QuantileSummary",
    "RatioStats",
    "SequentialBlock",
    "SequentialResult",
    "SrmResult",
    "StatsInputError",
    "adjust_p_values",
    "adjusted_moments",
    "analyze",
    "analyze_request",
    "cap_value",
    "capped_mean_stats",
    "capped_ratio_stats",
    "compare_moments",
    "cuped_ttest",
    "difference",
    "effect_bayesian_test",
    "expected_losses",
    "moments",
    "noninferiority_test",
    "parse_request",
    "pooled_theta",
    "power_analysis",
    "quantile_moments",
    "quantile_summary",
    "ratio_moments",
    "required_sample_size",
    "sequential_test",
    "srm_check",
    "srm_p_value",
    "two_sided_ttest",
    "welch_dof",
]

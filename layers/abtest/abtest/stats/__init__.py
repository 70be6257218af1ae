"""Pure A/B test statistics on per-variant sufficient statistics (variant 0 is the control).

Standard library and pydantic only at run time (no scipy: it would add ~0.7 s to a Lambda cold start).
Entry points: `analyze` (everything for one metric, JSON-ready) and the building blocks below.
`python -m abtest.stats` runs `analyze` on a JSON object read from stdin.
"""

from abtest.stats.analysis import analyze, analyze_request
from abtest.stats.bayesian import BayesianResult, effect_bayesian_test, expected_losses
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
from abtest.stats.outputs import (
    BayesianBlock,
    Comparison,
    FrequentistBlock,
    MetricAnalysis,
    PowerBlock,
    SequentialBlock,
)
from abtest.stats.power import PowerResult, power_analysis, required_sample_size
from abtest.stats.sequential import SequentialResult, sequential_test
from abtest.stats.srm import SrmResult, srm_check, srm_p_value

__all__ = [
    "BayesianBlock",
    "BayesianResult",
    "BinomialRequest",
    "BinomialStats",
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
    "PowerBlock",
    "PowerResult",
    "SequentialBlock",
    "SequentialResult",
    "SrmResult",
    "StatsInputError",
    "adjust_p_values",
    "adjusted_moments",
    "analyze",
    "analyze_request",
    "cuped_ttest",
    "difference",
    "effect_bayesian_test",
    "expected_losses",
    "moments",
    "parse_request",
    "pooled_theta",
    "power_analysis",
    "required_sample_size",
    "sequential_test",
    "srm_check",
    "srm_p_value",
    "two_sided_ttest",
    "welch_dof",
]

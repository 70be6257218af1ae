"""One call that runs every analysis of one metric and returns the JSON-ready result.

`analyze` is what the results HTTP handler and the CLI call; its output shape is documented in
`analyze_request`. Every number in it is finite: a comparison that cannot be made carries an `error`
reason and None values instead of NaN or infinity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from abtest.stats.bayesian import effect_bayesian_test
from abtest.stats.cuped import cuped_ttest
from abtest.stats.frequentist import FrequentistResult, two_sided_ttest
from abtest.stats.inputs import (
    BinomialRequest,
    BinomialStats,
    Correction,
    GaussianPrior,
    MeanRequest,
    MeanStats,
    MetricType,
    parse_request,
)
from abtest.stats.moments import moments
from abtest.stats.multiple import adjust_p_values
from abtest.stats.power import power_analysis
from abtest.stats.sequential import sequential_test
from abtest.stats.srm import srm_check

__all__ = ["analyze", "analyze_request"]


def analyze(
    metric_type: MetricType,
    variants: Sequence[BinomialStats | MeanStats | Mapping[str, Any]],
    weights: Sequence[float] | None = None,
    alpha: float = 0.05,
    sequential_tuning_parameter: float = 5000.0,
    prior: GaussianPrior | Mapping[str, Any] | None = None,
    *,
    mde: float | None = None,
    power: float = 0.8,
    correction: Correction | None = None,
) -> dict[str, Any]:
    """Analyse one metric; variant 0 is the control. Returns the CLI's JSON shape (see `analyze_request`).

    `variants` are `BinomialStats`/`MeanStats` or plain mappings with the same fields; `weights` default to
    equal weights; `prior` is an optional proper Gaussian prior on the relative lift (None = flat);
    `mde` (relative) adds the `power` section; `correction` ("holm" or "bh") adds adjusted p-values.
    Raises `StatsInputError` (with `field`) for invalid input.
    """
    data: dict[str, Any] = {
        "metric_type": metric_type,
        "variants": [
            variant.model_dump(exclude_none=True)
            if isinstance(variant, BinomialStats | MeanStats)
            else variant
            for variant in variants
        ],
        "alpha": alpha,
        "sequential_tuning_parameter": sequential_tuning_parameter,
        "power": power,
    }
    if weights is not None:
        data["weights"] = list(weights)
    if prior is not None:
        data["prior"] = prior.model_dump() if isinstance(prior, GaussianPrior) else prior
    if mde is not None:
        data["mde"] = mde
    if correction is not None:
        data["correction"] = correction
    return analyze_request(parse_request(data))


def analyze_request(request: BinomialRequest | MeanRequest) -> dict[str, Any]:
    """Analyse a validated request.

    Output:
    {"srm_p_value": float, "srm_flag": bool,
     "comparisons": [{"treatment_index": j,
                      "relative": {"estimate", "se", "ci", "p_value", "error"},
                      "absolute": {same keys},
                      "sequential_relative": {"ci", "p_value"},
                      "bayes_relative": {"chance_to_win", "ci", "risk_control", "risk_treatment"},
                      "cuped_absolute": {same keys as absolute}  (only with pre-period data)}],
     "power": {...} (only when `mde` is given)}
    With `correction`, each "relative", "absolute" and "cuped_absolute" block also has "p_value_adjusted",
    adjusted over the treatments of this metric.
    """
    variants: Sequence[BinomialStats | MeanStats] = request.variants
    weights = request.weights if request.weights is not None else [1.0] * len(variants)
    srm = srm_check([variant.users for variant in variants], weights)
    all_moments = [moments(variant) for variant in variants]
    control = all_moments[0]
    cuped_variants = (
        request.variants if isinstance(request, MeanRequest) and request.variants[0].has_pre_period else None
    )

    comparisons: list[dict[str, Any]] = []
    families: dict[str, list[FrequentistResult]] = {"relative": [], "absolute": [], "cuped_absolute": []}
    for index in range(1, len(variants)):
        treatment = all_moments[index]
        relative = two_sided_ttest(control, treatment, relative=True, alpha=request.alpha)
        absolute = two_sided_ttest(control, treatment, relative=False, alpha=request.alpha)
        sequential = sequential_test(
            relative,
            control.n + treatment.n,
            alpha=request.alpha,
            tuning_parameter=request.sequential_tuning_parameter,
        )
        bayes = effect_bayesian_test(control, treatment, alpha=request.alpha, prior=request.prior)
        comparison: dict[str, Any] = {
            "treatment_index": index,
            "relative": relative.to_dict(),
            "absolute": absolute.to_dict(),
            "sequential_relative": sequential.to_dict(),
            "bayes_relative": bayes.to_dict(),
        }
        families["relative"].append(relative)
        families["absolute"].append(absolute)
        if cuped_variants is not None:
            cuped = cuped_ttest(cuped_variants[0], cuped_variants[index], alpha=request.alpha)
            comparison["cuped_absolute"] = cuped.to_dict()
            families["cuped_absolute"].append(cuped)
        comparisons.append(comparison)

    if request.correction is not None:
        for key, results in families.items():
            if not results:
                continue
            adjusted = adjust_p_values([result.p_value for result in results], request.correction)
            for comparison, value in zip(comparisons, adjusted, strict=True):
                comparison[key]["p_value_adjusted"] = value

    output: dict[str, Any] = {"srm_p_value": srm.p_value, "srm_flag": srm.flag, "comparisons": comparisons}
    if request.mde is not None:
        output["power"] = power_analysis(
            request.metric_type,
            all_moments,
            weights,
            mde=request.mde,
            alpha=request.alpha,
            power=request.power,
        ).to_dict()
    return output

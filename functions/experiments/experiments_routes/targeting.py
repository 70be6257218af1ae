"""The targeting QA route: evaluate a condition against attributes, touching no experiment."""

from abtest import wiring
from abtest.domain.saved_groups import TargetingEvaluation, TargetingResult
from abtest.domain.targeting import evaluate
from abtest.domain.targeting_checks import check_condition, referenced_groups
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.scopes import Scope
from abtest.observability import tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "POST /api/v1/targeting/evaluate": "read",
}


@router.post(f"{API_PREFIX}/targeting/evaluate", responses=documented(200, TargetingResult, 400, 415))
@tracer.capture_method(capture_response=False)
def evaluate_targeting(body: TargetingEvaluation) -> TargetingResult:
    # Touches no experiment: the condition is evaluated as given, against the groups given or stored.
    groups = body.saved_groups
    if groups is None:
        groups = wiring.saved_groups().values(referenced_groups(body.condition))
    problems = check_condition(body.condition, groups.keys(), root="condition")
    # An invalid condition can never be stored, so serving never matches it: say so, do not evaluate it.
    return TargetingResult(
        matches=not problems and evaluate(body.condition, body.attributes, groups),
        error=problems[0].text if problems else None,
    )

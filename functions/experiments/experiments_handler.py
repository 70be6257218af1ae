"""ExperimentsFunction: experiments and their status, per-user overrides, the surfaces' namespaces, saved
groups and the targeting QA route, holdouts, the audit log, and metric
definitions. Each resource is one Router of
experiments_routes, with its routes and scopes; this module only includes them."""

from abtest.http.app import create_app
from abtest.http.entrypoint import entrypoint
from abtest.http.scopes import Scope
from experiments_routes import (
    alerts,
    audit,
    experiments,
    holdouts,
    metric_definitions,
    overrides,
    phases,
    saved_groups,
    surfaces,
    targeting,
    webhooks,
)

# In this order: the OpenAPI document lists the paths as they are registered.
RESOURCES = (
    experiments,
    phases,
    overrides,
    surfaces,
    saved_groups,
    targeting,
    holdouts,
    audit,
    metric_definitions,
    alerts,
    webhooks,
)

app = create_app()
for resource in RESOURCES:
    app.include_router(resource.router)

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    key: scope for resource in RESOURCES for key, scope in resource.SCOPES.items()
}

lambda_handler = entrypoint(app, ROUTE_SCOPES)

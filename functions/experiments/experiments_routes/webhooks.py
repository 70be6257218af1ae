"""Webhook subscriptions (admin): create (the secret is answered once), list, read, change (re-enable,
rotate the secret), delete, send a test event, and read the delivery log."""

import json
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path

from abtest import wiring
from abtest.delivery.pinned_http import system_resolver
from abtest.domain.alerts import (
    TEST_TYPE,
    Webhook,
    WebhookCreate,
    WebhookUpdate,
    WebhookWithSecret,
    message_body,
)
from abtest.domain.digests import latest_slot
from abtest.domain.webhook_signing import generate_secret
from abtest.domain.webhook_urls import check_webhook_url
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.paging import Cursor, PageLimit
from abtest.http.schemas import DeliveryPage, TestDeliveryResponse, WebhookList
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer
from abtest.settings import get_settings

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "POST /api/v1/webhooks": "admin",
    "GET /api/v1/webhooks": "admin",
    "GET /api/v1/webhooks/{webhook_id}": "admin",
    "PATCH /api/v1/webhooks/{webhook_id}": "admin",
    "DELETE /api/v1/webhooks/{webhook_id}": "admin",
    "POST /api/v1/webhooks/{webhook_id}/test": "admin",
    "GET /api/v1/webhooks/{webhook_id}/deliveries": "admin",
}

WebhookId = Annotated[UUID, Path(description="Webhook subscription id (UUID)")]


def _check_url(url: str) -> None:
    """422 naming `url` for a URL the service will not call (checked against every address now)."""
    check_webhook_url(url, local_mode=get_settings().webhook_local_mode, resolve=system_resolver)


@router.post(f"{API_PREFIX}/webhooks", responses=documented(201, WebhookWithSecret, 409, 415))
@tracer.capture_method(capture_response=False)
def create_webhook(body: WebhookCreate) -> Response[WebhookWithSecret]:
    _check_url(body.url)
    actor = current_actor(router)
    secret = generate_secret()
    slot = None if body.digest is None else latest_slot(body.digest, datetime.now(UTC))
    webhook = wiring.webhooks().create(
        body, wiring.secret_box().seal(secret), actor=actor, last_digest_at=slot
    )
    logger.info("webhook created", extra={"webhook_id": str(webhook.id)})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=WebhookWithSecret(**webhook.model_dump(), secret=secret),
        headers={"Location": f"{API_PREFIX}/webhooks/{webhook.id}"},
    )


@router.get(f"{API_PREFIX}/webhooks", responses=documented(200, WebhookList))
@tracer.capture_method(capture_response=False)
def list_webhooks() -> WebhookList:
    return WebhookList(webhooks=wiring.webhooks().all())


@router.get(f"{API_PREFIX}/webhooks/<webhook_id>", responses=documented(200, Webhook, 404))
@tracer.capture_method(capture_response=False)
def get_webhook(webhook_id: WebhookId) -> Webhook:
    return wiring.webhooks().get(webhook_id)


@router.patch(f"{API_PREFIX}/webhooks/<webhook_id>", responses=documented(200, WebhookWithSecret, 404, 415))
@tracer.capture_method(capture_response=False)
def update_webhook(webhook_id: WebhookId, body: WebhookUpdate) -> WebhookWithSecret | Webhook:
    changes = {name: getattr(body, name) for name in body.model_fields_set if name != "rotate_secret"}
    if changes.get("url") is not None:
        _check_url(changes["url"])
    for name in ("url", "kinds", "description", "enabled"):
        if name in changes and changes[name] is None:
            del changes[name]  # null leaves a field as it is (digest: null removes the schedule)
    actor = current_actor(router)
    secret = generate_secret() if body.rotate_secret else None
    sealed = None if secret is None else wiring.secret_box().seal(secret)
    digest = changes.get("digest")
    slot = None if digest is None else latest_slot(digest, datetime.now(UTC))
    webhook = wiring.webhooks().update(
        webhook_id, changes, sealed_secret=sealed, actor=actor, last_digest_at=slot
    )
    if secret is not None:
        return WebhookWithSecret(**webhook.model_dump(), secret=secret)
    return webhook


@router.delete(f"{API_PREFIX}/webhooks/<webhook_id>", responses=documented(204, None, 404))
@tracer.capture_method(capture_response=False)
def delete_webhook(webhook_id: WebhookId) -> Response[None]:
    wiring.webhooks().delete(webhook_id, actor=current_actor(router))
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body=None)


@router.post(f"{API_PREFIX}/webhooks/<webhook_id>/test", responses=documented(202, TestDeliveryResponse, 404))
@tracer.capture_method(capture_response=False)
def test_webhook(webhook_id: WebhookId) -> Response[TestDeliveryResponse]:
    now = datetime.now(UTC)
    data = {"webhook_id": str(webhook_id), "message": "A test event from the A/B testing service."}
    body = json.dumps(message_body(TEST_TYPE, now, data), separators=(",", ":"))
    msg_id = wiring.webhooks().add_message(webhook_id, TEST_TYPE, body)
    wiring.dispatcher().relay()  # hands it to the queue at once (locally the timer delivers it)
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=TestDeliveryResponse(message_id=msg_id, type=TEST_TYPE),
    )


@router.get(f"{API_PREFIX}/webhooks/<webhook_id>/deliveries", responses=documented(200, DeliveryPage, 404))
@tracer.capture_method(capture_response=False)
def webhook_deliveries(webhook_id: WebhookId, limit: PageLimit = 50, cursor: Cursor = None) -> DeliveryPage:
    items, next_cursor = wiring.webhooks().deliveries(webhook_id, limit=limit, cursor=cursor)
    return DeliveryPage(deliveries=items, next_cursor=next_cursor)

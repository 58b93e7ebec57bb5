"""`POST /internal/v1/messages`: where outbox messages from other services arrive.

The message id is recorded in the same transaction as the handler's effect, so a message
delivered twice (a retry after a lost response, say) is applied exactly once.
"""

from __future__ import annotations

from collections.abc import Callable

import marshmallow as ma
import peewee as pw
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from shared.database import db
from shared.models import InboxMessage
from shared.outbox import MessageRejected
from shared.web.api import Schema
from shared.web.auth import internal_only


class MessageSchema(Schema):
    id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    topic = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    payload = ma.fields.Dict(required=True)


class MessageResultSchema(Schema):
    id = ma.fields.String()
    status = ma.fields.String(metadata={"description": "processed, or duplicate"})


def apply_once(service: str, message_id: str, topic: str, handler, payload: dict) -> str:
    """Run `handler(payload, message_id)` unless `service` already applied `message_id`:
    "processed" or "duplicate". The id is recorded in the handler's transaction, so a
    MessageRejected (or any error) from the handler records nothing."""
    with db.atomic():
        try:
            with db.atomic():
                InboxMessage.create(consumer=service, message_id=message_id, topic=topic)
        except pw.IntegrityError:
            return "duplicate"
        handler(payload, message_id)
    return "processed"


def make_inbox_blueprint(service: str, handlers: dict[str, Callable[[dict, str], None]]):
    blp = Blueprint(
        f"{service}_inbox",
        __name__,
        url_prefix="/internal/v1",
        description="Internal: messages from other services' outboxes (service token only).",
    )

    @blp.route("/messages")
    class Messages(MethodView):
        decorators = [internal_only]

        @blp.arguments(MessageSchema)
        @blp.response(200, MessageResultSchema)
        def post(self, message):
            handler = handlers.get(message["topic"])
            if handler is None:
                abort(
                    422,
                    message=f"{service} does not handle topic {message['topic']!r}",
                    errors={"json": {"topic": [f"unknown topic; known: {sorted(handlers)}"]}},
                )
            try:
                status = apply_once(
                    service, message["id"], message["topic"], handler, message["payload"]
                )
            except MessageRejected as exc:
                abort(422, message=str(exc), errors={"json": {"payload": [str(exc)]}})
            return {"id": message["id"], "status": status}

    return blp

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
                with db.atomic():
                    try:
                        with db.atomic():
                            InboxMessage.create(
                                consumer=service, message_id=message["id"], topic=message["topic"]
                            )
                    except pw.IntegrityError:
                        return {"id": message["id"], "status": "duplicate"}
                    handler(message["payload"], message["id"])
            except MessageRejected as exc:
                abort(422, message=str(exc), errors={"json": {"payload": [str(exc)]}})
            return {"id": message["id"], "status": "processed"}

    return blp

"""Core: people, organizations and who belongs where."""

import peewee as pw

from shared.models.base import BaseModel, EnumField, UTCDateTimeField, utcnow
from shared.models.enums import InvitationStatus, Plan, Role


class User(BaseModel):
    """A GitHub identity that signed in, or a GitHub login seen in activity (a known
    developer: push payloads name commit authors by login only, so the id may be unknown
    until they sign in)."""

    github_id = pw.BigIntegerField(unique=True, null=True)
    login = pw.CharField(max_length=100, index=True)
    name = pw.CharField(max_length=255, null=True)
    email = pw.CharField(max_length=320, null=True, index=True)
    avatar_url = pw.TextField(null=True)
    is_bot = pw.BooleanField(default=False)
    # Fernet ciphertext (shared.crypto); never the plaintext token.
    oauth_token_encrypted = pw.TextField(null=True)
    last_login_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "users"
        indexes = ((("created_at",), False),)


class UserEmail(BaseModel):
    """An e-mail address of a person, written by the accounts service: GitHub's verified
    addresses of theirs (`/user/emails`, read at each sign-in) and their own choice of which
    ones their commits are attributed by (`linked`; `PUT /api/v1/me`). A claim counts only
    for an address GitHub verified for them and never over GitHub's pairing of the address
    with another account's username (see AuthorEmail)."""

    user = pw.ForeignKeyField(User, backref="emails", on_delete="CASCADE", index=False)
    email = pw.CharField(max_length=320)  # lowercased
    verified = pw.BooleanField(default=False)  # GitHub listed it verified at the last sign-in
    # Commits with this e-mail (and no username of their own) are theirs; False: released.
    linked = pw.BooleanField(default=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "user_emails"
        indexes = (
            (("user", "email"), True),
            (("email",), False),  # who claims an address (the activity service's owner)
        )


class Organization(BaseModel):
    name = pw.CharField(max_length=255)
    slug = pw.CharField(max_length=100, unique=True)
    plan = EnumField(Plan, default=Plan.FREE)
    is_personal = pw.BooleanField(default=False)
    # The GitHub account (org or user login) whose repositories this org connects.
    github_login = pw.CharField(max_length=100, null=True, index=True)
    settings = pw.JSONField(default=dict)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "organizations"
        indexes = ((("plan", "created_at"), False),)

    @classmethod
    def by_ref(cls, ref: str):
        """By slug, or by numeric id; None when there is no such organization."""
        ref = str(ref)
        if ref.isascii() and ref.isdigit():
            return cls.get_or_none(cls.id == int(ref)) if len(ref) < 19 else None
        return cls.get_or_none(cls.slug == ref)


class UserOrganization(BaseModel):
    user = pw.ForeignKeyField(User, backref="memberships", on_delete="CASCADE", index=False)
    organization = pw.ForeignKeyField(
        Organization, backref="memberships", on_delete="CASCADE", index=False
    )
    role = EnumField(Role, default=Role.MEMBER)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "user_organizations"
        indexes = (
            (("user", "organization"), True),
            (("organization", "role"), False),
        )


class Invitation(BaseModel):
    """An offer of membership. Nobody becomes a member without consent: the invited person
    accepts (or declines) after signing in with the GitHub identity it names, before
    `expires_at`. Addressed to a GitHub login or an e-mail address; pinned to the GitHub id
    when the login is of someone who has signed in, so a renamed account cannot take it."""

    organization = pw.ForeignKeyField(
        Organization, backref="invitations", on_delete="CASCADE", index=False
    )
    login = pw.CharField(max_length=100, null=True, index=True)  # lowercased
    email = pw.CharField(max_length=320, null=True, index=True)  # lowercased
    github_id = pw.BigIntegerField(null=True)
    role = EnumField(Role, default=Role.MEMBER)
    status = EnumField(InvitationStatus, default=InvitationStatus.PENDING)
    invited_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", index=False)
    # Set when an admin-scoped API key sent it (its creator is `invited_by`).
    invited_by_key_id = pw.IntegerField(null=True)
    accepted_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", index=False)
    created_at = UTCDateTimeField(default=utcnow)
    expires_at = UTCDateTimeField()
    responded_at = UTCDateTimeField(null=True)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "invitations"
        indexes = ((("organization", "status"), False),)

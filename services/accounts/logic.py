"""Accounts business logic: sign-in, sessions, organizations, members, API keys, audit,
plan limits and token introspection. Plain functions, no Flask: the views translate."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass

import peewee as pw

from shared import audit, crypto
from shared.config import Settings
from shared.database import db, lock_row, serialized
from shared.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PlanLimitReached,
    Unauthorized,
)
from shared.github import GitHub
from shared.messages import UserEmailsChanged
from shared.models import (
    ApiKey,
    AuditLog,
    AuthorEmail,
    Invitation,
    InvitationStatus,
    LoginLink,
    Organization,
    Plan,
    Repository,
    Role,
    Session,
    User,
    UserEmail,
    UserOrganization,
    utcnow,
)
from shared.permissions import ROLE_RANK, SCOPES, Principal, scopes_beyond
from shared.tenant_settings import settings_of

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)  # at most one write a minute per key/session
INACTIVE = {"active": False}
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")

# Plan limits: None is unlimited.
PLAN_LIMITS = {
    Plan.FREE: {"repositories": 3, "members": 5},
    Plan.PRO: {"repositories": None, "members": None},
    Plan.ENTERPRISE: {"repositories": None, "members": None},
}
PERSONAL_MEMBER_LIMIT = 1


# Sign-in ------------------------------------------------------------------------------


@dataclass
class SignIn:
    user: User
    token: str
    session: Session
    created: bool


def sign_in_with_github(
    code: str, redirect_uri: str, *, ip=None, user_agent=None, settings: Settings | None = None
) -> SignIn:
    """Exchange the OAuth code, read the GitHub user, then write everything in one
    transaction: GitHub failing at any step leaves the database untouched."""
    settings = settings or Settings.from_env()
    github = GitHub(settings)
    access_token = github.exchange_code(code, redirect_uri)
    profile = github.user_with_email(access_token)

    now = utcnow()
    with db.atomic():
        user = User.get_or_none(User.github_id == profile["id"]) or User.get_or_none(
            User.github_id.is_null() & (pw.fn.LOWER(User.login) == profile["login"].lower())
        )  # a developer seen in activity (by login only) signing in for the first time
        created = user is None or user.last_login_at is None
        if user is None:
            user = User(created_at=now)
        user.github_id = profile["id"]
        user.login = profile["login"]
        user.name = profile.get("name")
        user.email = (profile.get("email") or "").lower() or None
        user.avatar_url = profile.get("avatar_url")
        user.is_bot = profile.get("type") == "Bot"
        user.oauth_token_encrypted = crypto.encrypt(access_token, settings)
        user.last_login_at = now
        user.save()
        emails = record_github_emails(user.id, profile.get("verified_emails") or [])
        if created:
            _create_personal_org(user)
        token = crypto.new_session_token()
        session = Session.create(
            user=user,
            token_digest=crypto.token_digest(token),
            expires_at=now + dt.timedelta(days=settings.session_days),
            ip=ip,
            user_agent=user_agent,
        )
        audit.record(
            "auth.signed_in",
            actor_user=user.id,
            target_type="user",
            target_id=user.id,
            metadata={
                "new_user": created,
                "session_id": session.id,
                **({"emails": emails} if emails else {}),
            },
        )
    return SignIn(user, token, session, created)


def sign_in_with_login_link(
    token: str, *, ip=None, user_agent=None, settings: Settings | None = None
) -> SignIn:
    """Consume a one-time link made by `devmetrics login-link` (local use only): the link is
    marked used in the same transaction that creates the session, so it works once."""
    settings = settings or Settings.from_env()
    if settings.is_production:
        raise NotFound("login links are disabled in production")
    now = utcnow()
    digest = crypto.token_digest(token)
    with db.atomic():
        if not _claim_login_link(digest, now):
            raise BadRequest("this sign-in link is unknown, already used or expired")
        user = User.select().join(LoginLink).where(LoginLink.token_digest == digest).get()
        session_token = crypto.new_session_token()
        session = Session.create(
            user=user,
            token_digest=crypto.token_digest(session_token),
            expires_at=now + dt.timedelta(days=settings.session_days),
            ip=ip,
            user_agent=user_agent,
        )
        audit.record(
            "auth.signed_in",
            actor_user=user.id,
            target_type="user",
            target_id=user.id,
            metadata={"new_user": False, "session_id": session.id, "method": "login_link"},
        )
    return SignIn(user, session_token, session, False)


def _claim_login_link(digest: str, now) -> bool:
    """Mark the link used, if it is usable: the conditional UPDATE is the claim, so of two
    concurrent uses (a sign-in, a refusal) only one matches a row; it works once either way."""
    claimed = (
        LoginLink.update(used_at=now)
        .where(
            (LoginLink.token_digest == digest)
            & LoginLink.used_at.is_null()
            & (LoginLink.expires_at > now)
        )
        .execute()
    )
    return claimed == 1


def void_login_link(token: str, reason: str) -> bool:
    """Spend an unused link without signing anyone in, when a request carrying it was
    refused (a `next` that is not ours): its URL may now sit in a log beyond ours (a proxy's),
    and a link handed around with another site's `next` is not trusted further. Audited;
    False when there was no usable link."""
    now = utcnow()
    digest = crypto.token_digest(token)
    with db.atomic():
        if not _claim_login_link(digest, now):
            return False
        link = LoginLink.get(LoginLink.token_digest == digest)
        audit.record(
            "auth.login_link_voided",
            target_type="user",
            target_id=link.user_id,
            metadata={"reason": reason},
        )
    return True


def _create_personal_org(user: User) -> Organization:
    slug = _free_slug(_slugify(user.login) or f"user-{user.github_id}")
    org = Organization.create(
        name=f"{user.name or user.login} (personal)",
        slug=slug,
        is_personal=True,
        github_login=user.login,
    )
    UserOrganization.create(user=user, organization=org, role=Role.OWNER)
    audit.record(
        "organization.created",
        organization=org,
        actor_user=user.id,
        target_type="organization",
        target_id=org.id,
        metadata={"slug": slug, "personal": True},
    )
    return org


def sign_out(token: str) -> bool:
    """Revoke the session behind `token`; False when it was not an active session."""
    with db.atomic():
        session = _active_session(token)
        if session is None:
            return False
        audit.changed(
            session,
            {"revoked_at": utcnow()},
            "auth.signed_out",
            actor_user=session.user_id,
            target_type="user",
            target_id=session.user_id,
            metadata={"session_id": session.id},
        )
    return True


def _active_session(token: str) -> Session | None:
    if not token.startswith(crypto.SESSION_PREFIX + "_"):
        return None
    session = Session.get_or_none(Session.token_digest == crypto.token_digest(token))
    if session is None or session.revoked_at is not None or session.expires_at <= utcnow():
        return None
    return session


def me(user_id: int) -> dict:
    user = User.get_by_id(user_id)
    memberships = (
        UserOrganization.select(UserOrganization, Organization)
        .join(Organization)
        .where(UserOrganization.user == user_id)
        .order_by(Organization.name)
    )
    return {
        "user": user,
        "organizations": [{"organization": m.organization, "role": m.role} for m in memberships],
        "emails": my_emails(user_id),
    }


# A person's commit e-mails ------------------------------------------------------------
#
# Whose a commit is when it names no username is decided by the activity service
# (services/activity/authors.py, the only writer of author_emails and of commits' authors):
# the user GitHub paired its e-mail with, unless they released it, else a person who claims
# it. This service writes the claims (user_emails): the addresses GitHub verified for each
# person, and their choice of which ones count; every change is sent to the activity
# service (outbox topic `user_emails.changed`), which re-attributes the commits and has the
# metrics service recompute the days that changed.


def _emails_changed(user_id: int, emails) -> None:
    if emails:
        UserEmailsChanged(user_id=user_id, emails=tuple(sorted(emails))).publish()


def record_github_emails(user_id: int, verified: list[str]) -> dict:
    """At sign-in: the addresses GitHub lists verified for the person. One not seen before
    is linked (its commits are theirs, as GitHub itself attributes them) unless GitHub
    paired it with another account's username in commits; a released one stays released;
    one GitHub no longer verifies stops counting as a claim. Returns what changed
    ({"verified": [...], "unverified": [...]}, empty lists left out)."""
    verified = {email.lower() for email in verified if email}
    rows = {row.email: row for row in UserEmail.select().where(UserEmail.user == user_id)}
    others = _paired_with_others(user_id, verified - set(rows))
    now = utcnow()
    became, lost = [], []
    for email in sorted(verified):
        row = rows.get(email)
        if row is None:
            linked = email not in others
            UserEmail.create(user=user_id, email=email, verified=True, linked=linked)
            became.append(email)
        elif not row.verified:
            UserEmail.update(verified=True, updated_at=now).where(UserEmail.id == row.id).execute()
            became.append(email)
    for email, row in sorted(rows.items()):
        if row.verified and email not in verified:
            UserEmail.update(verified=False, updated_at=now).where(UserEmail.id == row.id).execute()
            lost.append(email)
    _emails_changed(user_id, became + lost)
    return {k: v for k, v in (("verified", became), ("unverified", lost)) if v}


def _paired_with(user_id: int) -> set[str]:
    """The addresses GitHub showed with the person's username in some organization's
    commits."""
    return {
        email
        for (email,) in AuthorEmail.select(AuthorEmail.email)
        .where(AuthorEmail.paired_user == user_id)
        .distinct()
        .tuples()
    }


def _paired_with_others(user_id: int, emails) -> set[str]:
    """Those of `emails` GitHub showed with another account's username."""
    emails = sorted(set(emails))
    if not emails:
        return set()
    return {
        email
        for (email,) in AuthorEmail.select(AuthorEmail.email)
        .where(
            AuthorEmail.email.in_(emails)
            & AuthorEmail.paired_user.is_null(False)
            & (AuthorEmail.paired_user != user_id)
        )
        .distinct()
        .tuples()
    }


def my_emails(user_id: int) -> list[dict]:
    """The person's commit e-mails: those GitHub verified for them or paired with their
    username, and whether each counts as theirs (`linked`)."""
    rows = {row.email: row for row in UserEmail.select().where(UserEmail.user == user_id)}
    paired = _paired_with(user_id)
    emails = sorted(set(rows) | paired)
    others = _paired_with_others(user_id, emails)
    listed = []
    for email in emails:
        row = rows.get(email)
        verified = bool(row and row.verified)
        listed.append(
            {
                "email": email,
                "verified": verified,
                "paired_by_github": email in paired,
                # Counts for them (where no other account's pairing takes precedence).
                "linked": (row.linked if row else True) and (verified or email in paired),
                "paired_with_another_account": email in others,
            }
        )
    return listed


def _audit_emails_changed(user_id: int, linked: list[str], released: list[str]) -> None:
    """One entry for the person, and one in each organization whose commits it may
    re-attribute, naming that organization's addresses only."""
    audit.record(
        "user.emails_changed",
        target_type="user",
        target_id=user_id,
        metadata={"linked": linked, "released": released},
    )
    seen = defaultdict(set)
    for organization_id, email in (
        AuthorEmail.select(AuthorEmail.organization, AuthorEmail.email)
        .where(AuthorEmail.email.in_(linked + released))
        .tuples()
    ):
        seen[organization_id].add(email)
    for organization_id, emails in sorted(seen.items()):
        audit.record(
            "user.emails_changed",
            organization=organization_id,
            target_type="user",
            target_id=user_id,
            metadata={
                "linked": [e for e in linked if e in emails],
                "released": [e for e in released if e in emails],
            },
        )


def set_my_emails(user_id: int, emails: list[str]) -> dict:
    """`PUT /me` {"emails": [...]}: the addresses whose commits (those without a username of
    their own) are the person's. Each must be one GitHub verified for them (at their last
    sign-in) or paired with their username (else 422), and none they did not have linked
    already may be one GitHub paired with another account's username (409): nobody takes
    another's commits. Their other addresses are released (a wrong pairing: its commits
    become unlinked, or a claimant's). Audited (`user.emails_changed`, also in the log of
    each organization whose commits it re-attributes); the activity service re-attributes
    the commits and the metrics service recomputes their days."""
    listed = [email.lower() for email in emails]  # errors name positions in the body
    wanted = list(dict.fromkeys(listed))
    with serialized():
        lock_row(User, user_id)  # one change of a person's e-mails at a time
        rows = {row.email: row for row in UserEmail.select().where(UserEmail.user == user_id)}
        paired = _paired_with(user_id)
        unknown = {
            str(n): [
                f"GitHub has not verified {email} for you: verify it on GitHub, then sign in again"
            ]
            for n, email in enumerate(listed)
            if not ((email in rows and rows[email].verified) or email in paired)
        }
        if unknown:
            raise Invalid(
                "emails: only addresses GitHub verified for you or paired with your username",
                {"json": {"emails": unknown}},
            )
        claims = [email for email in wanted if email not in rows or not rows[email].linked]
        others = _paired_with_others(user_id, claims)
        if others:
            raise Conflict(
                "emails: GitHub shows these addresses with another account's username",
                {
                    "json": {
                        "emails": {
                            str(n): [f"GitHub paired {email} with another account's username"]
                            for n, email in enumerate(listed)
                            if email in others
                        }
                    }
                },
            )
        now = utcnow()
        linked, released = [], []
        for email in wanted:
            row = rows.get(email)
            if row is None:  # paired with them by GitHub, never listed at their sign-in
                UserEmail.create(user=user_id, email=email, verified=False, linked=True)
                linked.append(email)
            elif not row.linked:
                UserEmail.update(linked=True, updated_at=now).where(
                    UserEmail.id == row.id
                ).execute()
                linked.append(email)
        for email in sorted((set(rows) | paired) - set(wanted)):
            row = rows.get(email)
            if row is None:
                UserEmail.create(user=user_id, email=email, verified=False, linked=False)
                released.append(email)
            elif row.linked:
                UserEmail.update(linked=False, updated_at=now).where(
                    UserEmail.id == row.id
                ).execute()
                released.append(email)
        changed = linked + released
        if changed:
            _audit_emails_changed(user_id, linked, released)
            _emails_changed(user_id, changed)
    return me(user_id)


# Introspection ------------------------------------------------------------------------


def introspect(token: str, org_ref: str | None = None) -> dict:
    """Who `token` is: an active API key (its org and scopes) or session (the user, and
    their role in `org_ref` when given), else inactive. Unknown, malformed, revoked and
    expired tokens all get the same answer."""
    if token.startswith(crypto.SESSION_PREFIX + "_"):
        return _introspect_session(token, org_ref)
    prefix = crypto.split_api_key(token)
    if prefix is None:
        return INACTIVE
    key = (
        ApiKey.select(ApiKey, Organization)
        .join(Organization)
        .where(ApiKey.prefix == prefix)
        .first()
    )
    if key is None:  # no bcrypt for an unknown prefix: it is public, not part of the secret
        return INACTIVE
    now = utcnow()
    if not crypto.check_api_key(token, key.key_hash):
        return INACTIVE
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return INACTIVE
    if lost_standing(key) is not None:  # even if the revocation write was missed
        return INACTIVE
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        with db.atomic():
            ApiKey.update(last_used_at=now).where(ApiKey.id == key.id).execute()
    return {
        "active": True,
        "kind": "api_key",
        "key_id": key.id,
        "user_id": key.created_by_id,
        "organization": {"id": key.organization.id, "slug": key.organization.slug},
        "role": None,
        "scopes": list(key.scopes),
    }


def _introspect_session(token: str, org_ref: str | None) -> dict:
    session = _active_session(token)
    if session is None:
        return INACTIVE
    now = utcnow()
    if session.last_seen_at is None or now - session.last_seen_at >= LAST_USED_RESOLUTION:
        with db.atomic():
            Session.update(last_seen_at=now).where(Session.id == session.id).execute()
    answer = {
        "active": True,
        "kind": "session",
        "key_id": None,
        "user_id": session.user_id,
        "organization": None,
        "role": None,
        "scopes": [],
    }
    if org_ref is not None:
        org = Organization.by_ref(org_ref)
        membership = org and UserOrganization.get_or_none(
            (UserOrganization.user == session.user_id) & (UserOrganization.organization == org)
        )
        if membership:
            answer["organization"] = {"id": org.id, "slug": org.slug}
            answer["role"] = str(membership.role)
    return answer


# Organizations ------------------------------------------------------------------------


def _slugify(name: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", name.lower())).strip("-")[:100]


def _free_slug(base: str) -> str:
    slug, n = base, 1
    while Organization.select().where(Organization.slug == slug).exists():
        n += 1
        slug = f"{base[:95]}-{n}"
    return slug


def organizations_of(user_id: int):
    return (
        Organization.select(Organization, UserOrganization.role.alias("role"))
        .join(UserOrganization)
        .where(UserOrganization.user == user_id)
        .order_by(Organization.name)
        .objects()  # the membership's role lands on the organization row
    )


def create_organization(user_id: int, name: str, slug: str | None = None, settings=None):
    slug = slug or _slugify(name)
    if not SLUG_RE.match(slug or ""):
        raise Invalid("invalid slug", {"slug": ["lowercase letters, digits and dashes"]})
    with db.atomic():
        if Organization.select().where(Organization.slug == slug).exists():
            raise Conflict(f"the slug {slug!r} is taken", {"slug": ["already in use"]})
        try:
            with db.atomic():
                org = Organization.create(name=name, slug=slug, settings=settings or {})
        except pw.IntegrityError:
            raise Conflict(f"the slug {slug!r} is taken", {"slug": ["already in use"]}) from None
        UserOrganization.create(user=user_id, organization=org, role=Role.OWNER)
        audit.record(
            "organization.created",
            organization=org,
            target_type="organization",
            target_id=org.id,
            metadata={"slug": slug, "name": name},
        )
    return org


def update_organization(org: Organization, principal: Principal, changes: dict) -> Organization:
    """Name and settings (ADMIN+), plan (OWNER only); one audit entry per kind of change."""
    with serialized():
        lock_row(Organization, org.id)  # usage is counted and the plan changed under it
        if "plan" in changes and Plan(changes["plan"]) != org.plan:
            if principal.kind != "session" or _actor_role(org, principal) != Role.OWNER:
                raise Forbidden("only an OWNER can change the plan")
            new_plan = Plan(changes["plan"])
            _check_plan_fits(org, new_plan)
            old = org.plan
            org.plan = new_plan
            audit.record(
                "organization.plan_changed",
                organization=org,
                target_type="organization",
                target_id=org.id,
                metadata={"from": str(old), "to": str(new_plan)},
            )
        if "name" in changes and changes["name"] != org.name:
            audit.record(
                "organization.updated",
                organization=org,
                target_type="organization",
                target_id=org.id,
                metadata={"name": [org.name, changes["name"]]},
            )
            org.name = changes["name"]
        if "settings" in changes:
            merged = {**settings_of(org), **changes["settings"]}
            if merged != org.settings:
                audit.record(
                    "organization.settings_changed",
                    organization=org,
                    target_type="organization",
                    target_id=org.id,
                    metadata={"changed": sorted(changes["settings"])},
                )
                org.settings = merged
        org.save()
    return org


def delete_organization(org: Organization) -> None:
    """Delete the organization and (by cascade) all its data. The audit entry of the
    deletion is kept outside the organization so it survives it."""
    with db.atomic():
        audit.record(
            "organization.deleted",
            organization=None,
            target_type="organization",
            target_id=org.id,
            metadata={"slug": org.slug, "name": org.name},
        )
        Organization.delete().where(Organization.id == org.id).execute()


# Plan limits --------------------------------------------------------------------------


def pending_invitations(org: Organization):
    """Invitations that can still be accepted."""
    return Invitation.select().where(
        (Invitation.organization == org)
        & (Invitation.status == InvitationStatus.PENDING)
        & (Invitation.expires_at > utcnow())
    )


def limits(org: Organization) -> dict:
    """The plan's limits and what is in use. A pending invitation holds a member seat, so
    inviting stops where accepting every invitation would still fit."""
    plan_limits = dict(PLAN_LIMITS[Plan(org.plan)])
    if org.is_personal:
        plan_limits["members"] = PERSONAL_MEMBER_LIMIT
    usage = {
        "repositories": Repository.select()
        .where((Repository.organization == org) & (Repository.is_active == True))  # noqa: E712
        .count(),
        "members": UserOrganization.select().where(UserOrganization.organization == org).count(),
        "invitations": pending_invitations(org).count(),
    }
    seats = {"repositories": usage["repositories"], "members": usage["members"]}
    seats["members"] += usage["invitations"]
    return {
        "organization_id": org.id,
        "plan": str(org.plan),
        "personal": org.is_personal,
        "limits": plan_limits,
        "usage": usage,
        "can_add": {
            kind: plan_limits[kind] is None or seats[kind] < plan_limits[kind]
            for kind in ("repositories", "members")
        },
    }


def check_can_add(org: Organization, kind: str, *, accepting: bool = False) -> None:
    """Refuse (402) one more `kind` beyond the plan. `accepting`: an invitation being
    accepted already holds its seat, so only the members themselves count."""
    info = limits(org)
    limit = info["limits"][kind]
    in_use = info["usage"][kind]
    if kind == "members" and not accepting:
        in_use += info["usage"]["invitations"]
    if limit is not None and in_use >= limit:
        what = (
            "a personal organization"
            if org.is_personal and kind == "members"
            else (f"the {info['plan']} plan")
        )
        pending = (
            f", {info['usage']['invitations']} of them pending invitations"
            if kind == "members" and not accepting and info["usage"]["invitations"]
            else ""
        )
        raise PlanLimitReached(
            f"{what} allows at most {limit} {kind} ({in_use} in use{pending}); "
            "upgrade the plan to add more",
            {"limit": {kind: limit}},
        )


def _check_plan_fits(org: Organization, plan: Plan) -> None:
    info = limits(org)
    for kind, limit in PLAN_LIMITS[plan].items():
        if org.is_personal and kind == "members":
            continue
        if limit is not None and info["usage"][kind] > limit:
            raise Conflict(
                f"cannot move to {plan}: {info['usage'][kind]} {kind} exceed its limit of {limit}",
                {"plan": [f"{kind} limit {limit}"]},
            )


# Members and invitations --------------------------------------------------------------
#
# Every check that an invariant depends on (at least one OWNER; members within the plan;
# the actor's own role) is read under the organization's row lock, in the transaction that
# makes the change, so concurrent requests queue instead of each passing a stale check.


def members_of(org: Organization):
    return (
        UserOrganization.select(UserOrganization, User)
        .join(User)
        .where(UserOrganization.organization == org)
        .order_by(User.login)
    )


def _actor_role(org: Organization, actor: Principal) -> Role:
    """The actor's role now: a person's from their membership row (not the introspection
    answer, which services cache for seconds); a key's from its scopes."""
    if actor.kind != "session":
        return actor.effective_role
    membership = UserOrganization.get_or_none(
        (UserOrganization.user == actor.user_id) & (UserOrganization.organization == org)
    )
    if membership is None:
        raise Forbidden("you are no longer a member of this organization")
    return Role(membership.role)


def _can_manage(role: Role, current: Role | None, new: Role | None) -> bool:
    """OWNER manages everyone; ADMIN manages members below ADMIN, to roles below ADMIN."""
    if role == Role.OWNER:
        return True
    if role != Role.ADMIN:
        return False
    below_admin = ROLE_RANK[Role.ADMIN]
    return all(r is None or ROLE_RANK[r] < below_admin for r in (current, new))


def invite(
    org: Organization,
    actor: Principal,
    *,
    login=None,
    email=None,
    role=Role.MEMBER,
    settings: Settings | None = None,
) -> Invitation:
    """Offer membership to a GitHub login or an e-mail address. Nobody becomes a member
    without accepting; the invitation holds a member seat until it is answered or expires."""
    settings = settings or Settings.from_env()
    role = Role(role)
    login = login.lower() if login else None
    email = email.lower() if email else None
    now = utcnow()
    with serialized():
        lock_row(Organization, org.id)
        actor_role = _actor_role(org, actor)
        if not _can_manage(actor_role, None, role):
            raise Forbidden(f"your role cannot invite a member as {role}")
        # Someone who signed in with this login: the invitation is theirs by GitHub id, so
        # a later holder of a renamed login cannot take it.
        known = (
            User.select()
            .where(
                (pw.fn.LOWER(User.login) == login)
                & User.github_id.is_null(False)
                & User.last_login_at.is_null(False)
            )
            .first()
            if login
            else None
        )
        member = (
            members_of(org)
            .where(
                (pw.fn.LOWER(User.login) == login) if login else (pw.fn.LOWER(User.email) == email)
            )
            .first()
        )
        if member is not None:
            raise Conflict(f"{member.user.login} is already a member")
        same = Invitation.login == login if login else Invitation.email == email
        duplicate = pending_invitations(org).where(same).first()
        if duplicate is not None:
            raise Conflict(
                f"{login or email} already has a pending invitation (id {duplicate.id}); "
                "revoke it to invite again",
                {"login" if login else "email": ["already invited"]},
            )
        check_can_add(org, "members")
        invitation = Invitation.create(
            organization=org,
            login=login,
            email=email,
            github_id=known.github_id if known else None,
            role=role,
            invited_by=actor.user_id,
            invited_by_key_id=actor.key_id,
            created_at=now,
            expires_at=now + dt.timedelta(days=settings.invitation_days),
        )
        audit.record(
            "invitation.created",
            organization=org,
            target_type="invitation",
            target_id=invitation.id,
            metadata={"login": login, "email": email, "role": str(role)},
        )
    return invitation


def invitations_of(org: Organization, status: str | None = None):
    """The organization's invitations, newest first (`status` PENDING means still open)."""
    query = Invitation.select().where(Invitation.organization == org)
    if status == "EXPIRED":
        query = query.where(
            (Invitation.status == InvitationStatus.PENDING) & (Invitation.expires_at <= utcnow())
        )
    elif status == InvitationStatus.PENDING:
        query = pending_invitations(org)
    elif status:
        query = query.where(Invitation.status == status)
    return query.order_by(Invitation.created_at.desc(), Invitation.id.desc())


def revoke_invitation(org: Organization, actor: Principal, invitation_id: int) -> Invitation:
    with serialized():
        lock_row(Organization, org.id)
        invitation = Invitation.get_or_none(
            (Invitation.id == invitation_id) & (Invitation.organization == org)
        )
        if invitation is None:
            raise NotFound("no such invitation")
        if not _can_manage(_actor_role(org, actor), None, Role(invitation.role)):
            raise Forbidden(f"your role cannot revoke an invitation as {invitation.role}")
        if invitation.status != InvitationStatus.PENDING:
            raise Conflict(f"this invitation is already {str(invitation.status).lower()}")
        audit.changed(
            invitation,
            {"status": InvitationStatus.REVOKED, "responded_at": utcnow()},
            "invitation.revoked",
            organization=org,
            target_type="invitation",
            metadata={"login": invitation.login, "email": invitation.email},
        )
    return invitation


def _addressed_to(user: User):
    """The invitations meant for `user`: by GitHub id when the invitation names one, else by
    login, else by e-mail (both as GitHub gave them at sign-in)."""
    mine = Invitation.github_id.is_null() & (Invitation.login == user.login.lower())
    if user.github_id is not None:
        mine |= Invitation.github_id == user.github_id
    if user.email:
        mine |= (
            Invitation.github_id.is_null()
            & Invitation.login.is_null()
            & (Invitation.email == user.email.lower())
        )
    return mine


def my_invitations(user_id: int):
    """The signed-in person's open invitations, with their organizations."""
    user = User.get_by_id(user_id)
    return (
        Invitation.select(Invitation, Organization)
        .join(Organization)
        .where(
            _addressed_to(user)
            & (Invitation.status == InvitationStatus.PENDING)
            & (Invitation.expires_at > utcnow())
        )
        .order_by(Invitation.created_at.desc(), Invitation.id.desc())
    )


def _my_invitation(user: User, invitation_id: int) -> Invitation:
    invitation = Invitation.get_or_none((Invitation.id == invitation_id) & _addressed_to(user))
    if invitation is None:
        raise NotFound("no such invitation")
    return invitation


def _still_open(invitation: Invitation) -> None:
    if invitation.status != InvitationStatus.PENDING:
        raise Conflict(f"this invitation was {str(invitation.status).lower()}")
    if invitation.expires_at <= utcnow():
        raise Conflict(
            f"this invitation expired at {invitation.expires_at.isoformat()}; ask for a new one"
        )


def _inviter_still_can(org: Organization, invitation: Invitation) -> None:
    """An invitation is worth what its sender may grant now: one from a person who left or
    was lowered below the role offered, or from a key that is revoked or lost its
    creator's standing, no longer holds."""
    role = Role(invitation.role)
    if invitation.invited_by_key_id is not None:
        key = ApiKey.get_or_none(ApiKey.id == invitation.invited_by_key_id)
        alive = key is not None and _alive(key) and lost_standing(key) is None
        sender = Role.ADMIN if alive and "admin" in key.scopes else None  # acts as an ADMIN
    else:
        sender = _current_role(org, invitation.invited_by_id)
    if sender is None or not _can_manage(sender, None, role):
        raise Conflict("whoever sent this invitation can no longer grant it; ask for a new one")


def accept_invitation(user_id: int, invitation_id: int) -> UserOrganization:
    """Become a member, with the role offered, within the plan's limit."""
    user = User.get_by_id(user_id)
    invitation = _my_invitation(user, invitation_id)
    with serialized():
        lock_row(Organization, invitation.organization_id)
        invitation = Invitation.get_by_id(invitation.id)  # as of the lock
        org = Organization.get_by_id(invitation.organization_id)
        _still_open(invitation)
        if (
            UserOrganization.select()
            .where((UserOrganization.organization == org) & (UserOrganization.user == user))
            .exists()
        ):
            raise Conflict(f"you are already a member of {org.slug}")
        _inviter_still_can(org, invitation)
        check_can_add(org, "members", accepting=True)
        role = Role(invitation.role)
        membership = UserOrganization.create(user=user, organization=org, role=role)
        invitation.status, invitation.responded_at = InvitationStatus.ACCEPTED, utcnow()
        invitation.accepted_by = user
        invitation.save()
        metadata = {"login": user.login, "role": str(role), "invitation_id": invitation.id}
        audit.record(
            "invitation.accepted",
            organization=org,
            actor_user=user.id,
            target_type="invitation",
            target_id=invitation.id,
            metadata=metadata,
        )
        audit.record(
            "member.added",
            organization=org,
            actor_user=user.id,
            target_type="user",
            target_id=user.id,
            metadata=metadata,
        )
    membership.user, membership.organization = user, org
    return membership


def decline_invitation(user_id: int, invitation_id: int) -> Invitation:
    user = User.get_by_id(user_id)
    with db.atomic():
        invitation = _my_invitation(user, invitation_id)
        _still_open(invitation)
        audit.changed(
            invitation,
            {"status": InvitationStatus.DECLINED, "responded_at": utcnow()},
            "invitation.declined",
            organization=invitation.organization_id,
            actor_user=user.id,
            target_type="invitation",
            metadata={"login": user.login},
        )
    return invitation


def _membership(org: Organization, user_id: int) -> UserOrganization:
    membership = (
        UserOrganization.select(UserOrganization, User)
        .join(User)
        .where((UserOrganization.organization == org) & (UserOrganization.user == user_id))
        .first()
    )
    if membership is None:
        raise NotFound("no such member")
    return membership


def _owner_count(org: Organization) -> int:
    return (
        UserOrganization.select()
        .where((UserOrganization.organization == org) & (UserOrganization.role == Role.OWNER))
        .count()
    )


def change_role(org: Organization, actor: Principal, user_id: int, role) -> UserOrganization:
    role = Role(role)
    with serialized():
        lock_row(Organization, org.id)
        membership = _membership(org, user_id)
        old = Role(membership.role)
        if old == role:
            return membership
        if not _can_manage(_actor_role(org, actor), old, role):
            raise Forbidden(f"your role cannot change a {old} to {role}")
        if old == Role.OWNER and _owner_count(org) == 1:
            raise Conflict("the last OWNER cannot be demoted; make someone else OWNER first")
        audit.changed(
            membership,
            {"role": role},
            "member.role_changed",
            organization=org,
            target_type="user",
            target_id=user_id,
            metadata={"from": str(old), "to": str(role)},
        )
        _settle_keys_of(org, user_id, role)
    return membership


def remove_member(org: Organization, actor: Principal, user_id: int) -> None:
    with serialized():
        lock_row(Organization, org.id)
        membership = _membership(org, user_id)
        role = Role(membership.role)
        leaving = actor.kind == "session" and actor.user_id == user_id
        if not leaving and not _can_manage(_actor_role(org, actor), role, None):
            raise Forbidden(f"your role cannot remove a {role}")
        if role == Role.OWNER and _owner_count(org) == 1:
            raise Conflict("the last OWNER cannot be removed; make someone else OWNER first")
        membership.delete_instance()
        audit.record(
            "member.removed",
            organization=org,
            target_type="user",
            target_id=user_id,
            metadata={"login": membership.user.login, "role": str(role), "left": leaving},
        )
        _settle_keys_of(org, user_id, None)


# API keys -----------------------------------------------------------------------------


def create_api_key(
    organization: Organization,
    name: str,
    scopes: list[str],
    *,
    actor: Principal | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned here once and never stored.

    `actor` is who asks: a signed-in person (the key is theirs, bounded by their current
    role), a key (the new key is its creator's, records the creating key, and gets no scope
    that key lacks or that creator's current role does not allow, nor a longer life), or
    None for the CLI (an organization key, see `ApiKey`)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        message = f"unknown scope(s): {', '.join(unknown)}" if unknown else "at least one scope"
        raise Invalid(message, {"scopes": [message]})
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("expires_at is in the past", {"expires_at": ["must be in the future"]})
    scopes = sorted(set(scopes))
    plaintext, prefix, key_hash = crypto.new_api_key()
    with db.atomic():
        origin = _key_origin(organization, actor, scopes, expires_at)
        key = ApiKey.create(
            organization=organization,
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            scopes=scopes,
            **origin,
        )
        audit.record(
            "api_key.created",
            organization=organization,
            target_type="api_key",
            target_id=key.id,
            actor_user=key.created_by_id,
            metadata={"name": name, "scopes": key.scopes, "prefix": prefix},
        )
    return key, plaintext


def _key_origin(org: Organization, actor: Principal | None, scopes, expires_at) -> dict:
    """The new key's creator, creating key and expiry, refusing any scope the actor cannot
    grant now (the creating key's current state and its creator's current role are read
    here: the caller's introspection answer may be a cached one). On PostgreSQL under a lock
    on the organization row, which membership changes take first too: a key made while its
    creator is being removed is then seen and revoked with the rest (and introspection
    refuses it whatever the order). NO KEY UPDATE: rows referencing the org still insert."""
    if actor is None:
        return {"organization_key": True, "expires_at": expires_at}
    lock_row(Organization, org.id)
    if actor.kind == "session":
        role = _current_role(org, actor.user_id)
        _check_grant(scopes, role, f"your role ({role or 'not a member'})")
        return {"created_by": actor.user_id, "expires_at": expires_at}
    creating = ApiKey.get_or_none((ApiKey.id == actor.key_id) & (ApiKey.organization == org))
    if creating is None or not _alive(creating):
        raise Unauthorized("invalid, expired or revoked token")
    # (The key route itself needs `admin`, which covers every scope; this holds whatever
    # the route asks.)
    lacking = [s for s in scopes if s not in creating.scopes and "admin" not in creating.scopes]
    if lacking:
        message = f"this key lacks scope(s) {', '.join(map(repr, lacking))}: it cannot grant them"
        raise Forbidden(message, {"scopes": [message]})
    if not creating.organization_key:
        role = _current_role(org, creating.created_by_id)
        role_now = role or "not a member"
        _check_grant(scopes, role, f"this key's creator's current role ({role_now})")
    lost = lost_standing(creating)
    if lost is not None:
        raise Forbidden(f"this key cannot create keys: {lost}", {"scopes": [lost]})
    if creating.expires_at is not None:
        if expires_at is not None and expires_at > creating.expires_at:
            message = f"must not be after this key's own expiry ({creating.expires_at.isoformat()})"
            raise Invalid(f"expires_at {message}", {"expires_at": [message]})
        expires_at = expires_at or creating.expires_at
    return {
        "created_by": creating.created_by_id,
        "created_by_key": creating.id,
        "organization_key": creating.organization_key,
        "expires_at": expires_at,
    }


def _current_role(org: Organization, user_id: int | None) -> Role | None:
    membership = UserOrganization.get_or_none(
        (UserOrganization.user == user_id) & (UserOrganization.organization == org)
    )
    return Role(membership.role) if membership else None


def _check_grant(scopes, role: Role | None, whose: str) -> None:
    beyond = scopes_beyond(role, scopes)
    if beyond:
        message = f"{whose} does not allow scope(s) {', '.join(map(repr, beyond))}"
        raise Forbidden(message, {"scopes": [message]})


def _alive(key: ApiKey) -> bool:
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > utcnow())


def lost_standing(key: ApiKey) -> str | None:
    """Why `key` no longer acts for anyone (None while it does): the key that created it is
    revoked or expired, or its creator is gone from the organization or holds a role below
    one of its scopes. An organization key has no creator to lose. The revocations in
    `_settle_keys_of` write this down; this check holds even when one was missed."""
    if key.created_by_key_id is not None:
        creating = ApiKey.get_or_none(ApiKey.id == key.created_by_key_id)
        if creating is None or not _alive(creating):
            return "the key that created it is revoked or expired"
    if key.organization_key:
        return None
    role = _current_role(key.organization_id, key.created_by_id)
    if role is None:
        return "its creator is no longer a member"
    beyond = scopes_beyond(role, key.scopes)
    if beyond:
        return f"its creator's role ({role}) does not allow scope(s) {', '.join(map(repr, beyond))}"
    return None


def _settle_keys_of(org: Organization, user_id: int, role: Role | None) -> None:
    """After a member's role changed to `role` or they left (`role` None), in the same
    transaction: revoke every live key they created (and the keys those made) that the new
    standing does not cover: all of them on removal; on a demotion, those with a scope the
    new role may not hold (revoked, not narrowed: a key's scopes are what it was issued
    with, and a half-working key fails in ways nobody reads). Each is audited as
    `api_key.revoked` with the reason."""
    keys = (
        ApiKey.select()
        .where(
            (ApiKey.organization == org)
            & (ApiKey.created_by == user_id)
            & ApiKey.revoked_at.is_null()
            & (ApiKey.organization_key == False)  # noqa: E712
        )
        .order_by(ApiKey.id)
    )
    for key in keys:
        if not _alive(key):
            continue
        if role is None:
            reason = {"reason": "creator_removed", "creator": user_id}
        elif beyond := scopes_beyond(role, key.scopes):
            reason = {
                "reason": "creator_role_changed",
                "creator": user_id,
                "role": str(role),
                "scopes_not_allowed": beyond,
            }
        else:
            continue
        _revoke(org, key, reason)


def _revoke(org: Organization, key: ApiKey, reason: dict) -> list[int]:
    """Revoke `key` and, with it, the keys it created (theirs in turn): one audit entry
    `api_key.revoked` each, with why. The conditional UPDATE audits a key once however many
    revoke it at the same time. Returns the ids revoked here."""
    done = (
        ApiKey.update(revoked_at=utcnow())
        .where((ApiKey.id == key.id) & ApiKey.revoked_at.is_null())
        .execute()
    )
    if not done:
        return []
    audit.record(
        "api_key.revoked",
        organization=org,
        target_type="api_key",
        target_id=key.id,
        metadata={"name": key.name, "prefix": key.prefix, **reason},
    )
    revoked = [key.id]
    for made in ApiKey.select().where(
        (ApiKey.created_by_key == key.id) & ApiKey.revoked_at.is_null()
    ):
        revoked += _revoke(org, made, {"reason": "creating_key_revoked", "creating_key": key.id})
    return revoked


def keys_of(org: Organization):
    return ApiKey.select().where(ApiKey.organization == org).order_by(ApiKey.created_at.desc())


def key_ids_created_by(org: Organization, user_id: int) -> list[int]:
    """Every key `user_id` created in `org`: those a change of their membership may have
    revoked, for accounts' own introspection cache to forget."""
    query = ApiKey.select(ApiKey.id).where(
        (ApiKey.organization == org) & (ApiKey.created_by == user_id)
    )
    return [key.id for key in query]


def revoke_api_key(org: Organization, key_id: int) -> list[int]:
    """Revoke one key (and the keys it created); revoking twice is harmless and audited
    once. Returns the ids revoked."""
    with db.atomic():
        key = ApiKey.get_or_none((ApiKey.id == key_id) & (ApiKey.organization == org))
        if key is None:
            raise NotFound("no such API key")
        return _revoke(org, key, {"reason": "requested"})


# Audit log ----------------------------------------------------------------------------


def audit_entries(org: Organization, *, action=None, actor=None, start=None, end=None):
    """Newest first. `actor` is a GitHub login or `key:<id>`."""
    query = AuditLog.select().where(AuditLog.organization == org)
    if action:
        query = query.where(AuditLog.action == action)
    if actor:
        if actor.startswith("key:") and actor[4:].isdigit():
            query = query.where(AuditLog.actor_api_key == int(actor[4:]))
        else:
            user = User.get_or_none(pw.fn.LOWER(User.login) == actor.lower())
            query = query.where(AuditLog.actor_user == (user.id if user else -1))
    if start:
        query = query.where(AuditLog.created_at >= start)
    if end:
        query = query.where(AuditLog.created_at <= end)
    return query.order_by(AuditLog.created_at.desc(), AuditLog.id.desc())


def new_oauth_state() -> str:
    return secrets.token_urlsafe(24)

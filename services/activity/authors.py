"""Commit authors by e-mail: whose a commit is when its payload names no username.

GitHub shows a commit's author e-mail together with a username when it knows the account
(a push commit's `author.username`, an API commit's top-level `author.login`). That
pairing makes the e-mail that user's in the organization: for that commit and for every
earlier and later commit with the same e-mail and no username of its own. The first
pairing of an e-mail re-attributes its earlier commits, and their days are recomputed
(the metrics service is told, as for any change). An e-mail GitHub never paired belongs
to a person who claimed it (an address GitHub verified for them, `user_emails`), else to
nobody: an unlinked contributor. A person may release an e-mail paired with them; its
commits then follow a claim of it, or nobody.

Who writes what: this service alone writes `author_emails` (the e-mails seen, their
pairing and their owner) and commits' authors; the accounts service writes people's
addresses and claims (`user_emails`) and tells this one which addresses changed (outbox
topic `user_emails.changed`), whose commits are then re-attributed here.

Concurrency (PostgreSQL): a batch holds a share lock on the rows of the e-mails it
attributes by until it commits, and pairing or re-owning an e-mail updates its row, so a
commit is never stored with an owner its e-mail no longer has. The claims of an address
(a never-seen one has no row to lock) are read under a shared advisory lock on it, which a
change of claims takes exclusively; both take the advisory locks before the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from services.activity.changes import Changes
from shared.messages import UserEmailsChanged
from shared.models import AuthorEmail, Commit, Repository, User, UserEmail, utcnow
from shared.sql import advisory_locks, distinct_from, insert_rows, is_postgres

TOPIC = UserEmailsChanged.topic  # accounts -> activity: a person's addresses or claims changed


class Owner(NamedTuple):
    """What an organization's commits with an e-mail and no username are attributed to."""

    login: str | None  # the username GitHub paired the e-mail with, if it did
    user: int | None  # the owner's user id; None: an unlinked contributor (or a bot)
    bot: bool  # GitHub paired it with a bot's login (and nobody owns it)


def is_bot_login(login: str | None) -> bool:
    return bool(login) and login.endswith("[bot]")


def _owner_of(row: AuthorEmail) -> Owner:
    return Owner(
        row.github_login, row.user_id, row.user_id is None and is_bot_login(row.github_login)
    )


def owners(pairs: Iterable[tuple[str, int | None]]) -> dict[tuple[str, int | None], int | None]:
    """The owner of each (e-mail, user GitHub paired it with): that user unless they released
    the address, else the earliest claim of it by a person GitHub verified it for."""
    pairs = set(pairs)
    emails = sorted({email for email, _ in pairs})
    released, claimant = set(), {}
    if emails:
        for user_id, email, linked, verified in (
            UserEmail.select(UserEmail.user, UserEmail.email, UserEmail.linked, UserEmail.verified)
            .where(UserEmail.email.in_(emails))
            .order_by(UserEmail.id)
            .tuples()
        ):
            if not linked:
                released.add((user_id, email))
            elif verified:
                claimant.setdefault(email, user_id)
    return {
        (email, paired): paired
        if paired is not None and (paired, email) not in released
        else claimant.get(email)
        for email, paired in pairs
    }


def _lock_addresses(emails: Iterable[str], *, shared: bool) -> None:
    """Until the transaction ends: reading the claims of addresses (shared) against changing
    them (exclusive)."""
    advisory_locks("author_email", emails, exclusive=not shared)


def _stored(organization_id: int, emails: list[str]) -> dict[str, AuthorEmail]:
    """The organization's rows of these e-mails, share-locked (PostgreSQL) so that their
    owner cannot change before the caller's transaction ends."""
    query = AuthorEmail.select(
        AuthorEmail.id, AuthorEmail.email, AuthorEmail.github_login, AuthorEmail.user
    ).where((AuthorEmail.organization == organization_id) & AuthorEmail.email.in_(emails))
    if is_postgres():
        query = query.order_by(AuthorEmail.email).for_update("FOR SHARE")
    return {row.email: row for row in query}


def _paired_user(login: str, user) -> int | None:
    """The user GitHub's username stands for; none for a bot."""
    if user is None or is_bot_login(login) or getattr(user, "is_bot", False):
        return None
    return user.id if isinstance(user, User) else int(user)


def attribute(repo: Repository, rows: list[dict], changes, batch=None) -> None:
    """Before a push's commits (`rows`, as handle_push builds them) are stored: record the
    e-mails they show, pair each one shown with a username for the first time (its earlier
    commits, stored or pending in `batch`, are re-attributed and their days noted in
    `changes`), and give every commit without a username its e-mail's owner."""
    org_id = repo.organization_id
    shown: dict[str, tuple[str, object] | None] = {}
    for row in rows:
        email = row.get("author_email")
        if not email:
            continue
        if row.get("author_login") and shown.get(email) is None:
            shown[email] = (row["author_login"], row.get("author"))
        else:
            shown.setdefault(email, None)
    if not shown:
        return
    known: dict[tuple[int, str], Owner] = batch.author_emails if batch is not None else {}
    unknown = sorted(email for email in shown if (org_id, email) not in known)
    if unknown:
        # Claims of these addresses cannot change until this transaction ends (taken before
        # their rows, in the order `reconsider` takes them).
        _lock_addresses(unknown, shared=True)
        known.update(
            {(org_id, email): owner for email, owner in _load(org_id, unknown, shown).items()}
        )
    for email, seen in sorted(shown.items()):
        if seen is not None and known[(org_id, email)].login is None:
            known[(org_id, email)] = _pair(org_id, email, seen, changes, batch)
    for row in rows:
        if row.get("author_email") and not row.get("author_login"):
            owner = known[(org_id, row["author_email"])]
            row["author"], row["author_is_bot"] = owner.user, owner.bot


def _load(organization_id: int, emails: list[str], shown: dict) -> dict[str, Owner]:
    """The owners of these e-mails; those never seen in the organization are recorded (with
    the pairing the push shows, if it shows one)."""
    found = _stored(organization_id, emails)
    missing = [email for email in emails if email not in found]
    if missing:
        paired = {email: _paired_user(*shown[email]) if shown[email] else None for email in missing}
        owner = owners(paired.items())
        now = utcnow()
        insert_rows(
            AuthorEmail,
            [
                {
                    "organization": organization_id,
                    "email": email,
                    "github_login": shown[email][0] if shown[email] else None,
                    "paired_user": paired[email],
                    "user": owner[(email, paired[email])],
                    "first_seen_at": now,
                    "paired_at": now if shown[email] else None,
                    "updated_at": now,
                }
                for email in missing
            ],
            ignore=True,  # a concurrent batch recorded it first: its row is read below
        )
        found.update(_stored(organization_id, missing))
    return {email: _owner_of(row) for email, row in found.items()}


def _pair(organization_id: int, email: str, seen: tuple, changes, batch) -> Owner:
    """GitHub shows an e-mail seen before without a username with one now: the pairing is
    recorded and the e-mail's commits follow its (new) owner."""
    login, user = seen
    paired = _paired_user(login, user)
    owner = owners([(email, paired)])[(email, paired)]
    now = utcnow()
    (
        AuthorEmail.update(
            github_login=login, paired_user=paired, user=owner, paired_at=now, updated_at=now
        )
        .where(
            (AuthorEmail.organization == organization_id)
            & (AuthorEmail.email == email)
            & AuthorEmail.github_login.is_null()
        )
        .execute()
    )
    # Read back: the pairing this transaction made, or (SQLite, no share lock) another's.
    result = _owner_of(_stored(organization_id, [email])[email])
    reattribute(organization_id, email, result, changes, batch)
    return result


def reattribute(organization_id: int, email: str, owner: Owner, changes, batch=None) -> int:
    """The organization's commits with `email` and no username of their own follow `owner`
    (stored ones, and those pending in `batch`); the days of those that changed are noted
    in `changes`. Returns how many stored commits changed."""
    where = (
        (Commit.organization == organization_id)
        & (Commit.author_email == email)
        & Commit.author_login.is_null()
        & (distinct_from(Commit.author, owner.user) | (Commit.author_is_bot != owner.bot))
    )
    moved = list(Commit.select(Commit.repository, Commit.authored_at).where(where).tuples())
    if moved:
        Commit.update(author=owner.user, author_is_bot=owner.bot).where(where).execute()
        repos = {
            repo.id: repo
            for repo in Repository.select().where(
                Repository.id.in_(sorted({repo_id for repo_id, _ in moved}))
            )
        }
        for repo_id, authored_at in moved:
            changes.touch(repos[repo_id], authored_at)
    if batch is not None:
        for row in batch.commits:
            if (
                row["organization"] == organization_id
                and row.get("author_email") == email
                and not row.get("author_login")
            ):
                row["author"], row["author_is_bot"] = owner.user, owner.bot
    return len(moved)


# People's claims (from the accounts service) ---------------------------------------------


def reconsider(emails: Iterable[str], changes) -> None:
    """Addresses whose claims changed: each organization's row of them gets its owner again
    and the commits follow it (their days noted in `changes`)."""
    emails = sorted({email.lower() for email in emails})
    if not emails:
        return
    _lock_addresses(emails, shared=False)
    query = (
        AuthorEmail.select()
        .where(AuthorEmail.email.in_(emails))
        .order_by(AuthorEmail.organization, AuthorEmail.email)
    )
    if is_postgres():
        query = query.for_update()
    rows = list(query)
    owner = owners((row.email, row.paired_user_id) for row in rows)
    now = utcnow()
    for row in rows:
        new = owner[(row.email, row.paired_user_id)]
        if new != row.user_id:
            AuthorEmail.update(user=new, updated_at=now).where(AuthorEmail.id == row.id).execute()
            row.user_id = new
        reattribute(row.organization_id, row.email, _owner_of(row), changes)


def on_user_emails_changed(payload: dict, message_id: str) -> None:
    """Inbox handler for `user_emails.changed` {user_id, emails}: a person's addresses or
    claims changed (accounts); their commits are re-attributed and the metrics service is
    told the days that changed."""
    emails = list(UserEmailsChanged.from_payload(payload).emails)
    changes = Changes()
    reconsider(emails, changes)
    changes.publish()

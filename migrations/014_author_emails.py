"""Migration 014_author_emails (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

import datetime as dt
from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


# The events worker stores commit e-mails lowercased; rows written otherwise (by hand, by a
# test) are brought in line, so that an e-mail's commits are found by plain equality.
LOWERCASE_COMMIT_EMAILS = """
UPDATE commits SET author_email = LOWER(author_email)
WHERE author_email IS NOT NULL AND author_email <> LOWER(author_email)
"""

# Every e-mail seen in an organization's commits.
SEEN_EMAILS = """
INSERT INTO author_emails (organization_id, email, first_seen_at, updated_at)
SELECT organization_id, author_email, MIN(created_at), {now}
FROM commits WHERE author_email IS NOT NULL AND author_email <> ''
GROUP BY organization_id, author_email
"""

# The first commit (by author date) that showed the e-mail with a username: its login, and
# its user (for a human). Before this migration a commit's login may also have come from a
# signed-in person's e-mail (whose address GitHub verified for them): that counts too.
FIRST_SHOWN = """
SELECT c.{column} FROM commits c
WHERE c.organization_id = author_emails.organization_id AND c.author_email = author_emails.email
  AND c.author_login IS NOT NULL
ORDER BY c.authored_at, c.id LIMIT 1
"""
PAIRINGS = f"""
UPDATE author_emails SET
    github_login = ({FIRST_SHOWN.format(column="author_login")}),
    paired_user_id = ({FIRST_SHOWN.format(column="author_id")}),
    paired_at = ({FIRST_SHOWN.format(column="created_at")})
"""
HUMAN_PAIRINGS_ONLY = """
UPDATE author_emails SET paired_user_id = NULL
WHERE paired_user_id IN (SELECT id FROM users WHERE is_bot) OR github_login LIKE {bot}
"""

# Today's rule carried over: a signed-in person's e-mail (from GitHub at sign-in) is theirs.
SIGNED_IN_EMAILS = """
INSERT INTO user_emails (user_id, email, verified, linked, created_at, updated_at)
SELECT id, LOWER(email), {yes}, {yes}, {now}, {now} FROM users
WHERE email IS NOT NULL AND email <> ''
"""

# The owner (services/activity/authors.py `owners`): the paired user, else the earliest
# claim of a verified address.
OWNERS = """
UPDATE author_emails SET user_id = COALESCE(paired_user_id, (
    SELECT ue.user_id FROM user_emails ue
    WHERE ue.email = author_emails.email AND ue.linked AND ue.verified
    ORDER BY ue.id LIMIT 1))
"""

# Commits without a username of their own follow their e-mail's owner; those whose e-mail
# GitHub showed with a bot's login are a bot's.
COMMITS_FOLLOW_OWNERS = """
UPDATE commits SET author_id = (
    SELECT ae.user_id FROM author_emails ae
    WHERE ae.organization_id = commits.organization_id AND ae.email = commits.author_email)
WHERE author_id IS NULL AND author_login IS NULL AND author_email IS NOT NULL
  AND EXISTS (
    SELECT 1 FROM author_emails ae
    WHERE ae.organization_id = commits.organization_id AND ae.email = commits.author_email
      AND ae.user_id IS NOT NULL)
"""
BOT_EMAILS = """
UPDATE commits SET author_is_bot = {yes}
WHERE author_id IS NULL AND author_login IS NULL AND author_email IS NOT NULL
  AND EXISTS (
    SELECT 1 FROM author_emails ae
    WHERE ae.organization_id = commits.organization_id AND ae.email = commits.author_email
      AND ae.github_login LIKE {bot})
"""


def _target(database):
    return getattr(database, "obj", None) or database


def fill(database) -> None:
    """The e-mails of the commits already stored, paired as GitHub showed them, the
    signed-in people's e-mails as their claims, and the commits re-attributed by them."""
    param = database.param
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    yes = (True,)
    database.execute_sql(LOWERCASE_COMMIT_EMAILS)
    database.execute_sql(SEEN_EMAILS.format(now=param), (now,))
    database.execute_sql(PAIRINGS)
    bot = ("%[bot]",)  # a parameter: psycopg2 reads a literal % as a placeholder
    database.execute_sql(HUMAN_PAIRINGS_ONLY.format(bot=param), bot)
    database.execute_sql(SIGNED_IN_EMAILS.format(yes=param, now=param), yes * 2 + (now,) * 2)
    database.execute_sql(OWNERS)
    database.execute_sql(COMMITS_FOLLOW_OWNERS)
    database.execute_sql(BOT_EMAILS.format(yes=param, bot=param), yes + bot)


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Commit authors by e-mail: the e-mails GitHub showed with a username (author_emails,
    written by the activity service) and people's own e-mails and claims (user_emails,
    written by the accounts service). Existing commits are filled in: their e-mails,
    paired by the first commit that showed each with a username; the signed-in people's
    e-mails as their claims; commits without a username re-attributed by them. Run
    `devmetrics metrics recompute --org SLUG` afterwards for the figures of past days."""

    migrator.add_index('commits', 'organization', 'author_email', unique=False)

    @migrator.create_model
    class AuthorEmail(pw.Model):
        id = pw.AutoField()
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        email = pw.CharField(max_length=320)
        github_login = pw.CharField(max_length=100, null=True)
        paired_user = pw.ForeignKeyField(column_name='paired_user_id', field='id', model=migrator.orm['users'], null=True, on_delete='SET NULL')
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], null=True, on_delete='SET NULL')
        first_seen_at = pw.DateTimeField()
        paired_at = pw.DateTimeField(null=True)
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False
            table_name = "author_emails"
            indexes = [(('organization', 'email'), True), (('email',), False)]

    @migrator.create_model
    class UserEmail(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', index=False, model=migrator.orm['users'], on_delete='CASCADE')
        email = pw.CharField(max_length=320)
        verified = pw.BooleanField(default=False)
        linked = pw.BooleanField(default=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False
            table_name = "user_emails"
            indexes = [(('user', 'email'), True), (('email',), False)]

    migrator.run(fill, _target(database))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop both tables and the index (new tables only: nothing references them, no table
    is rebuilt). Commits keep the authors they were given."""

    migrator.remove_model('user_emails')

    migrator.remove_model('author_emails')

    migrator.drop_index('commits', 'organization', 'author_email')

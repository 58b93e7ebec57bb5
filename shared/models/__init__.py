"""All DevMetrics tables. `MODELS` is the list migrations are generated from.

Index policy: every index is chosen for a query the services run. A foreign key whose
column already leads a composite index is declared `index=False`, since that composite
index serves both the lookups and the ON DELETE checks.
"""

from shared.models.activity import (
    AuthorEmail,
    Commit,
    Deployment,
    Event,
    EventDelivery,
    Incident,
    Issue,
    IssueClosure,
    PullRequest,
    PullRequestCommit,
    Review,
    by_another_human,
)
from shared.models.base import BaseModel, utcnow
from shared.models.core import Invitation, Organization, User, UserEmail, UserOrganization
from shared.models.enums import (
    Channel,
    DeliveryStatus,
    DeploymentState,
    EventStatus,
    IncidentKind,
    InvitationStatus,
    IssueState,
    JobStatus,
    Plan,
    PullRequestState,
    ReviewKind,
    RiskLevel,
    Role,
    Sensitivity,
)
from shared.models.jobs import InboxMessage, Job
from shared.models.metrics import AIReview, DeveloperMetric, ProductionDeployment, TeamMetric
from shared.models.notifications import NotificationLog, NotificationRule
from shared.models.repository import Repository, RepositoryStats
from shared.models.security import ApiKey, AuditLog, LoginLink, Session

# Concrete models only, in dependency order (the migration auto-diff's source of truth).
MODELS = [
    User,
    Organization,
    UserOrganization,
    Repository,
    RepositoryStats,
    Event,
    Commit,
    PullRequest,
    Issue,
    DeveloperMetric,
    TeamMetric,
    AIReview,
    NotificationRule,
    NotificationLog,
    ApiKey,
    AuditLog,
]
# Infrastructure tables beyond the 16 of the product's schema.
MODELS += [Job, InboxMessage, Session, Review, Deployment, Incident]
MODELS += [PullRequestCommit, IssueClosure, ProductionDeployment, LoginLink]
MODELS += [EventDelivery, Invitation]
MODELS += [UserEmail, AuthorEmail]

__all__ = [m.__name__ for m in MODELS] + [
    "MODELS",
    "by_another_human",
    "BaseModel",
    "utcnow",
    "Channel",
    "DeliveryStatus",
    "EventStatus",
    "IssueState",
    "JobStatus",
    "DeploymentState",
    "ReviewKind",
    "IncidentKind",
    "InvitationStatus",
    "Plan",
    "PullRequestState",
    "RiskLevel",
    "Role",
    "Sensitivity",
]

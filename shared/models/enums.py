"""The fixed vocabularies stored in enum-like columns."""

from enum import StrEnum


class Plan(StrEnum):
    FREE = "FREE"
    PRO = "PRO"
    ENTERPRISE = "ENTERPRISE"


class Role(StrEnum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"
    VIEWER = "VIEWER"


class InvitationStatus(StrEnum):
    PENDING = "PENDING"  # until expires_at; then it can no longer be accepted
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    REVOKED = "REVOKED"  # withdrawn by the organization


class Sensitivity(StrEnum):
    PUBLIC = "PUBLIC"
    INTERNAL = "INTERNAL"
    CONFIDENTIAL = "CONFIDENTIAL"
    RESTRICTED = "RESTRICTED"


class EventStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    FAILED = "FAILED"  # will be retried
    DEAD = "DEAD"  # gave up after the maximum attempts
    SKIPPED = "SKIPPED"  # an event type the product does not use


class PullRequestState(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    MERGED = "MERGED"


class IssueState(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class RiskLevel(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class Channel(StrEnum):
    SLACK = "SLACK"
    WEBHOOK = "WEBHOOK"
    EMAIL = "EMAIL"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    SENDING = "SENDING"  # leased by a delivery worker (picked up again if it dies)
    SENT = "SENT"
    FAILED = "FAILED"
    DEAD = "DEAD"
    SUPPRESSED = "SUPPRESSED"  # matched, but within the rule's cooldown


class JobStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"  # claimed by a worker until locked_until
    DONE = "DONE"
    DEAD = "DEAD"  # failed max_attempts times, kept for inspection


class ReviewKind(StrEnum):
    REVIEW = "REVIEW"  # a submitted review (approve, request changes, comment)
    REVIEW_COMMENT = "REVIEW_COMMENT"  # a comment in a review thread on the diff
    ISSUE_COMMENT = "ISSUE_COMMENT"  # a comment in the pull request's conversation


class DeploymentState(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    ERROR = "ERROR"
    INACTIVE = "INACTIVE"


class IncidentKind(StrEnum):
    LABELED_ISSUE = "LABELED_ISSUE"  # an issue carrying the incident label
    FAILED_DEPLOYMENT = "FAILED_DEPLOYMENT"  # a failed production deployment
    REVERT = "REVERT"  # a revert pull request

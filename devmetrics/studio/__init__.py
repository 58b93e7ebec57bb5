"""Studio: a password-protected visual browser over every table (Flask-Admin, peewee backend)."""

from devmetrics.studio.app import create_studio_app

__all__ = ["create_studio_app"]

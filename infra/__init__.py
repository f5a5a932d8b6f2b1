"""Pulumi components of the issue-titles platform."""

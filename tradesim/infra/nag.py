"""Acknowledging cdk-nag AwsSolutions findings: each at the construct it concerns, with its reason, where that
construct is built."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def accept(scope: IConstruct, reasons: dict[str, str]) -> None:
    """Acknowledge these findings on `scope` and everything under it."""
    for rule, reason in reasons.items():
        Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


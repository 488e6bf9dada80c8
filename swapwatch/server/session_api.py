"""A session's policy from the body of `POST /v1/sessions`."""

from __future__ import annotations

from swapwatch.errors import ConfigError
from swapwatch.kyc.challenges import ChallengePolicy
from swapwatch.kyc.session import SessionPolicy
from swapwatch.server.api_models import NewSession


def new_session_policy(body: NewSession) -> SessionPolicy:
    """The policy a request asks for; one `ConfigError` naming the field if it cannot be."""
    try:
        challenges = ChallengePolicy(
            count=body.count,
            kinds=tuple(dict.fromkeys(body.kinds)),
            window_s=body.window_s,
            turn_deg=body.turn_deg,
        )
        return SessionPolicy(
            challenges,
            max_duration_s=body.max_duration_s,
            allowed_camera_labels=tuple(body.allowed_camera_labels),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

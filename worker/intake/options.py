"""The intake's own options: ``CIO_INTAKE_*`` variables (``cio-fleet intake`` sets them from its flags)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.intake.limits import BODY_TIMEOUT_S, HEADER_TIMEOUT_S


class IntakeOptions(BaseSettings):
    """Timeouts against slow clients."""

    model_config = SettingsConfigDict(env_prefix="CIO_INTAKE_", extra="ignore")

    #: A request body that takes longer is answered 408.
    body_timeout_s: float = Field(default=BODY_TIMEOUT_S, gt=0)
    #: A connection whose request headers take longer is closed (``cio-fleet intake`` only).
    header_timeout_s: float = Field(default=HEADER_TIMEOUT_S, gt=0)

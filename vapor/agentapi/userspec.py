"""What a client may ask of a host's Linux accounts, checked strictly before useradd or chpasswd run.

The request bodies of ``POST /users`` and ``POST /users/{username}/reset-password``
(as the contract spells them: ``groups`` is one comma-separated string) and the
grammar of account and group names. The gateway validates with these models
(so the OpenAPI document shows them) and the agent validates again, then checks
what only the host knows (the groups exist, the account does or does not).

Names follow the portable useradd rule, lower case, never starting with ``-``,
so nothing a client sends can be read as an option. Passwords never reach a
command line: the agent writes them to chpasswd's standard input, one line,
which is why they may not hold a newline (or NUL, or a carriage return).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"
NAME_RE = re.compile(NAME_PATTERN)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_GROUPS = 64
FIRST_HUMAN_UID = 1000  # accounts below are the system's own
NOBODY = "nobody"


def check_name(value: str, what: str = "username") -> str:
    """``value`` if it is a valid account or group name; ValueError naming ``what`` otherwise."""
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{what} {value[:64]!r} is not a valid name: 1 to 32 of a-z, 0-9, '_' and '-', "
            "starting with a letter or '_'"
        )
    return value


def split_groups(value: str) -> list[str]:
    """The group names of a comma-separated list (empty: none); ValueError for a bad one."""
    if value.strip() == "":
        return []
    names = [part.strip() for part in value.split(",")]
    if len(names) > MAX_GROUPS:
        raise ValueError(f"at most {MAX_GROUPS} groups")
    return list(dict.fromkeys(check_name(name, "group") for name in names))


def check_password(value: str) -> str:
    """``value`` if chpasswd can take it as one line; ValueError otherwise (never quoting it)."""
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise ValueError(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    if any(c in value for c in "\n\r\x00"):
        raise ValueError("password may not contain a newline, carriage return or NUL character")
    return value


class CreateUserRequest(BaseModel):
    """A new Linux account on the host, with a home directory and /bin/bash."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(
        min_length=1, max_length=32, pattern=NAME_PATTERN, description="Account name.", examples=["newuser"]
    )
    password: str = Field(
        min_length=MIN_PASSWORD,
        max_length=MAX_PASSWORD,
        description="Initial password (8 to 1024 characters, no newline or NUL). Never logged.",
        examples=["securepassword"],
    )
    groups: str = Field(
        default="",
        max_length=4096,
        description="Supplementary groups, comma-separated; each must exist on the host.",
        examples=["wheel,docker"],
    )

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return check_password(value)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: str) -> str:
        return ",".join(split_groups(value))

    def group_list(self) -> list[str]:
        """The supplementary groups, as names."""
        return split_groups(self.groups)


class ResetPasswordRequest(BaseModel):
    """A new password for an existing account."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(
        min_length=MIN_PASSWORD,
        max_length=MAX_PASSWORD,
        description="New password (8 to 1024 characters, no newline or NUL). Never logged.",
        examples=["newSecurePassword123"],
    )

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return check_password(value)

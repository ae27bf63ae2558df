"""What a refresh learns of an account (vapor.hostaccounts.standing), for real accounts of this machine and PAM.

Each test makes its own user (tests/support/pam.py) and a PAM service of its
own with pam_unix, and changes only that user.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pam import LinuxUser, linux_accounts, pam_service
from vapor import hostaccounts


@pytest.fixture
def service() -> Iterator[str]:
    with pam_service() as name:
        yield name


@pytest.fixture
def user() -> Iterator[LinuxUser]:
    with linux_accounts() as accounts:
        yield accounts.user("acct")


def test_an_account_in_good_standing(service: str, user: LinuxUser) -> None:
    assert hostaccounts.standing(service, user.name) == {"groups": [user.name], "refused": None}


def test_no_such_user_has_no_standing(service: str) -> None:
    assert hostaccounts.standing(service, "no-such-user-vapor") is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (["usermod", "-L"], "the password is locked"),
        (["passwd", "-l"], "the password is locked"),
        (["chage", "-E", "0"], "User account has expired"),
        (["chage", "-d", "0"], "new one required"),
    ],
)
def test_what_a_login_would_refuse_a_refresh_learns(
    service: str, user: LinuxUser, change: list[str], reason: str
) -> None:
    subprocess.run([*change, user.name], check=True, capture_output=True)
    found = hostaccounts.standing(service, user.name)
    assert found is not None and reason in str(found["refused"])
    assert hostaccounts.verify(service, user.name, user.password) is None  # the login is refused as well


def test_a_shadow_file_that_cannot_be_read_refuses(service: str, user: LinuxUser, tmp_path: Path) -> None:
    found = hostaccounts.standing(service, user.name, shadow=tmp_path)  # a folder: read_text fails
    assert found is not None and "cannot read" in str(found["refused"])


def test_the_lock_is_read_for_that_user_only(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("alice:!$y$j9T$x:19000:0:99999:7:::\nalicia:$y$j9T$y:19000:0:99999:7:::\n")
    assert hostaccounts.password_locked("alice", shadow)
    assert not hostaccounts.password_locked("alicia", shadow)
    assert not hostaccounts.password_locked("ali", shadow)  # a prefix of a name is not that name
    assert not hostaccounts.password_locked("bob", shadow)  # no entry: not locked (its accounts live elsewhere)

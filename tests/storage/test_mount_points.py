"""The agent's own mount-point checks (the API server's CEL rules and the gateway check too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vapor.agent.host.mountops import MountRefused, check_mount_point


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/", "system directory"),
        ("/etc", "system directory"),
        ("/usr/local/data", "system directory"),
        ("/proc/x", "system directory"),
        ("/root/data", "system directory"),
        ("/home", "system directory"),
        ("/var/spool/cron/crontabs", "system directory"),
        ("/var/lib/vapor/images", "system directory"),
        ("relative/dir", "absolute"),
        ("/mnt/a/../b", "absolute"),
    ],
)
def test_refused(path: str, needle: str) -> None:
    with pytest.raises(MountRefused, match=needle):
        check_mount_point(path)


def test_a_path_through_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(MountRefused, match="symlink"):
        check_mount_point(str(tmp_path / "link" / "data"))
    check_mount_point(str(tmp_path / "real" / "data"))  # a plain path is fine


def test_a_folder_inside_home_is_fine() -> None:
    check_mount_point("/home/vtest-nobody/data")

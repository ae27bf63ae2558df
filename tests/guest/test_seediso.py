"""The NoCloud seed ISO as cloud-init reads it: volume id cidata, the documents under their own names."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib
import pytest

from vapor.agent.host import seediso
from vapor.agent.host.seediso import write_seed_iso

META = "instance-id: 6f1c\nlocal-hostname: web-1\n"
USER = (
    "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3Nza test@example\n"
    "write_files:\n  - path: /x\n    content: é\n"
)
NETWORK = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"


def _read(path: Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """The volume id, and the files by Rock Ridge name and by Joliet name."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        volume = iso.pvd.volume_identifier.decode().strip()
        by_rr, by_joliet = {}, {}
        for child in iso.list_children(iso_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            by_rr[name] = out.getvalue().decode()
        for child in iso.list_children(joliet_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.file_identifier().decode("utf-16-be")
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, joliet_path=f"/{name}")
            by_joliet[name] = out.getvalue().decode()
        return volume, by_rr, by_joliet
    finally:
        iso.close()


def test_the_seed_has_volume_id_cidata_and_the_three_documents(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    write_seed_iso(seed, META, USER, NETWORK)
    volume, by_rr, by_joliet = _read(seed)
    assert volume == "cidata"
    expected = {"meta-data": META, "user-data": USER, "network-config": NETWORK}
    assert by_rr == expected
    assert by_joliet == expected
    assert seed.stat().st_mode & 0o777 == 0o644


def test_without_network_config_the_seed_has_no_such_file(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    write_seed_iso(seed, META, USER)
    _, by_rr, _ = _read(seed)
    assert by_rr == {"meta-data": META, "user-data": USER}


def test_rewriting_replaces_the_seed_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    write_seed_iso(seed, META, USER, NETWORK)
    write_seed_iso(seed, META.replace("web-1", "web-2"), "#cloud-config\n{}\n")
    _, by_rr, _ = _read(seed)
    assert by_rr == {"meta-data": META.replace("web-1", "web-2"), "user-data": "#cloud-config\n{}\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.iso"]


def test_a_write_that_fails_half_way_keeps_the_old_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure before the rename (here: the disk refuses the flush) leaves the old seed and no temporary file."""
    seed = tmp_path / "seed.iso"
    write_seed_iso(seed, META, USER)
    before = seed.read_bytes()

    def refuse(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(seediso.os, "fsync", refuse)
    with pytest.raises(OSError, match="Input/output"):
        write_seed_iso(seed, META.replace("web-1", "web-2"), USER)
    assert seed.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.iso"]

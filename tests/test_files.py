"""Tests for stylelib.files: atomic writes with unique temporary names, and same-file checks."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stylelib.files import same_file, save_safetensors, sha256_of, write_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def half_then_fail(temporary: Path) -> None:
        temporary.write_bytes(b"ne")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_ctrl_c_during_a_write_loses_nothing(tmp_path: Path) -> None:
    target = tmp_path / "weights.safetensors"
    save_safetensors({"w": torch.ones(2)}, target, {})

    def interrupted(temporary: Path) -> None:
        temporary.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted)
    assert torch.equal(load_file(str(target))["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_two_writers_of_one_path_never_share_a_temporary_file(tmp_path: Path) -> None:
    """Both writers hold their temporary files open at once; each gets its own, and the file
    left behind is one complete version."""
    target = tmp_path / "out.bin"
    both_open = threading.Barrier(2)
    names: list[Path] = []

    def writer(payload: bytes) -> None:
        def write(temporary: Path) -> None:
            names.append(temporary)
            temporary.write_bytes(payload)
            both_open.wait(timeout=10)

        write_atomically(target, write)

    threads = [threading.Thread(target=writer, args=(bytes([n]) * 1000,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 2 and all(n.parent == tmp_path for n in names)
    assert target.read_bytes() in (b"\x01" * 1000, b"\x02" * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_same_file_sees_through_symlinks_and_hard_links(tmp_path: Path) -> None:
    original = tmp_path / "photo.png"
    original.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(original)
    (tmp_path / "hard.png").hardlink_to(original)
    (tmp_path / "copy.png").write_bytes(b"x")
    assert same_file(original, tmp_path / "link.png")
    assert same_file(original, tmp_path / "hard.png")
    assert same_file(original, tmp_path / "sub" / ".." / "photo.png")
    assert not same_file(original, tmp_path / "copy.png")
    assert not same_file(original, tmp_path / "missing.png")


def test_sha256_of_reads_past_one_block_and_sees_one_changed_byte(tmp_path: Path) -> None:
    data = bytearray(torch.randint(0, 256, ((1 << 20) + 7,), dtype=torch.uint8).numpy().tobytes())
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    first = sha256_of(path)
    assert first == hashlib.sha256(data).hexdigest()
    data[-1] ^= 1
    path.write_bytes(data)
    assert sha256_of(path) != first
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()

"""Tests for stylelib.profiles: choosing a profile and a device, seeding, the setup line."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from stylelib import profiles
from stylelib.profiles import PROFILES, device_name, get_profile, pick_device, setup


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI exports STYLELIB_PROFILE=quick; each test sets what it needs itself."""
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    monkeypatch.delenv(profiles.DEVICE_ENV, raising=False)


@pytest.fixture
def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_profile_by_name() -> None:
    quick = get_profile("quick")
    assert quick.name == "quick" and quick is PROFILES["quick"]
    assert get_profile("full").name == "full"


def test_profile_from_environment_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_profile().name == "book"
    monkeypatch.setenv(profiles.PROFILE_ENV, "quick")
    assert get_profile().name == "quick"
    assert get_profile("full").name == "full"  # the argument wins over the variable


def test_unknown_profile_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    choices = r"Unknown profile 'huge': choose one of quick, book, full"
    with pytest.raises(ValueError, match=choices):
        get_profile("huge")
    monkeypatch.setenv(profiles.PROFILE_ENV, "fast")
    with pytest.raises(ValueError, match=r"Unknown profile 'fast'.*\$STYLELIB_PROFILE"):
        get_profile()


def test_profiles_grow_from_quick_to_full() -> None:
    quick, book, full = (PROFILES[n] for n in ("quick", "book", "full"))
    for field in ("size", "steps", "large_size", "texture_size", "train_steps", "train_size",
                  "gan_steps", "denoise_steps"):
        assert getattr(quick, field) < getattr(book, field) < getattr(full, field), field
    assert quick.gan_crops < book.gan_crops <= full.gan_crops
    for profile in PROFILES.values():
        assert profile.size >= 16 and profile.texture_size >= 16  # the backbone's minimum
        assert profile.large_size > profile.size
        assert profile.frames >= 2 and profile.description


def test_pick_device_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(profiles.DEVICE_ENV, "cpu")
    assert pick_device() == torch.device("cpu")  # the variable wins over an available GPU


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_accelerator_requested_where_there_is_none(no_accelerator: None, name: str) -> None:
    message = rf"Device '{name}' \(from --device/argument\) is not available on this machine: "
    with pytest.raises(ValueError, match=message + r"use cpu\.$"):
        pick_device(name)


def test_cuda_from_environment_without_cuda(
    no_accelerator: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(profiles.DEVICE_ENV, "cuda")
    with pytest.raises(ValueError, match=r"'cuda' \(from \$STYLELIB_DEVICE\) is not available"):
        pick_device()


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu0", ""])
def test_unknown_device_names_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(profiles.DEVICE_ENV, name or "nonsense")
    with pytest.raises(ValueError, match=r"Unknown device .* use cpu, cuda, cuda:N or mps"):
        pick_device()


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"'cuda:3' .* does not exist: this machine has 1"):
        pick_device("cuda:3")


def test_automatic_device(no_accelerator: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_setup_prints_and_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    session = setup("quick", "cpu", seed=3)
    first = (torch.rand(4), random.random(), np.random.rand())
    again = setup("quick", "cpu", seed=3)
    second = (torch.rand(4), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0])
    assert first[1:] == second[1:]

    setup("quick", "cpu", seed=4)
    assert not torch.equal(torch.rand(4), first[0])

    assert session == again
    assert session.profile is PROFILES["quick"] and session.device == torch.device("cpu")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("profile=quick (CI and smoke tests")
    assert "device=cpu, seed=3, torch " in lines[0]
    assert "seed=4" in lines[2]


def test_setup_picks_the_full_profile_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Colab GPU runtime gets paper-like settings unless the reader chose a profile."""
    monkeypatch.delenv("STYLELIB_PROFILE", raising=False)
    monkeypatch.delenv("STYLELIB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)
    assert setup().profile.name == "full"
    assert setup(device="cpu").profile.name == "book"
    monkeypatch.setenv("STYLELIB_PROFILE", "quick")
    assert setup().profile.name == "quick"


def test_device_name_says_how_many_threads_the_cpu_uses() -> None:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert device_name(torch.device("cpu")).endswith(", 1 thread)")
        torch.set_num_threads(2)
        assert device_name(torch.device("cpu")).endswith(", 2 threads)")
    finally:
        torch.set_num_threads(previous)

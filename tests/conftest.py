"""Shared fixtures: typed settings from the bundled config, small and quick."""

from __future__ import annotations

import pytest

from autoprune.cli import compose
from autoprune.config import Settings, settings_from_dict


def make_settings(*overrides: str) -> Settings:
    """Settings composed from conf/ exactly as the CLI would, with overrides."""
    return settings_from_dict(compose("search", list(overrides)))


@pytest.fixture
def settings_for():
    return make_settings

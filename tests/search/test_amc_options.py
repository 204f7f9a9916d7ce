"""The AMC agent's options: bad values are refused with what is allowed."""

from __future__ import annotations

import pytest

from autoprune.errors import UserError
from autoprune.search.amc_options import AgentOptions


def test_options_are_checked():
    with pytest.raises(UserError, match="budget_min and budget_max"):
        AgentOptions.from_dict({"budget_min": 0.9, "budget_max": 0.5})
    with pytest.raises(UserError, match="warmup_episodes >= 0"):
        AgentOptions.from_dict({"warmup_episodes": -1})
    with pytest.raises(UserError, match="amc sampler"):
        AgentOptions.from_dict({"noise": "loud"})

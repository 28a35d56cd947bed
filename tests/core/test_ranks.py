"""Reading torchrun's environment: rank 0 of 1 without it, one line for a malformed one."""

from __future__ import annotations

import pytest

from ocrkit.core.errors import OcrkitError
from ocrkit.core.ranks import RankLayout, rank_prefix, under_torchrun

TORCHRUN_RANK1 = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0"}


def test_without_torchrun_a_process_is_rank_0_of_1():
    layout = RankLayout.from_env({})
    assert layout == RankLayout(0, 1, 0, 1, 0)
    assert layout.is_main and layout.is_local_main and not layout.distributed
    assert not under_torchrun({}) and rank_prefix({}) == ""


def test_torchrun_variables_give_the_layout_and_the_error_prefix():
    layout = RankLayout.from_env(TORCHRUN_RANK1)
    assert layout == RankLayout(rank=1, world_size=4, local_rank=1, local_world_size=2, node_rank=0)
    assert layout.distributed and not layout.is_main and not layout.is_local_main
    assert under_torchrun(TORCHRUN_RANK1)
    assert rank_prefix(TORCHRUN_RANK1) == "[rank 1] "


def test_one_process_under_torchrun_has_no_prefix():
    env = {"RANK": "0", "WORLD_SIZE": "1"}
    assert RankLayout.from_env(env) == RankLayout()
    assert rank_prefix(env) == ""


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({**TORCHRUN_RANK1, "RANK": "x"}, "RANK='x' is not an integer"),
        ({**TORCHRUN_RANK1, "RANK": "4"}, "inconsistent torchrun environment: RANK=4 WORLD_SIZE=4"),
        ({**TORCHRUN_RANK1, "LOCAL_RANK": "2"}, "LOCAL_RANK=2 LOCAL_WORLD_SIZE=2"),
    ],
)
def test_a_malformed_environment_is_one_line(env, fragment):
    with pytest.raises(OcrkitError) as caught:
        RankLayout.from_env(env)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert rank_prefix(env) == ""  # an error line is still printed, unprefixed

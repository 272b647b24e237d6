from __future__ import annotations

import pytest

from rig.errors import UserError
from rig.workloads.pressure import KINDS, Balloon, Memcg, NoPressure, Sample, Shrink, Stress, kinds_of, merge, parse_pressure, parse_sampler


def test_parse_profiles_and_values() -> None:
    assert parse_pressure("none", 2048).kinds == ()
    assert parse_pressure("", 2048).label == "none"
    p = parse_pressure("balloon=768, shrink=2,memcg=512,stress=25%", 2048)
    assert p.kinds == ("balloon", "shrink", "memcg", "stress")
    assert p.balloon_target(2048) == 768 and p.shrink_period_s == 2.0 and p.memcg_mib == 512
    assert p.stress_bytes == "25%"
    assert parse_pressure("balloon", 2048).balloon_target(2048) == 819  # 40% by default
    assert parse_pressure("balloon", 512).balloon_target(512) == 384  # never below what the guest needs


def test_every_bad_item_is_named() -> None:
    with pytest.raises(UserError) as info:
        parse_pressure("balloon=4096,squeeze,shrink=0,stress=lots,memcg=10,balloon", 2048)
    message = info.value.message
    for needle in ("balloon=4096", "'squeeze'", "shrink=0", "stress=lots", "memcg=10", "given twice"):
        assert needle in message, needle



def test_none_takes_no_value() -> None:
    with pytest.raises(UserError, match="none=1: takes no value"):
        parse_pressure("none=1", 2048)


def test_kinds_start_in_a_fixed_order_and_only_memcg_wraps() -> None:
    pressure = parse_pressure("balloon,stress,shrink,memcg", 2048)
    kinds = kinds_of(pressure)
    assert [type(k) for k in kinds] == [Memcg, Shrink, Stress, Balloon]  # the balloon last, whatever the user's order
    assert [k.name for k in kinds if k.wrap] == ["memcg"]
    assert [type(k) for k in kinds_of(parse_pressure("none", 2048))] == [NoPressure]
    assert KINDS == ("none", "balloon", "stress", "memcg", "shrink")  # what --help lists


SAMPLER_OUTPUT = """\
30.05 1690112 1450240 sb-ext4-11=120 thp_zero-2=1 rcu-kfree-0=0
31.06 1689000 1449000 sb-ext4-11=140 thp_zero-2=1
32.07 612000 301000 sb-ext4-11=20
33.0 61
"""


def test_sampler_lines_become_samples_on_the_host_clock() -> None:
    samples, top = parse_sampler(SAMPLER_OUTPUT, offset_s=-28.0)
    assert [s.t for s in samples] == [2.05, 3.06, 4.07]  # the cut line at the end is dropped
    assert samples[0].mem_available_mib == pytest.approx(1650.5, abs=0.1)
    assert samples[1].shrinker_objects == 141
    assert samples[2].mem_available_mib < samples[0].mem_available_mib
    assert top == {"sb-ext4-11": 140, "thp_zero-2": 1, "rcu-kfree-0": 0}


def test_merge_puts_balloon_readings_beside_guest_samples() -> None:
    guest = [Sample(1.0, 1600.0), Sample(2.0, 1500.0), Sample(3.0, 700.0)]
    balloon = [(1.1, 2048.0), (2.2, 819.0), (3.1, 819.0), (9.0, 2048.0)]
    merged = merge(guest, balloon)
    assert [s.balloon_mib for s in merged[:3]] == [2048.0, 819.0, 819.0]
    assert merged[-1].t == 9.0 and merged[-1].mem_available_mib is None and merged[-1].balloon_mib == 2048.0

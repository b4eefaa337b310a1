from __future__ import annotations

import pytest

from studio_nova.cut.plan import plan_chunks, plan_keyframes, plan_shot


def test_when_shot_is_shorter_than_a_chunk_then_it_is_one_chunk():
    assert plan_chunks(100, 150) == [(100, 150)]
    assert plan_chunks(7, 7) == [(7, 7)]
    assert plan_chunks(0, 80) == [(0, 80)]


def test_chunks_are_81_frames_overlapping_by_16_and_the_last_ends_on_the_last_frame():
    assert plan_chunks(0, 81) == [(0, 80), (1, 81)]
    assert plan_chunks(0, 145) == [(0, 80), (65, 145)]
    assert plan_chunks(0, 146) == [(0, 80), (65, 145), (66, 146)]
    chunks = plan_chunks(1000, 1000 + 9999)
    assert all(b - a + 1 == 81 for a, b in chunks)
    assert chunks[0][0] == 1000 and chunks[-1][1] == 10999
    for (a0, b0), (a1, b1) in zip(chunks, chunks[1:]):
        assert a1 > a0 and b0 - a1 + 1 >= 16  # every neighbour shares at least the overlap
    for (a0, b0), (a1, _) in zip(chunks[:-2], chunks[1:-1]):
        assert b0 - a1 + 1 == 16  # all but the last are exactly the overlap apart
    covered = set()
    for a, b in chunks:
        covered.update(range(a, b + 1))
    assert covered == set(range(1000, 11000))


def test_keyframes_every_interval_and_always_first_and_last():
    assert plan_keyframes(0, 0) == [0]
    assert plan_keyframes(0, 9) == [0, 9]
    assert plan_keyframes(0, 10) == [0, 10]
    assert plan_keyframes(5, 36) == [5, 15, 25, 35, 36]
    assert plan_keyframes(0, 99, interval=20) == [0, 20, 40, 60, 80, 99]


def test_plan_shot_in_source_frames():
    plan = plan_shot(90000, 90129)
    assert plan.frame_count == 130
    assert plan.chunks == [(90000, 90080), (90049, 90129)]
    assert plan.keyframes[0] == 90000 and plan.keyframes[-1] == 90129


@pytest.mark.parametrize("first,last", [(5, 4), (0, -1)])
def test_empty_range_is_refused(first, last):
    with pytest.raises(ValueError, match="empty shot"):
        plan_chunks(first, last)

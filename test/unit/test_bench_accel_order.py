"""tools.bench_accel runs its variants in an order rotated each round, so no variant always
takes a round's first slot and whatever load that slot carries."""

from tools.bench_accel import round_order

NAMES = ['plain', 'tokens 0.5', 'int8', 'bfloat16']


def test_each_round_runs_every_variant_once():
    for round_index in range(6):
        assert sorted(round_order(NAMES, round_index)) == sorted(NAMES)


def test_the_first_slot_moves_to_a_different_variant_each_round():
    firsts = [round_order(NAMES, r)[0] for r in range(len(NAMES))]
    assert firsts == NAMES


def test_the_first_round_keeps_the_given_order_and_one_variant_is_fine():
    assert round_order(NAMES, 0) == NAMES
    assert round_order(['plain'], 3) == ['plain']
    assert round_order([], 2) == []

"""The accuracy/latency front."""

from autoprune.search.pareto import pareto_front


def test_front_keeps_only_non_dominated_points_fastest_first():
    points = [(0.99, 2.0), (0.98, 1.0), (0.97, 1.5), (0.95, 0.5), (0.99, 2.5)]
    assert pareto_front(points) == [3, 1, 0]


def test_equal_points_are_all_kept_and_ties_on_one_axis_resolved():
    assert pareto_front([(0.9, 1.0), (0.9, 1.0)]) == [0, 1]
    assert pareto_front([(0.9, 1.0), (0.8, 1.0)]) == [0]
    assert pareto_front([]) == []

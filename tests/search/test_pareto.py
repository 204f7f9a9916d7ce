"""The metric/latency front, in the metric's direction."""

from autoprune.search.pareto import front_records, pareto_front
from autoprune.search.records import TrialRecord
from autoprune.tasks import Objective


def test_front_keeps_only_non_dominated_points_fastest_first():
    points = [(0.99, 2.0), (0.98, 1.0), (0.97, 1.5), (0.95, 0.5), (0.99, 2.5)]
    assert pareto_front(points) == [3, 1, 0]


def test_equal_points_are_all_kept_and_ties_on_one_axis_resolved():
    assert pareto_front([(0.9, 1.0), (0.9, 1.0)]) == [0, 1]
    assert pareto_front([(0.9, 1.0), (0.8, 1.0)]) == [0]
    assert pareto_front([]) == []


def test_front_records_hold_only_completed_trials_within_the_constraints():
    def record(number, acc, ms, state="complete", feasible=True):
        return TrialRecord(number, {}, state, {"accuracy": acc, "latency_ms": ms},
                           feasible=feasible)

    records = [record(0, 0.99, 2.0), record(1, 0.995, 0.5, feasible=False),
               record(2, 0.999, 0.1, state="stopped"), record(3, 0.98, 1.0),
               record(4, 0.0, 0.0, state="failed")]
    assert [r.number for r in front_records(records, Objective("accuracy", "maximize"))] == [3, 0]


def test_a_minimised_metric_makes_the_lower_values_the_front():
    records = [TrialRecord(n, {}, "complete", {"perplexity": p, "latency_ms": ms})
               for n, (p, ms) in enumerate([(5.0, 2.0), (6.0, 1.0), (7.0, 1.5), (4.0, 3.0)])]
    front = front_records(records, Objective("perplexity", "minimize"))
    assert [r.number for r in front] == [1, 0, 3]

"""What a study prints while it runs and at the end."""

from __future__ import annotations

import io

from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference
from autoprune.tasks import Objective
from autoprune.terminal import Live, Meter, Progress, duration, front_table

ACCURACY = Objective("accuracy", "maximize")
PERPLEXITY = Objective("perplexity", "minimize")
METRICS = {"accuracy": 0.98, "latency_ms": 1.0, "latency_p90_ms": 1.1, "latency_cv": 0.02,
           "speedup": 1.5, "params": 1234.0, "macs": 1.0, "size_mb": 0.1, "sparsity": 0.3}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_done_failed_and_front():
    out = io.StringIO()
    progress = Progress(3, ACCURACY, stream=out)
    progress.update(TrialRecord(0, {}, "complete", dict(METRICS), "measured", "channel 2/2"))
    progress.update(TrialRecord(1, {}, "failed", error="TrialFailed: diverged"))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[  1/3]") and "front 1" in lines[0] and "±2%" in lines[0]
    assert "accuracy 98.00%" in lines[0]
    assert "failed 1" in lines[1] and "FAILED: TrialFailed: diverged" in lines[1]


def test_front_size_follows_the_direction():
    progress = Progress(3, PERPLEXITY, stream=io.StringIO())
    for number, (value, latency) in enumerate([(5.0, 1.0), (4.0, 2.0), (6.0, 1.5)]):
        progress.update(TrialRecord(number, {}, "complete", {
            **METRICS, "perplexity": value, "latency_ms": latency}, "measured", "p"))
    assert progress.front_size() == 2, "(6.0, 1.5) is dominated by (5.0, 1.0) when lower wins"


def test_running_trials_show_step_loss_and_eta_in_place_on_a_terminal():
    out = Terminal()
    progress = Progress(4, ACCURACY, stream=out)
    progress.live.refresh_s = 0.0
    progress.running(2, 10, 100, 1.25)
    progress.running(2, 20, 100, 1.0)
    text = out.getvalue()
    assert "trial   2: fine-tuning step 20/100, loss 1.0000, ETA" in text
    assert "study: 0/4 trials done" in text
    assert "\x1b[1A\x1b[2K" in text, "the status is redrawn in place"
    progress.update(TrialRecord(2, {}, "complete", dict(METRICS), "measured", "p"))
    assert "step" not in out.getvalue().rsplit("[  1/4]", 1)[1].split("\n", 1)[0]


def test_elsewhere_the_status_is_a_plain_line_at_most_every_interval():
    out = io.StringIO()
    progress = Progress(4, ACCURACY, stream=out, interval_s=3600)
    progress.running(1, 10, 100, 1.0)
    assert out.getvalue() == "", "not before the interval"
    progress.live.interval_s = 0.0
    progress.running(1, 20, 100, 0.9)
    assert "trial   1: fine-tuning step 20/100" in out.getvalue()
    assert "\x1b[" not in out.getvalue()


def test_a_meter_ends_with_a_line_that_stays():
    out = io.StringIO()
    meter = Meter("training the base model", 3, Live(out, interval_s=0.0))
    for step in (1, 2, 3):
        meter(step, 1.0 / step)
    meter.done()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("training the base model: step 1/3")
    assert lines[-1].startswith("training the base model: 3 steps in")


def test_durations_read_like_a_person_would_write_them():
    assert [duration(s) for s in (5, 185, 4320, float("nan"))] == ["5s", "3m05s", "1h12m", "?"]


def test_front_table_lists_the_base_its_fine_tuned_twin_then_the_front():
    base = Reference(ACCURACY, 0.99, 1.5, 0.985, finetuned=0.992)
    table = front_table([TrialRecord(7, {}, "complete", dict(METRICS), "measured", "p")],
                        {7: 0.97}, base)
    lines = table.splitlines()
    assert "base" in lines[2] and "98.50%" in lines[2]
    assert "fine-tuned like a trial" in lines[3] and "99.20%" in lines[3]
    assert lines[4].split()[0] == "7" and "97.00%" in lines[4] and "1.50x" in lines[4]


def test_front_table_shows_perplexity_as_a_number():
    base = Reference(PERPLEXITY, 5.0, 2.0, 5.2)
    record = TrialRecord(3, {}, "complete", {**METRICS, "perplexity": 5.1}, "measured", "p")
    table = front_table([record], {3: 5.3}, base, {3: 5.15})
    assert "val perplexity" in table.splitlines()[0] and "all val" in table.splitlines()[0]
    assert "5.1" in table.splitlines()[-1] and "5.15" in table.splitlines()[-1]
    assert "%" not in table


def test_the_log_keeps_the_lines_that_stay_and_drops_redrawn_status(tmp_path):
    from autoprune.terminal.logfile import Tee

    screen, log = Terminal(), io.StringIO()
    tee = Tee(screen, log)
    live = Live(tee, refresh_s=0.0)
    live.line("study started")
    for step in range(3):
        live.status([f"trial 0: step {step}", "study: 1 running"], force=True)
    live.line("trial 0: done")
    live.status(["study: finished"], force=True)
    live.close()
    tee.write("partial")
    tee.close()
    assert tee.isatty() and "step 2" in screen.getvalue()
    assert log.getvalue() == "study started\ntrial 0: done\npartial\n"


def test_a_command_log_gets_what_it_printed(tmp_path, capsys):
    import sys

    from autoprune.terminal.logfile import logged

    with logged(tmp_path / "run" / "search.log"):
        print("to the terminal and the log")
        print("an error line", file=sys.stderr)
    assert capsys.readouterr().out == "to the terminal and the log\n"
    text = (tmp_path / "run" / "search.log").read_text()
    assert "to the terminal and the log\n" in text and "an error line\n" in text


def test_what_holds_the_console_still_pickles_while_it_is_logged(tmp_path):
    import sys

    from ray import cloudpickle

    from autoprune.terminal.logfile import logged

    with logged(tmp_path / "search.log"):
        live = Live()  # a study's progress holds sys.stdout, which is now the tee
        copy = cloudpickle.loads(cloudpickle.dumps(live))
        assert copy.stream is sys.stdout

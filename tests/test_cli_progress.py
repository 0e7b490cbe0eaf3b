"""The command line's progress: a bar on a terminal, a few timestamped log lines (with ``-v``) in a file."""

from __future__ import annotations

import pytest


def test_progress_to_a_file_is_a_few_log_lines_not_a_bar(caplog: pytest.LogCaptureFixture, capsys) -> None:
    """With stderr redirected (a log file, a cluster job), progress is an INFO line per new stage, at most one per
    interval plus the last one, and only with ``-v``; the terminal's carriage-return bar never reaches the file."""
    import logging

    from dlfd_core.cli import PROGRESS_LOG_INTERVAL, _progress_printer

    now = [0.0]
    progress = _progress_printer("bench", clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="dlfd_core")
    for t, fraction, message in [
        (0.0, 0.0, "seed 0: training the original model"),
        (1.0, 0.05, "seed 0: training the original model"),  # same stage: nothing
        (5.0, 0.10, "seed 0 instance: dlfd"),  # new stage, but too soon after the last line
        (PROGRESS_LOG_INTERVAL + 1, 0.20, "seed 0 instance: dlfd"),  # its stage is now due
        (PROGRESS_LOG_INTERVAL + 2, 1.0, "done"),  # the last one always
        (PROGRESS_LOG_INTERVAL + 3, 1.0, "done"),
    ]:
        now[0] = t
        progress(fraction, message)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "bench:   0% seed 0: training the original model",
        "bench:  20% seed 0 instance: dlfd",
        "bench: 100% done",
    ]
    assert "\r" not in capsys.readouterr().err

    caplog.clear()
    caplog.set_level(logging.WARNING, logger="dlfd_core")  # without -v: silent
    quiet = _progress_printer("bench", clock=lambda: now[0])
    quiet(0.5, "halfway")
    quiet(1.0, "done")
    assert caplog.records == [] and capsys.readouterr().err == ""

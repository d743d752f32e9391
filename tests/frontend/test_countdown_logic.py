"""The boot countdown's words and the pre-start settings, run in Node on the page's own modules."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.frontend.page_modules import run_page_module

IMPORTS = {
    "countdown.js": "BootCountdown",
    "config.js": "checkPreStart",
    "prestart.js": "preStartNote",
}


def run(body: str) -> Any:
    return run_page_module(IMPORTS, body)


def texts(setup: str, times_ms: list[int]) -> list[str | None]:
    """`setup` feeds a `countdown`; the words at each of `times_ms`."""
    return list(
        run(
            f"""
            const countdown = new BootCountdown();
            {setup}
            console.log(JSON.stringify({times_ms}.map((t) => countdown.text(t))));
            """
        )
    )


def seconds_left(text: str | None) -> int:
    match = re.fullmatch(r"GPU ready in about (\d+) s", text or "")
    assert match, text
    return int(match.group(1))


def test_it_counts_down_from_the_median_then_says_it_takes_longer_never_negative() -> None:
    status = "{boot_estimate_s: 23, boot_samples: 7, boot_elapsed_s: 3}"
    times = list(range(0, 40_000, 250))
    words = texts(f"countdown.status({status}, 0);", times)
    counting = [w for w in words if w and w.startswith("GPU ready")]
    left = [seconds_left(w) for w in counting]
    assert left[0] == 20, "23 s estimated, 3 s already gone"
    assert left == sorted(left, reverse=True) and min(left) == 1, "down to 1 s, never 0 or less"
    assert len(set(left)) == 20, "every second shown"
    later = words[len(counting) :]
    assert later[0] == "taking longer than usual (23 s so far); still starting", "3 s + 20 s"
    assert later[-1] == "taking longer than usual (43 s so far); still starting"


def test_without_a_measured_boot_it_says_estimated_not_usual() -> None:
    words = texts("countdown.status({boot_estimate_s: 120, boot_samples: 0}, 0);", [0, 130_000])
    assert words == [
        "GPU ready in about 120 s",
        "taking longer than estimated (130 s so far); still starting",
    ]


def test_each_status_answer_pins_the_boot_start_again() -> None:
    """The elapsed time of the newest answer wins over the page's own clock (a tab that slept)."""
    words = texts(
        """
        countdown.status({boot_estimate_s: 30, boot_samples: 3, boot_elapsed_s: 5}, 0);
        countdown.status({boot_estimate_s: 30, boot_samples: 3, boot_elapsed_s: 20}, 2000);
        """,
        [2000],
    )
    assert words == ["GPU ready in about 10 s"]


def test_the_start_answer_counts_until_status_says_more_and_stands_without_elapsed() -> None:
    """Fleet mode's /status has no elapsed time: /start's wait (which knew the instance's state)
    is kept rather than restarted from the median."""
    words = texts(
        """
        countdown.started({estimated_wait_s: 40}, 1000);
        countdown.status({boot_estimate_s: 25, boot_samples: 4, boot_elapsed_s: null}, 3000);
        """,
        [1000, 3000],
    )
    assert words == ["GPU ready in about 40 s", "GPU ready in about 38 s"]


@pytest.mark.parametrize(
    "status",
    [
        "{}",
        "{boot_estimate_s: '23'}",
        "{boot_estimate_s: -5}",
        "{boot_estimate_s: 0}",
        "{boot_estimate_s: null}",
        "null",
    ],
)
def test_answers_without_a_usable_estimate_show_nothing(status: str) -> None:
    assert texts(f"countdown.status({status}, 0);", [0, 5000]) == [None, None]


def test_a_bad_elapsed_time_counts_from_the_answer() -> None:
    words = texts(
        "countdown.status({boot_estimate_s: 30, boot_samples: 2, boot_elapsed_s: -4}, 0);", [0]
    )
    assert words == ["GPU ready in about 30 s"]


def test_pre_start_settings_are_checked_like_the_others() -> None:
    outcome = run(
        """
        const api = { startApiUrl: "/", preStartCost: null };
        const tries = [
          { ...api, preStart: "yes" },
          { ...api, preStart: true, preStartCost: 0.21 },
          { startApiUrl: null, preStart: true, preStartCost: null },
          { ...api, preStart: true, preStartCost: "an unused pre-start costs at most $0.21" },
        ];
        const errors = tries.map((config) => {
          try { checkPreStart(config); return null; } catch (error) { return error.message; }
        });
        const notes = [
          preStartNote({ preStart: false, preStartCost: "x" }),
          preStartNote({ preStart: true, preStartCost: null }),
          preStartNote(tries[3]),
        ];
        console.log(JSON.stringify({ errors, notes }));
        """
    )
    assert outcome["errors"] == [
        'config.json: preStart must be true or false, not "yes"',
        "config.json: preStartCost must be a text or null, not 0.21",
        "config.json: preStart needs startApiUrl (it starts the GPU through the start/status API)",
        None,
    ]
    assert outcome["notes"] == [
        None,
        "Pre-start is on: opening this page starts the GPU.",
        "Pre-start is on: opening this page starts the GPU. "
        "an unused pre-start costs at most $0.21",
    ]

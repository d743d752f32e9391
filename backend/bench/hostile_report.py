"""The hostile-client benchmark as one markdown table, with pass/fail per row and overall."""

from __future__ import annotations

from collections.abc import Mapping

from backend.bench.hostile_bench import P95_FACTOR, HostileResult, Row
from backend.bench.hostile_victim import VictimRun

SENT = (
    "connections", "frames", "fragments", "messages", "invalid utf-8 frames", "resets",
    "descriptor budget", "disk refills",
)  # fmt: skip


def render_markdown(result: HostileResult) -> str:
    """Section for docs/benchmarks.md."""
    config = result.config
    passing = [row for row in result.rows if row.victim and not row.failures()]
    measured = [row for row in result.rows if row.victim is not None]
    lines = [
        "### Hostile clients",
        "",
        f"Machine: {result.machine}; 1-minute load average {result.load[0]:.1f}-"
        f"{result.load[1]:.1f} at the start of the phases.",
        "",
        f"Victim: one session, detection only, 320x240 JPEGs, closed loop at up to 10 fps (one "
        f"frame in flight); quiet: alone for {config.quiet_seconds:.0f} s right before each "
        f"attack; during: {config.seconds:.0f} s once admitted. Backend: "
        f"{config.max_sessions} session slots, send timeout {config.send_timeout_s:.0f} s, "
        "tokens and origins checked.",
        "",
        f"Targets: admitted within {config.admit_within_s:.0f} s of a slot being due (non-reading "
        f"clients: send timeout + {config.admit_within_s:.0f} s); p95 during <= {P95_FACTOR:.0f}x "
        "quiet; after the attack RSS within 10% and descriptors back to where they were, no "
        "session and no backlog file left.",
        "",
        "| attack | bench sent | server answered | CPU % attackers / backend "
        "| victim p95 ms quiet / during | victim admitted | RSS MB before → after "
        "| FDs before → after | left after | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(_row(row) for row in result.rows),
        "",
        f"Overall: **{'PASS' if result.passed() else 'FAIL'}** ({len(passing)} of "
        f"{len(measured)} attacks meet every target"
        f"{_not_run(result.rows)}). After all attacks: RSS {result.final.rss_mb:.0f} MB "
        f"(baseline {result.baseline.rss_mb:.0f} MB, "
        f"{result.final.rss_mb / result.baseline.rss_mb - 1:+.0%}), "
        f"{result.final.fds} descriptors (baseline {result.baseline.fds}).",
    ]
    return "\n".join(lines) + "\n"


def _row(row: Row) -> str:
    phase, quiet, victim = row.phase, row.quiet, row.victim
    if phase is None or quiet is None or victim is None:
        cells = [row.name, *["-"] * 8, f"not run: {row.not_run}"]
        return "| " + " | ".join(cells) + " |"
    sent = _tally({k: v for k, v in phase.counts.items() if k in SENT})
    answered = _tally({k: v for k, v in phase.counts.items() if k not in SENT})
    failures = row.failures()
    cells = [
        row.name,
        sent,
        answered,
        f"{_percent(phase.attacker_cpu_s, phase.seconds)} / "
        f"{_percent(phase.backend_cpu_s, phase.seconds)}",
        f"{_ms(quiet.p95_ms)} / {_ms(victim.p95_ms)}",
        _admission(victim, row.admit_within_s),
        f"{row.before.rss_mb:.0f} → {row.after.rss_mb:.0f}",
        f"{row.before.fds} → {row.after.fds}",
        _left(row),
        "pass" if not failures else "**fail**: " + ", ".join(failures),
    ]
    return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"


def _admission(victim: VictimRun, within_s: float) -> str:
    if victim.admitted_s is None:
        return f"no ({victim.refused})"
    late = " (late)" if victim.admitted_s > within_s else ""
    dropped = f", then dropped ({victim.dropped})" if victim.dropped else ""
    return f"yes, {victim.admitted_s:.1f} s{late}{dropped}"


def _left(row: Row) -> str:
    left = row.left_after
    if left is None:
        return "/ready did not answer"
    parts = [
        f"{left.active} active sessions" if left.active else "",
        f"{left.waiting} waiting" if left.waiting else "",
        f"{left.backlog_files} backlog files" if left.backlog_files else "",
    ]
    return ", ".join(part for part in parts if part) or "nothing"


def _percent(cpu_s: float, seconds: float) -> str:
    return f"{100 * cpu_s / seconds:.0f}" if seconds > 0 else "-"


def _tally(counts: Mapping[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{key} ({value})" for key, value in ordered) or "-"


def _ms(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "none"


def _not_run(rows: list[Row]) -> str:
    skipped = [row.name for row in rows if row.victim is None]
    return f"; not run: {', '.join(skipped)}" if skipped else ""

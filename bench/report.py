"""What a benchmark run's figures say: the targets and whether each is met (`verdicts`), the
table printed at the end (`table`), the notes on what may have skewed the run (`notes`), and
the chart (`chart`)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from bench import pairing
from bench.homeserver_phases import RT_KINDS
from bench.inprocess import quantile
from bench.png import BLUE, GREY, BarChart, Group

# Targets (bench issue, part 1)
RT_RATIO_TARGET = 1.10

# Targets (bench issue, expert directory). Search and cold start are judged at every size measured,
# the import (a volume) at EXPERT_IMPORT_SIZE only.
EXPERT_SEARCH_P95_MS = 5.0
EXPERT_IMPORT_SIZE = 100_000
EXPERT_IMPORT_S = 10.0
EXPERT_COLD_START_MS = 2000.0
# "Start-up not slowed by the directory's size": Storage.open + services on a full directory
# at most this much slower than on an empty one (medians of equal ones differ by ~1 ms).
EXPERT_START_SLOWER_MS = 5.0

# The scheduler's rebuild: judged at this many items only.
SCHEDULER_ITEMS = 10_000
SCHEDULER_START_MS = 1000.0


def ratio_interval(ours: list[float], reference: list[float], rounds: int = 2000
                   ) -> tuple[float, float] | None:
    """A 95 % bootstrap interval of p50(ours) / p50(reference): how much the ratio could move
    from run to run by chance alone."""
    if len(ours) < 5 or len(reference) < 5:
        return None
    rng = random.Random(1)
    ratios = sorted(
        quantile(rng.choices(ours, k=len(ours)), 0.5)
        / quantile(rng.choices(reference, k=len(reference)), 0.5)
        for _ in range(rounds)
    )
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    rt, burst_ = results["round_trip"], results["burst"]
    ref_p50 = rt["reference !ping"]["p50"]
    checks: list[dict[str, Any]] = []
    for label in (label for label, _, bot in RT_KINDS if bot == "ours"):
        p50 = rt[label]["p50"]
        ratio = p50 / ref_p50 if p50 and ref_p50 else None
        checks.append({
            "name": f"round trip {label.split()[1]} p50 / reference !ping p50",
            "target": f"<= {RT_RATIO_TARGET:.2f}",
            "value": ratio,
            "interval_95": ratio_interval(rt[label]["samples_ms"],
                                          rt["reference !ping"]["samples_ms"]),
            "met": ratio is not None and ratio <= RT_RATIO_TARGET and rt[label]["lost"] == 0,
        })
    ref, ours = burst_["reference"], burst_["ours"]
    checks.append({
        "name": "burst: ours answers every command exactly once",
        "target": f"{ours['commands']} / {ours['commands']}",
        "value": ours["exactly_once"],
        "met": ours["exactly_once"] == ours["commands"],
    })
    checks.append({
        "name": "burst throughput ours >= reference",
        "target": f">= {ref['throughput_per_s']:.1f}/s",
        "value": ours["throughput_per_s"],
        "met": ours["throughput_per_s"] >= ref["throughput_per_s"],
    })
    # Over every command started, a lost one counting as never answered: a bot that drops
    # commands must not look fast. None means more than 5 % were never answered.
    ref_p95, our_p95 = ref["latency_all_s"]["p95"], ours["latency_all_s"]["p95"]
    checks.append({
        "name": "burst latency p95 ours < reference",
        "target": f"< {_inf(ref_p95, 2)} s",
        "value": our_p95,
        "met": our_p95 is not None and (ref_p95 is None or our_p95 < ref_p95),
    })
    planned = results["in_process"].get("scheduler") or {}
    if planned.get("items") == SCHEDULER_ITEMS:
        start_ms = planned.get("start_ms")
        checks.append({
            "name": f"scheduler start with {SCHEDULER_ITEMS:,} items",
            "target": f"< {SCHEDULER_START_MS:g} ms",
            "value": start_ms,
            "met": None if start_ms is None else start_ms < SCHEDULER_START_MS,
        })
    return checks + expert_verdicts(results["in_process"].get("experts", {}))


def _ok(figures: Any) -> bool:
    return isinstance(figures, dict) and "error" not in figures


def expert_verdicts(found: dict[str, Any]) -> list[dict[str, Any]]:
    """The expert directory's targets; `met` is None where the measurement failed."""
    checks: list[dict[str, Any]] = []
    empty = found.get("empty_cold_start")
    for key, size in (found.get("sizes") or {}).items():
        n = f"{int(key):,}"
        search, imported, cold = size.get("search"), size.get("import"), size.get("cold_start")
        p95 = search["dispatch_ms"]["p95"] if _ok(search) else None
        checks.append({
            "name": f"expert search p95 at {n} profiles",
            "target": f"< {EXPERT_SEARCH_P95_MS:g} ms", "value": p95,
            "met": None if p95 is None else p95 < EXPERT_SEARCH_P95_MS,
        })
        if int(key) == EXPERT_IMPORT_SIZE:
            total = imported["total_s"] if _ok(imported) else None
            checks.append({
                "name": f"expert import of {n} profiles",
                "target": f"< {EXPERT_IMPORT_S:g} s", "value": total,
                "met": None if total is None else total < EXPERT_IMPORT_S,
            })
        first = cold["to_first_reply_ms"] if _ok(cold) else None
        checks.append({
            "name": f"expert cold start to first reply at {n} profiles",
            "target": f"< {EXPERT_COLD_START_MS:g} ms", "value": first,
            "met": None if first is None else first < EXPERT_COLD_START_MS,
        })
        slower = (cold["storage_services_ms"] - empty["storage_services_ms"]
                  if _ok(cold) and _ok(empty) else None)
        checks.append({
            "name": f"expert start-up at {n} profiles not slower than empty",
            "target": f"storage+services < empty + {EXPERT_START_SLOWER_MS:g} ms",
            "value": slower,
            "met": None if slower is None else slower < EXPERT_START_SLOWER_MS,
        })
    return checks


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _inf(value: float | None, digits: int = 1) -> str:
    """None stands for "never": more than the quantile's share of commands got no answer."""
    return "∞" if value is None else f"{value:.{digits}f}"


def _pair(stats: dict[str, Any], digits: int = 1, scale: float = 1.0) -> str:
    p50, p95 = stats.get("p50"), stats.get("p95")
    if p50 is None:
        return "–"
    return f"{p50 * scale:.{digits}f} / {p95 * scale:.{digits}f}"


def _failed(figures: dict[str, Any]) -> str:
    """'failed' for a measurement that raised (its error is in the JSON), else ''."""
    return "failed (see JSON)" if "error" in figures else ""


def _verdict(check: dict[str, Any]) -> str:
    return {True: "met", False: "NOT MET", None: "n/a"}[check["met"]]


def table(report: dict[str, Any]) -> str:
    r = report["results"]
    rt, b, ip = r["round_trip"], r["burst"], r["in_process"]
    checks = {c["name"]: c for c in report["targets"]}
    plan = report["meta"]["plan"]
    rows: list[tuple[str, str, str, str, str]] = []

    def section(title: str) -> None:
        rows.append((title, "", "", "", ""))

    def ratio_text(check: dict[str, Any]) -> str:
        value = "–" if check["value"] is None else f"{check['value']:.2f}×"
        if check.get("interval_95"):
            low, high = check["interval_95"]
            value += f", 95 % CI {low:.2f}–{high:.2f}"
        return f"{_verdict(check)} ({value})"

    n = plan["round_trips"]
    section(f"Round trip, sequential, {n} each (ms)")
    c_ping = checks["round trip !ping p50 / reference !ping p50"]
    c_help = checks["round trip !help p50 / reference !ping p50"]
    rows.append(("  !ping p50 / p95", _pair(rt["reference !ping"]), _pair(rt["ours !ping"]),
                 f"p50 <= {RT_RATIO_TARGET:.2f}× ref", ratio_text(c_ping)))
    rows.append(("  !help p50 / p95", "(no !help)", _pair(rt["ours !help"]),
                 f"p50 <= {RT_RATIO_TARGET:.2f}× ref !ping", ratio_text(c_help)))
    c_experts = checks["round trip !experten p50 / reference !ping p50"]
    profiles = r["bot_directory"]["profiles"]
    rows.append((f"  !experten <topic>, {profiles:,} profiles", "(no !experten)",
                 _pair(rt["ours !experten"]), f"p50 <= {RT_RATIO_TARGET:.2f}× ref !ping",
                 ratio_text(c_experts)))
    cpu_rt = r["round_trip_cpu_s"]
    ours_kinds = sum(1 for _, _, bot in RT_KINDS if bot == "ours")
    per_command = {
        "reference": None if cpu_rt["reference"] is None else cpu_rt["reference"] * 1000 / n,
        "ours": None if cpu_rt["ours"] is None else cpu_rt["ours"] * 1000 / (ours_kinds * n),
    }
    rows.append(("  bot CPU per command (ms)", _f(per_command["reference"]),
                 _f(per_command["ours"]), "", ""))
    lost = sum(rt[k]["lost"] for k in rt)
    if lost:
        rows.append(("  lost (no reply in 15 s)", str(rt["reference !ping"]["lost"]),
                     str(sum(rt[label]["lost"] for label, _, bot in RT_KINDS
                             if bot == "ours")), "0", ""))
    total = b["ours"]["commands"]
    section(f"Burst, {plan['burst_rooms']} rooms × {plan['burst_per_room']} = {total} commands")
    c_once = checks["burst: ours answers every command exactly once"]
    rows.append(("  answered exactly once", f"{b['reference']['exactly_once']} / {total}",
                 f"{b['ours']['exactly_once']} / {total}", "all (ours)", _verdict(c_once)))
    rows.append(("  not answered", str(b["reference"]["none"]), str(b["ours"]["none"]), "0", ""))
    rows.append(("  answered more than once", str(b["reference"]["more_than_once"]),
                 str(b["ours"]["more_than_once"]), "0", ""))
    c_tp = checks["burst throughput ours >= reference"]
    rows.append(("  throughput (answered/s)", _f(b["reference"]["throughput_per_s"]),
                 _f(b["ours"]["throughput_per_s"]), ">= reference", _verdict(c_tp)))
    rows.append(("  latency p50 / p95, answered (s)", _pair(b["reference"]["latency_s"], 2),
                 _pair(b["ours"]["latency_s"], 2), "", ""))
    c_p95 = checks["burst latency p95 ours < reference"]
    every = {bot: b[bot]["latency_all_s"] for bot in ("reference", "ours")}
    rows.append(("  latency p50 / p95, all; lost = ∞ (s)",
                 f"{_inf(every['reference']['p50'], 2)} / {_inf(every['reference']['p95'], 2)}",
                 f"{_inf(every['ours']['p50'], 2)} / {_inf(every['ours']['p95'], 2)}",
                 "p95 < reference", _verdict(c_p95)))
    rows.append(("  sends accepted after (s)", _f(b["reference"]["sends_accepted_s"], 2),
                 _f(b["ours"]["sends_accepted_s"], 2), "", ""))
    cpu_b = {bot: b[bot]["cpu_s"] for bot in ("reference", "ours")}
    rows.append(("  CPU during burst: bot / Synapse (s)",
                 f"{_f(cpu_b['reference']['reference'])} / {_f(cpu_b['reference']['synapse'])}",
                 f"{_f(cpu_b['ours']['ours'])} / {_f(cpu_b['ours']['synapse'])}", "", ""))
    section("In-process, no homeserver")
    dispatch_us = ip["dispatch_us"]
    for body in ("!ping", "!help"):
        rows.append((f"  dispatch {body} p50 / p95 (µs)", "",
                     _failed(dispatch_us) or _pair(dispatch_us[body]), "–", ""))
    for body in ("!ping", "!help"):
        for placement, figures in ip["pipeline_ms"][body].items():
            where = placement if figures.get("pinned", True) else f"{placement}: not pinned"
            rows.append((f"  pipeline {body}, {where}, p50 / p95 (ms)", "",
                         _failed(figures) or _pair(figures, 2), "–", ""))
    cold = ip["cold_start_ms"]
    rows.append(("  cold start storage+registry (ms)", "",
                 _failed(cold) or _f(cold["storage_registry_ms"]), "–", ""))
    rows.append(("  cold start imports / process (ms)", "",
                 _failed(cold) or f"{_f(cold['imports_ms'], 0)} / {_f(cold['process_ms'], 0)}",
                 "–", ""))
    mem = r["memory_kib"]
    rows.append(("  resident memory after run (MiB)",
                 _f(mem["reference"]["VmRSS"] / 1024), _f(mem["ours"]["VmRSS"] / 1024), "–", ""))
    rows.append(("  peak resident memory (MiB)",
                 _f(mem["reference"]["VmHWM"] / 1024), _f(mem["ours"]["VmHWM"] / 1024), "–", ""))
    rows += expert_rows(ip.get("experts", {}), checks)
    paired = ip.get("pairing") or {"error": "not measured"}
    rows.append((f"Pairing {pairing.PARTICIPANTS:,} participants, p50 / p95 (ms)", "",
                 _failed(paired) or _pair(paired["ms"], 1),
                 f"<= {pairing.TARGET_MS:.0f} ms", "" if "error" in paired
                 else {True: "met", False: "NOT MET"}[paired["met"]]))
    planned = ip.get("scheduler") or {"error": "not measured"}
    c_sched = checks.get(f"scheduler start with {SCHEDULER_ITEMS:,} items")
    rows.append((f"Scheduler, {planned.get('items', 0):,} reminders: start / re-plan (ms)", "",
                 _failed(planned) or f"{planned['start_ms']:.0f} / {planned['replan_ms']:.0f}",
                 f"start < {SCHEDULER_START_MS:g} ms" if c_sched else "",
                 _verdict(c_sched) if c_sched else ""))

    header = ("Measurement", "Reference bot", "nextbot", "Target", "Result")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]

    def line(row: tuple[str, ...]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                          ).rstrip()

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    return "\n".join(out)


def expert_rows(found: dict[str, Any], checks: dict[str, dict[str, Any]]
                ) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    if not _ok(found):
        return [("Expert directory, in-process", "", _failed(found) or "–", "", "")]
    sizes = found.get("sizes") or {}
    queries = len(found.get("queries", ()))
    runs = next((s["search"]["runs"] for s in sizes.values() if _ok(s.get("search"))), 0)
    rows.append((f"Expert directory, in-process: {queries} queries × {runs}", "", "", "", ""))

    def verdict(name: str) -> str:
        return _verdict(checks[name]) if name in checks else ""

    for key, size in sizes.items():
        n = f"{int(key):,}"
        search, imported, cold = size["search"], size["import"], size["cold_start"]
        rows.append((f"  {n} profiles", "", "", "", ""))
        rows.append(("    !experten p50 / p95 (ms)", "",
                     _failed(search) or _pair(search["dispatch_ms"], 2),
                     f"p95 < {EXPERT_SEARCH_P95_MS:g} ms",
                     verdict(f"expert search p95 at {n} profiles")))
        if _ok(search):
            rows.append(("    … with Matrix content p50 / p95 (ms)", "",
                         _pair(search["with_content_ms"], 2), "", ""))
            slowest = search["slowest_query"]
            rows.append(("    slowest query (by p50) p50 / p95 (ms)", "", _pair(slowest, 2), "",
                         f"!experten {slowest['query']}"))
        import_name = f"expert import of {n} profiles"
        rows.append(("    import: total (check / write) (s)", "",
                     _failed(imported) or f"{imported['total_s']:.2f} "
                     f"({imported['parse_check_s']:.2f} / {imported['upsert_s']:.2f})",
                     f"< {EXPERT_IMPORT_S:g} s" if import_name in checks else "",
                     verdict(import_name)))
        rows.append(("    cold start to first reply (ms)", "",
                     _failed(cold) or _f(cold["to_first_reply_ms"], 0),
                     f"< {EXPERT_COLD_START_MS:g} ms",
                     verdict(f"expert cold start to first reply at {n} profiles")))
        rows.append(("    storage+services / first reply (ms)", "",
                     _failed(cold) or f"{cold['storage_services_ms']:.1f} / "
                     f"{cold['first_reply_ms']:.1f}",
                     f"< empty + {EXPERT_START_SLOWER_MS:g} ms",
                     verdict(f"expert start-up at {n} profiles not slower than empty")))
    empty = found.get("empty_cold_start", {})
    rows.append(("  no profiles", "", "", "", ""))
    rows.append(("    cold start to first reply (ms)", "",
                 _failed(empty) or _f(empty["to_first_reply_ms"], 0), "", ""))
    rows.append(("    storage+services / first reply (ms)", "",
                 _failed(empty) or f"{empty['storage_services_ms']:.1f} / "
                 f"{empty['first_reply_ms']:.1f}", "", ""))
    return rows


def notes(report: dict[str, Any]) -> list[str]:
    r = report["results"]
    found = []
    other, cpus = report["meta"]["other_load_cores"], report["meta"]["cpus"]
    if other >= 0.25:
        found.append(f"other processes kept {other:.2f} of {cpus} cores busy during the run: "
                     "absolute figures suffer, the alternating ratios less")
    if r["member_side"]["limited_syncs"]:
        found.append(f"members' own syncs were cut short {r['member_side']['limited_syncs']} "
                     "times: reply counts may be low")
    for bot in ("reference", "ours"):
        burst_ = r["burst"][bot]
        if burst_["timed_out"]:
            found.append(f"burst against {bot}: replies still arriving when the wait ended")
        if burst_["send_failures"]:
            found.append(f"burst against {bot}: {burst_['send_failures']} sends failed, e.g. "
                         f"{burst_['send_failure_example']}")
    ip = r["in_process"]
    failed = [name for name, figures in [("dispatch", ip["dispatch_us"]),
                                         ("cold start", ip["cold_start_ms"]),
                                         ("scheduler", ip.get("scheduler") or {}),
                                         ("pairing", ip.get("pairing") or {})]
              + [(f"pipeline {body} {placement}", figures)
                 for body, by_placement in ip["pipeline_ms"].items()
                 for placement, figures in by_placement.items()]
              if "error" in figures]
    found_experts = ip.get("experts", {})
    if not _ok(found_experts):
        failed.append("expert directory")
    else:
        for key, size in found_experts.get("sizes", {}).items():
            failed += [f"experts {int(key):,} {part}" for part in ("import", "search", "cold_start")
                       if not _ok(size.get(part))]
        if not _ok(found_experts.get("empty_cold_start")):
            failed.append("experts empty cold_start")
        for key, size in found_experts.get("sizes", {}).items():
            if size.get("database_built_by", "import") != "import":
                found.append(f"experts {int(key):,}: the import failed, so the database that "
                             "was searched and started on was written with upsert_many alone")
    if failed:
        found.append(f"in-process measurements failed: {', '.join(failed)} (errors in the JSON)")
    logged = r["nextbot_log"]
    if logged["ERROR"] or logged["Traceback"]:
        found.append(f"nextbot logged {logged['ERROR']} ERROR line(s) and "
                     f"{logged['Traceback']} traceback(s)")
    if logged["WARNING"]:
        found.append(f"nextbot logged {logged['WARNING']} WARNING line(s)")
    for name, code in r["exit_codes"].items():
        if code not in (0, None):
            found.append(f"{name} exited with code {code} when stopped")
    return found


def chart(report: dict[str, Any], path: Path) -> None:
    r = report["results"]
    rt, b = r["round_trip"], r["burst"]
    plot = BarChart(f"NEXTBOT BENCH ({report['meta']['plan']['name']}) - P50 / P95",
                    panel_width=420)
    plot.panel("ROUND TRIP, SEQUENTIAL (MS)", [
        Group("REF !PING", GREY, [("P50", rt["reference !ping"]["p50"]),
                                  ("P95", rt["reference !ping"]["p95"])]),
        Group("OURS !PING", BLUE, [("P50", rt["ours !ping"]["p50"]),
                                   ("P95", rt["ours !ping"]["p95"])]),
        Group("OURS !HELP", BLUE, [("P50", rt["ours !help"]["p50"]),
                                   ("P95", rt["ours !help"]["p95"])]),
        Group("OURS !EXPERTEN", BLUE, [("P50", rt["ours !experten"]["p50"]),
                                       ("P95", rt["ours !experten"]["p95"])]),
    ])
    total = b["ours"]["commands"]
    plot.panel(f"BURST OF {total}: LATENCY OF ANSWERED (S)", [
        Group(f"REF {b['reference']['answered']}/{total}", GREY,
              [("P50", b["reference"]["latency_s"]["p50"]),
               ("P95", b["reference"]["latency_s"]["p95"])]),
        Group(f"OURS {b['ours']['answered']}/{total}", BLUE,
              [("P50", b["ours"]["latency_s"]["p50"]), ("P95", b["ours"]["latency_s"]["p95"])]),
    ], decimals=2)
    plot.panel("BURST THROUGHPUT (ANSWERED/S)", [
        Group("REF", GREY, [("", b["reference"]["throughput_per_s"])]),
        Group("OURS", BLUE, [("", b["ours"]["throughput_per_s"])]),
    ], decimals=1)
    found = r["in_process"].get("experts", {})
    searched = {key: size["search"]["dispatch_ms"] for key, size in
                (found.get("sizes", {}) if _ok(found) else {}).items() if _ok(size.get("search"))}
    if searched:
        plot.panel("!EXPERTEN, IN-PROCESS (MS)", [
            Group(_thousands(int(key)), BLUE, [("P50", stats["p50"]), ("P95", stats["p95"])])
            for key, stats in searched.items()
        ], decimals=1)
    plot.save(path)


def _thousands(count: int) -> str:
    return f"{count // 1000}K PROFILES" if count % 1000 == 0 else f"{count} PROFILES"

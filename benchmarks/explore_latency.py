"""`mirage explore` latency, measured in the browser (issue 18 goals).

    python benchmarks/explore_latency.py --out benchmarks/results/explore

Serves the explorer (tiny backbone, room 0, latent memory) on a thread of this process and
drives headless Chromium (Playwright, ``--chromium``, default /usr/bin/chromium). A step is one
key press: the page's own keydown handler timestamps it and the player timestamps the first
frame of the chunk it caused when that frame is drawn (``window.explore.latencies``), so the
figure is key press → first new frame on screen, the WebSocket, the queue, generation and
drawing included. Key presses are dispatched inside the page, one after the previous step's
frames have played, so four tabs can press at the same time.

Runs:
- ``single``: one tab, ``--presses`` taps → median and p95 latency;
- ``walking``: one tab holding W then → for ``--hold`` seconds → frames drawn per second;
- ``tabs``: ``--tabs`` tabs tapping at once → each tab's median, against the single tab's;
- ``long``: one tab walking ``--long-frames`` frames in steps of 4 → server RSS every 100 steps
  and the latency of the first and last 10 steps.

Writes ``latency.json`` and ``latency.md`` (a table) under ``--out``. Goals: median ≤ 250 ms,
p95 ≤ 500 ms; ≥ 15 frames/s walking; 4 tabs' median ≤ 4× the single tab's; long walk: RSS
bounded, last 10 steps ≤ 1.5× the first 10. The machine's load is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

# Runs in the page: press `codes` in turn, one after the last step's frames have played.
DRIVER = """
async ([codes, gap]) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const view = document.getElementById("view");
  const steps = () => window.explore.chunks;
  const done = [];
  for (const code of codes) {
    const before = steps();
    window.dispatchEvent(new KeyboardEvent("keydown", { code, key: code }));
    window.dispatchEvent(new KeyboardEvent("keyup", { code, key: code }));
    const t0 = performance.now();
    while ((steps() === before || view.dataset.queued !== "0") && performance.now() - t0 < 30000) await sleep(2);
    done.push(performance.now() - t0);
    await sleep(gap);
  }
  return done;
}
"""

# a walk that stays inside the room: forward, forward, turn, turn, turn (a circle of ~1 m)
CYCLE = ["KeyW", "KeyW", "ArrowRight", "ArrowRight", "ArrowRight"]


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_tab(browser, url):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60000)
    page.goto(url)
    expect(page.locator("#status")).to_contain_text("tiny")
    page.wait_for_function("window.explore && window.explore.session")
    return page


def latencies(page, since=0):
    return page.evaluate("n => window.explore.latencies.slice(n)", since)


def single(browser, url, presses, gap):
    page = open_tab(browser, url)
    codes = [CYCLE[i % len(CYCLE)] for i in range(presses)]
    page.evaluate(DRIVER, [codes, gap])
    values = latencies(page)
    step_ms = page.evaluate("window.explore.stepMs")
    page.context.close()
    return {"presses": presses, "median_ms": statistics.median(values), "p95_ms": percentile(values, 0.95),
            "server_step_median_ms": statistics.median(step_ms),
            "min_ms": min(values), "max_ms": max(values), "latencies_ms": [round(v, 1) for v in values]}


def walking(browser, url, hold_s):
    page = open_tab(browser, url)
    page.locator("#view").click()
    shown0 = page.evaluate("window.explore.shownAt.length")
    t0 = page.evaluate("performance.now()")
    for key, seconds in (("w", hold_s / 2), ("ArrowRight", hold_s / 2)):
        page.keyboard.down(key)
        page.wait_for_timeout(seconds * 1000)
        page.keyboard.up(key)
    t1 = page.evaluate("performance.now()")
    times = page.evaluate("([n, a, b]) => window.explore.shownAt.slice(n).filter((t) => t >= a && t <= b)",
                          [shown0, t0, t1])
    page.context.close()
    # frames drawn per second while a key was held (the first frame's wait excluded)
    fps = (len(times) - 1) / ((times[-1] - times[0]) / 1000) if len(times) > 1 else 0.0
    return {"hold_s": hold_s, "frames_drawn": len(times), "frames_per_s": fps}


def tabs(browser, url, n, presses, gap):
    pages = [open_tab(browser, url) for _ in range(n)]
    codes = [CYCLE[i % len(CYCLE)] for i in range(presses)]
    for page in pages:  # start every driver, then wait for all
        page.evaluate("([d, args]) => { window.benchDone = null; eval(d)(args).then((r) => { window.benchDone = r; }); }",
                      [DRIVER, [codes, gap]])
    for page in pages:
        page.wait_for_function("window.benchDone !== null", timeout=600000)
    per_tab = [latencies(p) for p in pages]
    medians = [statistics.median(v) for v in per_tab]
    all_values = [v for values in per_tab for v in values]
    for page in pages:
        page.context.close()
    return {"tabs": n, "presses_per_tab": presses, "median_ms_per_tab": medians,
            "median_ms": statistics.median(all_values), "p95_ms": percentile(all_values, 0.95),
            "every_tab_worked": all(len(v) >= presses for v in per_tab)}


def long_walk(browser, url, frames, gap):
    page = open_tab(browser, url)
    steps = (frames - 1) // 4
    rss = [(0, rss_mib())]
    for start in range(0, steps, 100):
        codes = [CYCLE[i % len(CYCLE)] for i in range(start, min(steps, start + 100))]
        page.evaluate(DRIVER, [codes, gap])
        rss.append((min(steps, start + 100), rss_mib()))
    values = latencies(page)
    shown = page.evaluate("window.explore.chunks")
    page.context.close()
    first, last = statistics.median(values[:10]), statistics.median(values[-10:])
    return {"frames": 1 + 4 * shown, "steps": shown, "first10_median_ms": first, "last10_median_ms": last,
            "last_over_first": last / first, "rss_mib_by_step": rss,
            "rss_growth_mib_per_1000_frames": (rss[-1][1] - rss[1][1]) / max(1, 4 * (rss[-1][0] - rss[1][0])) * 1000}


def screenshot(browser, url, path):
    """The page mid-walk, ground truth on, for the README."""
    page = open_tab(browser, url)
    page.locator("#show-truth").check()
    page.evaluate(DRIVER, [["KeyW"] * 3 + ["ArrowLeft"] * 6 + ["KeyW"] * 2 + ["ArrowRight"] * 9 + ["KeyD"] * 2, 30])
    page.wait_for_timeout(800)
    page.screenshot(path=str(path), full_page=True)
    page.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/explore")
    parser.add_argument("--chromium", default=os.environ.get("MIRAGE_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--gap-ms", type=float, default=60.0, help="pause after a step's frames have played")
    parser.add_argument("--hold", type=float, default=8.0, help="seconds of held keys (walking run)")
    parser.add_argument("--tabs", type=int, default=4)
    parser.add_argument("--long-frames", type=int, default=2001)
    parser.add_argument("--runs", default="single,walking,tabs,long")
    parser.add_argument("--screenshot", metavar="PNG", help="also save the page mid-walk (docs/explore.png)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, as `mirage explore` on a CPU: the browser shares the cores)")
    args = parser.parse_args()

    import torch
    from playwright.sync_api import sync_playwright

    from mirage.explore.app import create_app
    from mirage.explore.config import ExploreConfig
    from mirage.explore.server import start_in_thread
    from mirage.explore.worlds import build_world

    torch.set_num_threads(args.threads)
    server = start_in_thread(create_app(build_world(scene=0, family="room"), ExploreConfig(max_sessions=8)))
    runs = [r for r in args.runs.split(",") if r]
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                           "load_before": os.getloadavg()},
               "setup": {"backbone": "tiny", "scene": "room 0", "memory": "latent", "step_frames": 4,
                         "gap_ms": args.gap_ms}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium,
                                        args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
            if "single" in runs:
                results["single"] = single(browser, server.url, args.presses, args.gap_ms)
                print("single", {k: v for k, v in results["single"].items() if k != "latencies_ms"}, flush=True)
            if "walking" in runs:
                results["walking"] = walking(browser, server.url, args.hold)
                print("walking", results["walking"], flush=True)
            if "tabs" in runs:
                results["tabs"] = tabs(browser, server.url, args.tabs, args.presses // 2, args.gap_ms)
                if "single" in results:
                    results["tabs"]["median_over_single"] = results["tabs"]["median_ms"] / results["single"]["median_ms"]
                print("tabs", results["tabs"], flush=True)
            if "long" in runs:
                results["long"] = long_walk(browser, server.url, args.long_frames, args.gap_ms)
                print("long", {k: v for k, v in results["long"].items()}, flush=True)
            if args.screenshot:
                screenshot(browser, server.url, args.screenshot)
            browser.close()
    finally:
        server.stop()
    results["machine"]["load_after"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(results, indent=1))
    (out / "latency.md").write_text(table(results))
    print(table(results))


def table(r) -> str:
    rows = ["| measure | value | goal | met |", "|---|---|---|---|"]

    def row(name, value, goal, ok):
        rows.append(f"| {name} | {value} | {goal} | {'yes' if ok else 'NO'} |")

    if "single" in r:
        s = r["single"]
        row("key → first new frame, median (1 tab)", f"{s['median_ms']:.0f} ms", "≤ 250 ms", s["median_ms"] <= 250)
        row("key → first new frame, p95 (1 tab)", f"{s['p95_ms']:.0f} ms", "≤ 500 ms", s["p95_ms"] <= 500)
    if "walking" in r:
        w = r["walking"]
        row("frames drawn per second, key held", f"{w['frames_per_s']:.1f}", "≥ 15", w["frames_per_s"] >= 15)
    if "tabs" in r:
        t = r["tabs"]
        ratio = t.get("median_over_single", float("nan"))
        row(f"{t['tabs']} tabs at once: median latency", f"{t['median_ms']:.0f} ms ({ratio:.2f}× 1 tab)",
            "≤ 4× 1 tab", ratio <= 4)
    if "long" in r:
        lw = r["long"]
        row(f"{lw['frames']}-frame walk: last 10 / first 10 steps",
            f"{lw['last10_median_ms']:.0f} / {lw['first10_median_ms']:.0f} ms = {lw['last_over_first']:.2f}",
            "≤ 1.5", lw["last_over_first"] <= 1.5)
        rss = lw["rss_mib_by_step"]
        rows.append(f"| {lw['frames']}-frame walk: server RSS | {rss[1][1]:.0f} → {rss[-1][1]:.0f} MiB "
                    f"({lw['rss_growth_mib_per_1000_frames']:.0f} MiB / 1000 frames) | bounded | "
                    f"by the frame cap only: grows linearly until then |")
    m = r["machine"]
    rows.append("")
    rows.append(f"{m['cpus']} CPUs, torch threads {m['torch_threads']}, load average before "
                f"{m['load_before'][0]:.2f}, after {m.get('load_after', [float('nan')])[0]:.2f}.")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()

"""Write BENCHMARKS.md and its SVG chart from one run of bench/run.sh.

bench/run.sh leaves its figures in tab-separated files in its work folder
(see FIGURES, FACTS, TARGETS and COMMAND_LOG there) and calls this once all
sections have run, so every figure in the report comes from the same run.
Standard library only: it runs with the system's python3.

    python3 bench/report.py --workdir DIR --markdown BENCHMARKS.md \\
        --svg bench/report.svg --binary PATH/TO/wren --seconds 8 \\
        --sections "status https ..." [--note TEXT]
"""

import argparse
import math
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from urllib.parse import urlsplit

# Servers by the first part of a figure's name, in the report's order.
SERVERS = {
    "wren": ("wren", "#d95f02"),
    "tiny_http": ("tiny_http 0.12", "#7570b3"),
    "nginx": ("nginx", "#1b9e77"),
    "flask": ("Flask + gunicorn", "#5a5a5a"),
}

# The main comparison: for each route, (server, section, figure name).
ROUTES = [
    ("GET /status", [("wren", "status", "wren"), ("tiny_http", "status", "tiny_http"),
                     ("nginx", "status", "nginx"), ("flask", "status", "flask")]),
    ("GET /predict/…", [("wren", "status", "wren-predict"), ("flask", "status", "flask-predict")]),
    ("POST /login", [("wren", "login", "wren"), ("flask", "login", "flask")]),
    ("POST /event", [("wren", "event", "wren"), ("flask", "event", "flask")]),
]
ALL_SECTIONS = "status https login model event scale file footprint".split()


def read_tsv(path, width):
    """Rows of a tab-separated file as lists of `width` strings ([] when
    the file is missing: its section did not run)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        rows.append((fields + [""] * width)[:width])
    return rows


class Run:
    """The figures of one run, read from bench/run.sh's work folder."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        fields = "section name url connections rps requests cpu_us p50 p99 rss errors command"
        self.figures = [dict(zip(fields.split(), row))
                        for row in read_tsv(workdir / "figures.tsv", 12)]
        self.facts = {key: value for _, key, value in read_tsv(workdir / "facts.tsv", 3)}
        self.targets = read_tsv(workdir / "targets.tsv", 4)
        self.commands = read_tsv(workdir / "commands.tsv", 2)
        model = workdir / "model-bench.txt"
        self.model_bench = model.read_text(encoding="utf-8") if model.exists() else ""

    def figure(self, section, name):
        for row in self.figures:
            if row["section"] == section and row["name"] == name:
                return row
        return None

    def sweep(self, server):
        """(connections, figure) of GET /status for server, by connections."""
        points = []
        for row in self.figures:
            name = row["name"]
            if row["section"] == "status" and urlsplit(row["url"]).path == "/status" and (
                name == server or (name.startswith(server + "-c") and name[len(server) + 2:].isdigit())
            ):
                points.append((int(row["connections"]), row))
        return sorted(points, key=lambda point: point[0])

    def quiet(self, text):
        """text with the run's temporary folder shown as $WORK, and paths
        in the repository (bench/run.sh works from its root) relative."""
        return text.replace(self.workdir, "$WORK").replace(os.getcwd() + "/", "")


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def fmt(value, digits=2):
    """A figure for a table: thousands separated, `digits` decimals below 100."""
    value = number(value)
    if value == 0:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def cell(text):
    """text for a markdown table cell."""
    return str(text).replace("|", "\\|")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(text) for text in row) + " |" for row in rows]
    return "\n".join(lines)


# --- the chart ---------------------------------------------------------------

def log_axis(values):
    """(low, high) powers of ten around the positive values."""
    positive = [v for v in values if v > 0] or [1.0]
    return 10.0 ** math.floor(math.log10(min(positive))), 10.0 ** math.ceil(math.log10(max(positive)))


def decades(low, high):
    exponent = round(math.log10(low))
    while 10.0 ** exponent <= high * 1.0001:
        yield 10.0 ** exponent
        exponent += 1


def tick_label(value):
    return f"{value:,.0f}" if value >= 1 else f"{value:.3g}"


def cpu_panel(run, x0, y0, width):
    """Grouped bars: CPU µs per request by route and server, log scale.
    Returns (svg elements, height)."""
    groups = []
    for route, cells in ROUTES:
        bars = []
        for server, section, name in cells:
            row = run.figure(section, name)
            if row and number(row["cpu_us"]) > 0:
                bars.append((server, number(row["cpu_us"])))
        if bars:
            groups.append((route, bars))
    out = [f'<text x="{x0}" y="{y0 + 14}" class="title">CPU time per request (µs, log scale), '
           f"by route and server</text>"]
    if not groups:
        out.append(f'<text x="{x0}" y="{y0 + 40}">no figures in this run</text>')
        return out, 60
    label_width, bar_height, gap = 110, 14, 10
    plot_x, plot_w = x0 + label_width, width - label_width - 60
    top = y0 + 30
    height = sum(len(bars) * bar_height + gap for _, bars in groups)
    low, high = log_axis([value for _, bars in groups for _, value in bars])
    span = math.log10(high) - math.log10(low)

    def x_of(value):
        return plot_x + plot_w * (math.log10(value) - math.log10(low)) / span

    for tick in decades(low, high):
        x = x_of(tick)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{top + height + 14}" class="tick" text-anchor="middle">'
                   f"{tick_label(tick)}</text>")
    y = top
    for route, bars in groups:
        out.append(f'<text x="{x0}" y="{y + len(bars) * bar_height / 2 + 4:.1f}">{escape(route)}</text>')
        for server, value in bars:
            colour = SERVERS[server][1]
            end = max(x_of(value), plot_x + 1)
            out.append(f'<rect x="{plot_x}" y="{y}" width="{end - plot_x:.1f}" height="{bar_height - 2}" '
                       f'fill="{colour}"><title>{escape(SERVERS[server][0])}: {value:g} µs</title></rect>')
            out.append(f'<text x="{end + 4:.1f}" y="{y + bar_height - 4}" class="value">{fmt(value)}</text>')
            y += bar_height
        y += gap
    return out, height + 50


def latency_panel(run, x0, y0, width):
    """Lines: p99 latency of GET /status by connections, log scale.
    Returns (svg elements, height)."""
    lines = {server: [(c, number(row["p99"])) for c, row in run.sweep(server) if number(row["p99"]) > 0]
             for server in SERVERS}
    lines = {server: points for server, points in lines.items() if points}
    out = [f'<text x="{x0}" y="{y0 + 14}" class="title">p99 latency of GET /status (ms, log scale), '
           f"by concurrent connections</text>"]
    if not lines:
        out.append(f'<text x="{x0}" y="{y0 + 40}">no figures in this run</text>')
        return out, 60
    plot_x, plot_w, top, plot_h = x0 + 110, width - 150, y0 + 30, 180
    connections = sorted({c for points in lines.values() for c, _ in points})
    low, high = log_axis([p for points in lines.values() for _, p in points])
    span = math.log10(high) - math.log10(low)

    def x_of(c):
        if len(connections) == 1:
            return plot_x + plot_w / 2
        return plot_x + plot_w * connections.index(c) / (len(connections) - 1)

    def y_of(value):
        return top + plot_h - plot_h * (math.log10(value) - math.log10(low)) / span

    for tick in decades(low, high):
        y = y_of(tick)
        out.append(f'<line x1="{plot_x}" y1="{y:.1f}" x2="{plot_x + plot_w}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{plot_x - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                   f"{tick_label(tick)}</text>")
    for c in connections:
        out.append(f'<text x="{x_of(c):.1f}" y="{top + plot_h + 16}" class="tick" text-anchor="middle">{c}</text>')
    out.append(f'<text x="{plot_x + plot_w / 2:.1f}" y="{top + plot_h + 32}" class="tick" '
               f'text-anchor="middle">connections</text>')
    for server, points in lines.items():
        name, colour = SERVERS[server]
        path = " ".join(f"{x_of(c):.1f},{y_of(p):.1f}" for c, p in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for c, p in points:
            out.append(f'<circle cx="{x_of(c):.1f}" cy="{y_of(p):.1f}" r="3" fill="{colour}">'
                       f"<title>{escape(name)}, {c} connections: p99 {p:g} ms</title></circle>")
    return out, plot_h + 70


def chart(run):
    width, margin = 760, 16
    cpu, cpu_height = cpu_panel(run, margin, margin, width - 2 * margin)
    latency, latency_height = latency_panel(run, margin, margin + cpu_height + 10, width - 2 * margin)
    height = margin + cpu_height + 10 + latency_height + margin
    legend = []
    x = margin + 110
    for server, (name, colour) in SERVERS.items():
        legend.append(f'<rect x="{x:.1f}" y="{height - 4}" width="10" height="10" fill="{colour}"/>')
        legend.append(f'<text x="{x + 14:.1f}" y="{height + 5}">{escape(name)}</text>')
        x += 28 + 6 * len(name)
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" '
        f'viewBox="0 0 {width} {height + 20}" font-family="sans-serif" font-size="12">',
        "<style>.title { font-weight: bold; } .grid { stroke: #ddd; } "
        ".tick, .value { fill: #555; font-size: 11px; }</style>",
        f'<rect width="{width}" height="{height + 20}" fill="white"/>',
        *cpu, *latency, *legend, "</svg>", ""])


# --- the markdown ------------------------------------------------------------

def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "unknown"
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return f"{cpu}, {os.cpu_count()} cores, {memory} of memory, Linux {platform.release()}"


def head(run, args, md_path, svg_path):
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if line[3:] not in (str(md_path), str(svg_path))]
    try:
        version = subprocess.run([args.binary, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        version = ""
    sections = args.sections.split()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# wren benchmarks",
        "",
        f"Written by `make bench` (`bench/run.sh`, then `bench/report.py`) on {now}, from commit "
        f"`{commit}`{' with uncommitted changes' if changed else ''}; "
        f"{version or 'wren'} ({fmt(run.facts.get('binary_bytes', os.path.getsize(args.binary)))} bytes). "
        f"Every figure below comes from this one run; `bench/README.md` says how each is measured.",
        "",
        f"- **Machine**: {machine()}. Servers, wrk and curl share these cores over loopback.",
        f"- **Load average** (1, 5, 15 min) before the run: {run.facts.get('load_start', '?')}; "
        f"after: {run.facts.get('load_end', '?')}.",
        f"- **Settings**: `BENCH_SECONDS={args.seconds}` (each timed wrk run, after a 1 s warm-up)"
        + ("" if sections == ALL_SECTIONS else f"; `BENCH_ONLY=\"{args.sections}\"`: the other "
           "sections did not run, so their figures are missing"),
    ]
    if args.note:
        lines.append(f"- **Note**: {args.note}")
    rel = os.path.relpath(svg_path, md_path.parent)
    lines += ["", f"![CPU per request by route and server; p99 latency by concurrency]({rel})", ""]
    return lines


def targets_part(run):
    if not run.targets:
        return []
    rows = [(label, f"**{verdict}**", detail) for _, label, verdict, detail in run.targets]
    return ["## Targets", "",
            "Printed by each section as it runs; a MISS is reported, never a failure.", "",
            table(["target", "", "figure"], rows), ""]


def routes_part(run):
    rows = []
    for route, cells in ROUTES:
        wren = run.figure(cells[0][1], cells[0][2])
        for server, section, name in cells:
            row = run.figure(section, name)
            if row is None:
                continue
            ratio = ""
            if server != "wren" and wren and number(row["cpu_us"]) > 0:
                ratio = f"{number(wren['cpu_us']) / number(row['cpu_us']):.3f}"
            rows.append((route, SERVERS[server][0], row["connections"], fmt(row["rps"]), fmt(row["p50"], 3),
                         fmt(row["p99"], 3), fmt(row["cpu_us"]), ratio, fmt(row["rss"], 1),
                         row["errors"] or "0"))
    if not rows:
        return []
    return ["## Routes side by side", "",
            "Each server on each route over keep-alive connections; CPU is the server's own "
            "(user + system, all its processes and threads) divided by the requests served; "
            "RSS is the largest sampled during the run (summed over processes).", "",
            table(["route", "server", "connections", "req/s", "p50 ms", "p99 ms", "CPU µs/req",
                   "wren's CPU ÷ this", "peak RSS MiB", "errors"], rows), ""]


def sweep_part(run):
    sweeps = {server: dict(run.sweep(server)) for server in SERVERS}
    connections = sorted({c for points in sweeps.values() for c in points})
    if not connections:
        return []
    servers = [server for server in SERVERS if sweeps[server]]
    rows = []
    for c in connections:
        cells = [str(c)]
        for server in servers:
            row = sweeps[server].get(c)
            cells.append(f"{fmt(row['rps'])} / {fmt(row['p99'], 3)} / {fmt(row['cpu_us'])}" if row else "")
        rows.append(cells)
    return ["## GET /status by concurrency", "",
            "req/s / p99 ms / CPU µs per request, at each number of connections (wrk, 2 threads; 1 for 1).",
            "", table(["connections"] + [SERVERS[s][0] for s in servers], rows), ""]


def file_part(run):
    f = run.facts
    if "file_upload_mbps" not in f:
        return []

    def ratio(a, b):
        return f"{number(a) / number(b):.2f}" if number(b) > 0 else ""

    rows = [
        ("upload: wren, `PUT /api/file/{key}` (curl -T)", f["file_upload_mbps"],
         ratio(f["file_upload_mbps"], f.get("file_dd_mbps")) + " of dd", f.get("file_upload_cpu_s", "")),
        ("write: `dd bs=1M conv=fsync`, same file system", f.get("file_dd_mbps", ""), "", ""),
        ("download: wren, `GET /api/file/{key}`", f.get("file_download_mbps", ""),
         ratio(f.get("file_download_mbps"), f.get("file_nginx_mbps")) + " of nginx",
         f.get("file_download_cpu_s", "")),
        ("download: nginx, the same file (sendfile on)", f.get("file_nginx_mbps", ""), "",
         f.get("file_nginx_cpu_s", "")),
    ]
    return ["## A 200 MiB file", "",
            f"Random bytes, on {f.get('file_system', '?')}; MB/s (10^6 bytes) of the median "
            "of 3 transfers each.", "",
            table(["transfer", "MB/s", "ratio", "server CPU s per transfer"], rows), "",
            f"wren's peak RSS over the round trip (VmHWM): **{f.get('file_peak_rss_mib', '?')} MiB** "
            f"(largest VmRSS sampled during the transfers: {f.get('file_sampled_rss_mib', '?')} MiB; "
            f"before them, after the sign-up's and sign-in's password hashing: "
            f"{f.get('file_rss_before_mib', '?')} MiB).", ""]


def footprint_part(run):
    f = run.facts
    rows = []
    if "wren_idle_rss_start_mib" in f:
        loaded = [number(row["rss"]) for c, row in run.sweep("wren")]
        predict = run.figure("status", "wren-predict")
        if predict:
            loaded.append(number(predict["rss"]))
        rows += [("idle RSS, 1 s after start", f"{f['wren_idle_rss_start_mib']} MiB"),
                 ("RSS under load (largest sampled over the GET /status and /predict runs, "
                  "up to 200 connections)", f"{max(loaded, default=0):.2f} MiB"),
                 ("idle RSS, 2 s after that load", f"{f['wren_idle_rss_after_load_mib']} MiB")]
    if "binary_bytes" in f:
        image = f.get("image_bytes", "")
        rows += [("static binary", f"{fmt(f['binary_bytes'])} bytes"),
                 ("image (FROM scratch, `scripts/image.sh`; layers uncompressed)",
                  f"{fmt(image)} bytes" if image.isdigit() else image),
                 ("start-up to the first 200 from GET /status, median of 9 starts",
                  f"{f.get('startup_ms', '?')} ms"),
                 ("start-up on an empty data folder (creates the database and secret)",
                  f"{f.get('startup_first_ms', '?')} ms")]
    if not rows:
        return []
    return ["## wren's footprint", "", table(["", ""], rows), ""]


def event_part(run):
    f = run.facts
    if "event_alerts_wren" not in f:
        return []
    return ["## POST /event alerts", "",
            "Alerts per 1000 answers; a server judging each event on the user's whole history gives "
            "about `30=125 123=250 300=125 500=375 1100=125`. wren commits every event to SQLite "
            "(fsync) before answering; the Flask seed keeps history in each worker's memory.", "",
            table(["server", "alerts per 1000 answers"],
                  [("wren", f"`{f['event_alerts_wren']}`"),
                   ("Flask + gunicorn", f"`{f.get('event_alerts_flask', '')}`")]), ""]


def scale_part(run):
    setups = [("wren-sqlite", "1 instance, SQLite in its data folder"),
              ("wren-pg", "1 instance, PostgreSQL"),
              ("wren-pg-x3", "3 instances, one PostgreSQL, nginx balancing per request")]
    rows, base = [], run.figure("scale", "wren-sqlite")
    for name, setup in setups:
        row = run.figure("scale", name)
        if row is None:
            continue
        ratio = (f"{float(row['rps']) / float(base['rps']):.2f}×"
                 if base and float(base["rps"]) > 0 else "")
        rows.append((setup, fmt(row["rps"]), ratio, fmt(row["p50"], 3), fmt(row["p99"], 3),
                     fmt(row["cpu_us"]), row["errors"] or "0"))
    if not rows:
        return []
    database = run.facts.get("scale_postgres", "PostgreSQL")
    return ["## POST /event as instances scale out", "",
            f"The event load above against one wren on SQLite, one on {database}, and three on "
            "the same database behind nginx. Each answer comes after its event's commit is on disk "
            "(SQLite `synchronous = FULL`; PostgreSQL's defaults, `fsync` and "
            "`synchronous_commit = on`). CPU per event counts every serving process: wren's, "
            "PostgreSQL's and nginx's. All of them share this machine's cores, so the three "
            "instances show what one database sustains, not what three hosts would.", "",
            table(["setup", "events/s", "× 1 on SQLite", "p50 ms", "p99 ms", "CPU µs/event",
                   "errors"], rows), ""]


def all_part(run):
    rows = [(row["section"], row["name"], urlsplit(row["url"]).scheme + " " + urlsplit(row["url"]).path,
             row["connections"], fmt(row["rps"]), row["requests"], fmt(row["p50"], 3), fmt(row["p99"], 3),
             fmt(row["cpu_us"]), fmt(row["rss"], 1), row["errors"] or "0")
            for row in run.figures]
    if not rows:
        return []
    return ["## Every wrk run", "",
            "`-hs` rows open a new TLS connection per request; `-off` and `-on` rows are wren with "
            "/metrics and rate limits both off and both on; `-1client` rows one connection.", "",
            table(["section", "name", "URL", "conns", "req/s", "requests", "p50 ms", "p99 ms",
                   "CPU µs/req", "RSS MiB", "errors"], rows), ""]


def facts_part(run):
    shown = {"file_upload_mbps", "file_dd_mbps", "file_download_mbps", "file_nginx_mbps", "file_system",
             "file_peak_rss_mib", "file_sampled_rss_mib", "file_rss_before_mib", "file_upload_cpu_s",
             "file_download_cpu_s", "file_nginx_cpu_s", "wren_idle_rss_start_mib",
             "wren_idle_rss_after_load_mib", "binary_bytes", "image_bytes", "startup_ms", "startup_first_ms",
             "event_alerts_wren", "event_alerts_flask", "load_start", "load_end", "scale_postgres"}
    rows = [(key, value) for key, value in run.facts.items() if key not in shown]
    if not rows:
        return []
    return ["## Other figures", "", table(["", ""], rows), ""]


def model_part(run):
    if not run.model_bench.strip():
        return []
    return ["## Without sockets (`cargo bench`)", "", "```text", run.model_bench.rstrip(), "```", ""]


def commands_part(run):
    # Each server had its own port: one line per distinct load.
    wrk = sorted({re.sub(r"(127\.0\.0\.1|localhost):[0-9]+", r"\1:$PORT", run.quiet(row["command"]))
                  for row in run.figures})
    # A server started several times (the start-up timing) once.
    servers = {}
    for name, command in run.commands:
        servers.setdefault(name, f"{name}: {run.quiet(command)}")
    lines = ["## Commands", "",
             "`$WORK` is the run's temporary folder; ports (`$PORT`) are free ones picked at random.", ""]
    if servers:
        lines += ["Servers and transfers:", "", "```text", *servers.values(), "```", ""]
    if wrk:
        lines += ["Load (each after a 1 s warm-up with the same arguments):", "", "```text", *wrk, "```", ""]
    return lines if servers or wrk else []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--markdown", required=True, type=Path)
    parser.add_argument("--svg", required=True, type=Path)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seconds", required=True)
    parser.add_argument("--sections", required=True)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    run = Run(args.workdir)
    parts = (head(run, args, args.markdown, args.svg) + targets_part(run) + routes_part(run)
             + sweep_part(run) + file_part(run) + footprint_part(run) + event_part(run)
             + scale_part(run)
             + all_part(run) + facts_part(run) + model_part(run) + commands_part(run))
    args.svg.write_text(chart(run), encoding="utf-8")
    args.markdown.write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

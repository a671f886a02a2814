"""The probes of issue 29, run against a source tree: the explorer server (RSS under a page that
never reads and under every upload, foreign Origin/Host) and the CLI (oversized and broken input
files, a missing [wan] extra). Everything runs on loopback, under ``ulimit -v`` (the address-space
cap below), with a timeout per probe.

    python benchmarks/input_limits.py --src src --name after
    python benchmarks/input_limits.py --src /tmp/base/src --name before   # the code before the fix

Writes ``benchmarks/results/input-limits/<name>.json``; ``--table`` prints the before/after table
from both JSON files.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "input-limits"
CAP_KB = 4_000_000  # ulimit -v for the server and every CLI probe
PROBE_TIMEOUT = 240
SLOW_READER_SECONDS = 150
BLOCK_WAN = """
import importlib.machinery as m
_find = m.PathFinder.find_spec.__func__
def find_spec(cls, name, path=None, target=None):
    if name.split(".")[0] in ("diffusers", "accelerate", "peft"):
        return None  # as if the [wan] extra were not installed
    return _find(cls, name, path, target)
m.PathFinder.find_spec = classmethod(find_spec)
"""


def env_for(src: Path, block_wan: bool = False, extra: Path | None = None) -> dict:
    paths = [str(src)] + ([str(extra)] if block_wan and extra else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}


def capped(cmd: list[str], env: dict, cwd: Path, timeout: float = PROBE_TIMEOUT) -> dict:
    """Run ``cmd`` under the address-space cap; rc, seconds, peak RSS (MB), the last stderr line and
    whether a traceback was printed."""
    script = f'ulimit -v {CAP_KB}; exec /usr/bin/time -f "PEAK_KB %M" "$@"'
    t0 = time.monotonic()
    try:
        p = subprocess.run(["bash", "-c", script, "bash", *cmd], env=env, cwd=cwd, capture_output=True,
                           text=True, timeout=timeout)
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    peak = re.findall(r"PEAK_KB (\d+)", err)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("PEAK_KB")
             and "Command exited" not in line and "Command terminated" not in line]
    return {"rc": rc, "seconds": round(time.monotonic() - t0, 1),
            "peak_rss_mb": round(int(peak[-1]) / 1024) if peak else None,
            "traceback": "Traceback (most recent call last)" in err,
            "memory_error": "MemoryError" in err or "Cannot allocate memory" in err or "bad_alloc" in err,
            "stderr_lines": len(lines), "last_line": lines[-1][:300] if lines else ""}


# -- files -------------------------------------------------------------------------------------------
def make_files(d: Path) -> dict:
    import numpy as np
    from PIL import Image

    from tests.pipeline.bombs import zero_npz, zero_png

    files = {}
    Image.new("RGB", (64, 64), (120, 80, 40)).save(d / "ok.png")
    zero_npz(d / "bomb.npz", "depth", (16384, 16384))  # ~1 MB, 1 GiB inflated
    zero_png(d / "bomb12000.png", 12000, 12000)  # ~0.4 MB, 432 MB as RGB
    zero_png(d / "bomb16.png", 12000, 12000, "I;16")  # 16-bit depth, ~0.3 MB
    zero_png(d / "huge20000.png", 20000, 20000, "L")  # 400 MP
    np.savez(d / "shape.npz", depth=np.ones((10, 10), np.float32))
    Image.fromarray(np.full((10, 10), 2000, np.uint16)).save(d / "shape16.png")
    with open(d / "million.txt", "w") as f:
        f.write("https://example.invalid/video\n")
        row = "0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"
        for i in range(10**6):
            f.write(f"{i} {row}\n")
    # the largest inputs accepted: a 33.5 MP image (8192x4096) and its float64 depth (256 MiB)
    ramp = np.linspace(0, 255, 8192, dtype=np.float32)[None, :].repeat(4096, 0).astype(np.uint8)
    Image.fromarray(np.stack([ramp, ramp[:, ::-1], ramp], -1)).save(d / "big8k.png")
    np.save(d / "big8k.npy", np.full((4096, 8192), 3.0, np.float64))
    for k, v in {"ok": "ok.png", "bomb_npz": "bomb.npz", "bomb_png": "bomb12000.png", "bomb16": "bomb16.png",
                 "huge": "huge20000.png", "shape_npz": "shape.npz", "shape_png": "shape16.png",
                 "million": "million.txt"}.items():
        files[k] = d / v
    # trajectory files of the issue (their parsing belongs to the camera-format reader)
    (d / "nested.json").write_text('{"format": "mirage-trajectory", "frames": ' + "[" * 100000 + "]" * 100000 + "}")
    (d / "bigint.json").write_text('{"format": "mirage-trajectory", "version": 1, "height": 1' + "0" * 4300 + "}")
    base = {"camera_angle_x": 0.9, "w": 64, "h": 64,
            "frames": [{"file_path": f"f{i}.png", "transform_matrix": np.eye(4).tolist()} for i in range(5)]}
    for name, change in {"nullframe": lambda t: t["frames"].__setitem__(2, None),
                         "flx": lambda t: t.update(fl_x="x"), "angle0": lambda t: t.update(camera_angle_x=0)}.items():
        t = json.loads(json.dumps(base))
        change(t)
        (d / f"{name}.json").write_text(json.dumps(t))
    # data import: a RealEstate10K clip with frames and depth; one frame unreadable, one all-NaN depth
    from tests.data.conftest import render_clip, write_formats

    clip = render_clip()
    formats = write_formats(clip, d / "formats")
    re10k = formats["re10k"]
    for name in ("badframe", "nandepth"):
        import shutil

        shutil.copytree(re10k, d / name)
    ts = clip.timestamps
    (d / "badframe" / "frames" / "seq" / f"{ts[0]}.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for t in ts:
        np.save(d / "nandepth" / "depth" / "seq" / f"{t}.npy", np.full(np.load(d / "nandepth" / "depth" / "seq" / f"{t}.npy").shape, np.nan, np.float32))
    return files


def make_heavy_world(d: Path, env: dict) -> Path:
    """A world file of the tiny backbone on room 0 whose config asks for 3000 steps (valid digest)."""
    code = ("from dataclasses import replace; from mirage.explore.worlds import build_world, WorldMaker\n"
            "w = build_world(scene=0, family='room')\n"
            "m = WorldMaker(w.backbone, replace(w.config, steps=3000), w.start, depth_estimator=w.depth_estimator,"
            " masker=w.masker, session_class=w.session_class, session_options=w.session_options)\n"
            f"m.new().save({str(d / 'heavy.mirage-world')!r})\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=d)
    return d / "heavy.mirage-world"


# -- the server -----------------------------------------------------------------------------------------
def reset_peak(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM), so each probe reports its own peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def rss_mb(pid: int) -> tuple[float, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    get = lambda k: int(re.search(rf"{k}:\s+(\d+) kB", text).group(1)) / 1024  # noqa: E731
    return round(get("VmRSS"), 1), round(get("VmHWM"), 1)


class Server:
    def __init__(self, env: dict, cwd: Path, *args: str) -> None:
        script = f'ulimit -v {CAP_KB}; exec "$@"'
        self.proc = subprocess.Popen(["bash", "-c", script, "bash", sys.executable, "-m", "mirage", "explore",
                                      "--port", "0", "--scene", "0", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            raise RuntimeError(f"the server did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> tuple[float, float]:
        """(RSS, peak RSS since the last reset) in MB of the server process."""
        return rss_mb(self.pid) if self.alive() else (None, None)

    @property
    def pid(self) -> int:  # bash exec'd into python: same pid
        return self.proc.pid

    def reset_peak(self) -> None:
        reset_peak(self.pid)

    def stop(self) -> str:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.stderr.read()


class RawSocket:
    """A WebSocket client on a plain socket (small receive buffer); ``recv_text`` reads one text frame."""

    def __init__(self, port: int, host: str = "127.0.0.1", origin: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"Origin: {origin}\r\n" if origin else ""
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            reply += chunk
        self.status = int(reply.split(b" ")[1]) if reply.startswith(b"HTTP/") else None

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def recv(self) -> tuple[int, bytes]:
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(8))[0]
        return b0 & 0x0F, self._exact(n)

    def send_text(self, text: str) -> bool:
        data, mask = text.encode(), os.urandom(4)
        head = bytes([0x81]) + (bytes([0x80 | len(data)]) if len(data) < 126
                                else bytes([0x80 | 126]) + struct.pack(">H", len(data)))
        try:
            self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
            return True
        except OSError:
            return False

    def hello(self) -> dict:
        """The server's hello; :class:`ConnectionError` with the reason when it refuses (full)."""
        while True:
            op, data = self.recv()
            if op == 1:
                m = json.loads(data)
                if m.get("type") == "hello":
                    return m
                if m.get("type") == "full":
                    raise ConnectionError(m.get("message"))

    def close(self) -> None:
        self.sock.close()


def upload(url: str, fields: dict[str, tuple[str, bytes]], timeout: float = PROBE_TIMEOUT) -> tuple[int, str, float]:
    boundary = "----mirage" + os.urandom(8).hex()
    body = b""
    for name, (filename, data) in fields.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()[:300], time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()[:300], time.monotonic() - t0
    except Exception as e:  # noqa: BLE001 - a dead server or a timeout is a result here
        return -1, f"{type(e).__name__}: {e}"[:300], time.monotonic() - t0


def one_step_seconds(ws: RawSocket, timeout: float = 120.0) -> float | None:
    t0 = time.monotonic()
    ws.send_text(json.dumps({"type": "move", "forward": 0.25}))
    ws.sock.settimeout(timeout)
    try:
        while True:
            op, data = ws.recv()
            if op == 2 and b'"type":"chunk"' in data[:400]:
                return round(time.monotonic() - t0, 2)
            if op == 8:
                return None
    except (socket.timeout, ConnectionError):
        return None


def slow_reader(server: "Server", seconds: float = SLOW_READER_SECONDS) -> dict:
    """A page that reads its hello, then sends a move every 50 ms and never reads: the server's RSS
    over time, and whether (when) its session is closed."""
    time.sleep(1.0)
    server.reset_peak()
    before = server.rss()
    slow = RawSocket(server.port)
    slow_sid = slow.hello()["session"]  # then it never reads again

    def session_open() -> bool:
        try:
            with urllib.request.urlopen(f"{server.url}/api/sessions/{slow_sid}/path.json", timeout=60) as r:
                return r.status == 200
        except urllib.error.HTTPError as e:
            return e.code != 404

    t0, sent, series, closed_after = time.monotonic(), 0, [], None
    while time.monotonic() - t0 < seconds and server.alive():
        if not slow.send_text(json.dumps({"type": "move", "forward": 0.25})):
            break
        sent += 1
        time.sleep(0.05)
        if sent % 40 == 0:
            series.append((round(time.monotonic() - t0, 1), server.rss()[0]))
            if not session_open():
                closed_after = round(time.monotonic() - t0, 1)
                break
    still_open = session_open() if closed_after is None else False
    slow.close()
    return {"seconds": round(time.monotonic() - t0, 1), "moves_sent": sent, "rss_before_mb": before,
            "rss_after_mb": server.rss(), "rss_series": series, "alive": server.alive(),
            "session_still_open": still_open, "closed_after_s": closed_after}


def server_probes(env: dict, d: Path, files: dict, world: Path) -> dict:
    out = {}
    server = Server(env, d)
    try:
        ws = RawSocket(server.port)
        ws.hello()
        out["baseline_step_s"] = one_step_seconds(ws)
        ws.close()
        time.sleep(1.0)
        out["rss_start_mb"] = server.rss()
        for name, fields in {
            "npz 1 MB -> 1 GiB depth": {"image": ("ok.png", files["ok"].read_bytes()),
                                        "depth": ("bomb.npz", files["bomb_npz"].read_bytes())},
            "12000^2 PNG (0.4 MB)": {"image": ("big.png", files["bomb_png"].read_bytes())},
            "16-bit depth PNG 12000^2": {"image": ("ok.png", files["ok"].read_bytes()),
                                         "depth": ("d.png", files["bomb16"].read_bytes())},
            "20000^2 PNG": {"image": ("huge.png", files["huge"].read_bytes())},
            "depth .npz of the wrong shape": {"image": ("ok.png", files["ok"].read_bytes()),
                                              "depth": ("d.npz", files["shape_npz"].read_bytes())},
            "depth .png of the wrong shape": {"image": ("ok.png", files["ok"].read_bytes()),
                                              "depth": ("d.png", files["shape_png"].read_bytes())},
            "not an image": {"image": ("notes.png", b"hello")},
        }.items():
            if not server.alive():
                break
            ws = RawSocket(server.port)  # a fresh tab per probe
            try:
                sid = ws.hello()["session"]
            except ConnectionError as err:
                out[f"upload: {name}"] = {"status": None, "detail": f"no tab: {err}", "rss_after_mb": server.rss(),
                                          "alive": server.alive()}
                continue
            server.reset_peak()
            status, detail, seconds = upload(f"{server.url}/api/sessions/{sid}/start", fields)
            out[f"upload: {name}"] = {"status": status, "detail": detail, "seconds": round(seconds, 1),
                                      "rss_after_mb": server.rss(), "alive": server.alive(),
                                      "names_tmp_path": "/tmp" in detail, "names_flag": "`--" in detail}
            ws.close()
        if server.alive():
            ws = RawSocket(server.port)
            try:
                sid = ws.hello()["session"]
            except ConnectionError as err:
                sid = None
                out["upload: world with steps=3000"] = {"status": None, "detail": f"no tab: {err}"}
        if server.alive() and sid is not None:
            server.reset_peak()
            status, detail, seconds = upload(f"{server.url}/api/sessions/{sid}/world",
                                             {"world": ("heavy.mirage-world", world.read_bytes())})
            entry = {"status": status, "detail": detail, "rss_after_mb": server.rss()}
            if status == 200:
                entry["next_step_s"] = one_step_seconds(ws, timeout=60)
            out["upload: world with steps=3000"] = entry
            ws.close()
        # foreign Host and Origin
        if server.alive():
            req = urllib.request.Request(f"{server.url}/api/health", headers={"Host": f"evil.example:{server.port}"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    out["foreign Host: GET /api/health"] = r.status
            except urllib.error.HTTPError as e:
                out["foreign Host: GET /api/health"] = e.code
            evil = RawSocket(server.port, origin="http://evil.example")
            out["foreign Origin: WebSocket handshake"] = evil.status
            evil.close()
            own = RawSocket(server.port, origin=f"http://127.0.0.1:{server.port}")
            out["own Origin: WebSocket handshake"] = own.status
            own.close()
        # a page that sends moves and never reads
        if server.alive():
            try:
                out["slow reader"] = slow_reader(server)
            except ConnectionError as err:  # e.g. the server is full of tabs that never closed
                out["slow reader"] = {"error": str(err), "rss_after_mb": server.rss(), "alive": server.alive()}
        out["rss_end_mb"] = server.rss()
    finally:
        stderr = server.stop()
        out["server_stderr_tail"] = stderr[-1500:]
        out["server_tracebacks"] = stderr.count("Traceback")
    return out


def cli_probes(env: dict, env_nowan: dict, d: Path, files: dict) -> dict:
    py = [sys.executable, "-m", "mirage"]
    gen = py + ["generate", "--out", str(d / "out"), "--no-progress", "--steps", "1"]
    probes = {
        "generate --depth npz 1 MB -> 1 GiB": gen + ["--image", "ok.png", "--depth", "bomb.npz"],
        "generate --image 12000^2 PNG": gen + ["--image", "bomb12000.png"],
        "generate --depth 16-bit PNG 12000^2": gen + ["--image", "ok.png", "--depth", "bomb16.png"],
        "generate --image 20000^2 PNG": gen + ["--image", "huge20000.png"],
        "generate --depth .npz wrong shape": gen + ["--image", "ok.png", "--depth", "shape.npz", "--frames", "5"],
        "generate --depth .png wrong shape": gen + ["--image", "ok.png", "--depth", "shape16.png", "--frames", "5"],
        "generate the largest accepted inputs (8192x4096 image + float64 depth), 5 frames":
            gen + ["--image", "big8k.png", "--depth", "big8k.npy", "--frames", "5"],
        "generate 10^6-line RealEstate10K --scene 0": gen + ["--trajectory", "million.txt", "--scene", "0"],
        "generate deeply nested JSON (carve-out)": gen + ["--trajectory", "nested.json"],
        "generate 4300-digit int (carve-out)": gen + ["--trajectory", "bigint.json"],
        "generate transforms frames[i] null (carve-out)": gen + ["--trajectory", "nullframe.json"],
        "generate transforms fl_x 'x' (carve-out)": gen + ["--trajectory", "flx.json"],
        "generate transforms camera_angle_x 0 (carve-out)": gen + ["--trajectory", "angle0.json"],
        "data import: unreadable PNG frame": py + ["data", "import", "--cameras", "badframe/cameras/seq.txt",
                                                   "--images", "badframe/frames", "--depth-dir", "badframe/depth",
                                                   "--out", str(d / "imp1"), "--no-progress"],
        "data import: all-NaN depth": py + ["data", "import", "--cameras", "nandepth/cameras/seq.txt",
                                            "--images", "nandepth/frames", "--depth-dir", "nandepth/depth",
                                            "--out", str(d / "imp2"), "--no-progress"],
    }
    out = {name: capped(cmd, env, d) for name, cmd in probes.items()}
    for name, cmd in {
        "wan tiny-random without [wan]": py + ["wan", "tiny-random", "--out", str(d / "w")],
        "generate --backbone wan22 without [wan]": gen + ["--backbone", "wan22", "--weights", str(d)],
        "train wan without [wan]": py + ["train", "wan", "--weights", str(d), "--data", str(d), "--out",
                                         str(d / "t"), "--stage", "branch", "--max-steps", "1"],
    }.items():
        out[name] = capped(cmd, env_nowan, d)
    return out


def table(before: dict, after: dict) -> str:
    def cli_cell(r):
        if r is None:
            return "–"
        what = ("traceback" if r["traceback"] else "one line" if r["stderr_lines"] <= 1 else f"{r['stderr_lines']} lines")
        return f"rc {r['rc']}, {what}, peak {r['peak_rss_mb']} MB, {r['seconds']} s"

    rows = ["| probe | before | after |", "|---|---|---|"]
    for name in after["cli"]:
        rows.append(f"| {name} | {cli_cell(before['cli'].get(name))} | {cli_cell(after['cli'][name])}"
                    f" — {after['cli'][name]['last_line'][:140]} |")
    for name, a in after["server"].items():
        if not name.startswith("upload"):
            continue
        b = before["server"].get(name, {})
        cell = lambda r: (f"{r.get('status')}, RSS (now, peak) {r.get('rss_after_mb')} MB"  # noqa: E731
                          + (f", next step {r['next_step_s']} s" if "next_step_s" in r else "")
                          + ("" if r.get("alive", True) else ", SERVER DEAD")) if r else "–"
        rows.append(f"| explore {name} | {cell(b)} | {cell(a)} — {a.get('detail', '')[:120]} |")
    for name in ("foreign Host: GET /api/health", "foreign Origin: WebSocket handshake",
                 "own Origin: WebSocket handshake"):
        rows.append(f"| explore {name} | {before['server'].get(name)} | {after['server'].get(name)} |")
    sb, sa = before["server"].get("slow reader", {}), after["server"].get("slow reader", {})
    slow = lambda r: (f"RSS {r.get('rss_before_mb')} → {r.get('rss_after_mb')} MB (RSS, peak) after "  # noqa: E731
                      f"{r.get('seconds')} s, {r.get('moves_sent')} moves; session "
                      f"{'still open' if r.get('session_still_open') else 'closed'}"
                      + (f" after {r['closed_after_s']} s" if r.get("closed_after_s") else "")
                      + ("" if r.get("alive", True) else ", SERVER DEAD"))
    rows.append(f"| explore: a page that sends moves and never reads | {slow(sb)} | {slow(sa)} |")
    for extra in sorted(RESULTS.glob("after-slow-*.json")):
        r = json.loads(extra.read_text())
        rows.append(f"| explore: a page that never reads, server with --max-send-mib {r['max_send_mib']} | – | "
                    f"{slow(r['slow reader'])} |")
    rows.append(f"| explore server RSS at the end (RSS, peak since the last probe) | "
                f"{before['server'].get('rss_end_mb')} | {after['server'].get('rss_end_mb')} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=str(ROOT / "src"))
    ap.add_argument("--name", default="after")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--slow-only", metavar="MIB", type=float,
                    help="only the never-reading page, against a server with --max-send-mib MIB")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.table:
        before = json.loads((RESULTS / "before.json").read_text())
        after = json.loads((RESULTS / "after.json").read_text())
        text = table(before, after)
        (RESULTS / "table.md").write_text(text + "\n")
        print(text)
        return
    if args.slow_only:
        server = Server(env_for(Path(args.src).resolve()), ROOT, "--max-send-mib", str(args.slow_only))
        try:
            result = {"max_send_mib": args.slow_only, "slow reader": slow_reader(server, 120)}
        finally:
            result["server_stderr_tail"] = server.stop()[-1500:]
        (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1)[:3000])
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "block").mkdir()
        (d / "block" / "sitecustomize.py").write_text(BLOCK_WAN)
        env = env_for(Path(args.src).resolve())
        env_nowan = env_for(Path(args.src).resolve(), block_wan=True, extra=d / "block")
        env["PYTHONPATH"] += os.pathsep + str(ROOT)  # tests.* helpers for the world file
        files = make_files(d)
        world = make_heavy_world(d, env_for(ROOT / "src"))
        result = {"src": args.src, "cap_kb": CAP_KB, "machine": "2 shared CPU cores, no GPU (other jobs running)",
                  "server": server_probes(env, d, files, world), "cli": cli_probes(env, env_nowan, d, files)}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1)[:6000])


if __name__ == "__main__":
    main()

"""Load test of the Streamlit app: N concurrent sessions speaking Streamlit's own protocol.

Starts ``streamlit run streamlit_app.py`` on 127.0.0.1 (a free port), then opens ``--sessions``
websocket sessions at once on ``/_stcore/stream`` (subprotocol ``streamlit``), exactly as a
browser tab does: each sends a ``BackMsg`` whose ``rerun_script`` ``ClientState`` names the
page (``page_script_hash``, ``page_name``) and the widget states, and reads ``ForwardMsg``s
until ``script_finished``. The page list comes from the app's own ``navigation`` message, i.e.
from ``streamlit_app.py``, so new pages are load-tested as they appear.

Per session and round: the default page (the first round includes opening the session), then
every other page, then, on each page that draws one, a change of its first keyed number input
outside a form (e.g. the Posterior page's test-image index): value + 1, a rerun of that page
with the new widget state. The Models page is only loaded (training on it is out of scope).

By default there is no pause: every session sends its next step as soon as the last one
finished, so all sessions click at once, over and over (a burst, the worst case). ``--think S``
models people instead: before each page load or widget change, a session waits a random
think time drawn uniformly from [0, 2 S] seconds (mean S; ``--seed`` fixes the draws). Think
time is not part of any step's time.

Every step is timed from sending the rerun to ``script_finished``. An error is a timeout, a
dropped connection, a script that did not finish successfully, or an exception element in the
page (``st.exception`` / an uncaught error shown in the app). A widget change whose page
comes back identical to the page before is counted under ``unchanged`` (the change had no
visible effect). Prints a table (p50 / p95 / max seconds and errors per interaction) and, last,
one JSON line with everything.

Usage::

    python bench/load_test.py                        # 20 sessions, 1 round, no pause
    python bench/load_test.py --think 5              # ... users pausing 0-10 s between steps
    python bench/load_test.py --sessions 30 --rounds 2 --timeout 300
    python bench/load_test.py --url http://127.0.0.1:8501   # an app that is already running
    python bench/load_test.py --sessions 40 --replicas 2 --settle 20   # 2 processes + nginx
    python bench/load_test.py --replicas 2 --think 5 --kill-replica r0 --reload-on-error

Each session is a browser of its own: it GETs the page first and keeps the cookies it is
given, so that behind the balancer (``scripts/serve.py``, started by ``--replicas N``) the
sticky cookie spreads the sessions over the replicas; the report then counts sessions, steps
and errors per replica. ``--kill-replica`` SIGKILLs one replica during the test (its sessions
fail, the others must not); with ``--reload-on-error`` a failed session reloads once, as its
user would, with the same cookies. The server CPU used during the test (all replicas and nginx, from
``/proc``) is reported per step.

Bounded: at most ``--sessions`` connections, ``--rounds`` rounds, ``--timeout`` seconds per
step and ``--deadline`` seconds in all; the server (or balancer) it started is stopped on
exit. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINISHED_OK = 0  # ForwardMsg.ScriptFinishedStatus.FINISHED_SUCCESSFULLY
REPLICA_COOKIE = "dlgm_replica"  # the balancer's sticky cookie (scripts/serve.py COOKIE)


# ---------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_module():
    """``scripts/serve.py`` as a module: the one place that knows how to start the app."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dlgm_serve", ROOT / "scripts" / "serve.py")
    module = sys.modules.setdefault("dlgm_serve", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def start_server(port: int, log_path: Path, threads: int | None = None) -> subprocess.Popen:
    """``streamlit run streamlit_app.py`` on 127.0.0.1:port, in its own process group, as
    ``scripts/serve.py`` starts a replica; ``threads`` sets the server's torch threads per
    operation (DLGM_TORCH_THREADS, which the app applies, default 1; and OMP_NUM_THREADS)."""
    env = {"OMP_NUM_THREADS": str(threads), "DLGM_TORCH_THREADS": str(threads)} if threads else None
    return _serve_module().start_replica(port, log_path, env)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


def wait_healthy(base: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
    """Poll ``/_stcore/health`` until it answers ``ok``; returns the seconds it took."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=5) as r:
                if r.read().strip() == b"ok":
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base} was not healthy after {timeout:.0f} s")


# ---------------------------------------------------------------------------- one session
@dataclass
class Step:
    """One timed rerun."""

    name: str
    seconds: float | None
    error: str | None = None
    unchanged: bool | None = None  # a widget change that redrew exactly the same page
    session: int = -1  # which session took it


@dataclass
class Rerun:
    """What one rerun sent back."""

    ok: bool
    error: str | None
    number_inputs: list = field(default_factory=list)  # (id, proto) outside forms, keyed
    pages: list = field(default_factory=list)  # (hash, name, url_pathname) from navigation
    digest: object = field(default_factory=lambda: hashlib.sha1())  # of every element drawn


class Session:
    """One browser tab's worth of protocol: a websocket and its rerun requests. Each session
    is a browser of its own: its own cookies, as a balancer's sticky cookie needs."""

    def __init__(self, url: str, timeout: float):
        self.url, self.timeout, self.ws = url, timeout, None
        self.cookies: dict[str, str] = {}

    @property
    def replica(self) -> str | None:
        """The replica that a balancer (``scripts/serve.py``) pinned this session to."""
        return self.cookies.get(REPLICA_COOKIE)

    async def open(self) -> None:
        """As a browser tab: GET the page (a balancer answers with its sticky cookie), then
        open the websocket with the cookies it set."""
        from websockets.asyncio.client import connect

        page = self.url.replace("ws://", "http://", 1).rsplit("/_stcore/", 1)[0] + "/"
        await asyncio.wait_for(asyncio.to_thread(self._get, page), self.timeout)
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.ws = await asyncio.wait_for(
            connect(
                self.url,
                subprotocols=["streamlit"],
                max_size=None,
                ping_interval=None,
                open_timeout=self.timeout,
                additional_headers={"Cookie": cookie} if cookie else None,
            ),
            self.timeout,
        )
        self._keep_cookies(self.ws.response.headers.get_all("Set-Cookie"))

    def _get(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=self.timeout) as r:
            r.read()
            self._keep_cookies(r.headers.get_all("Set-Cookie") or [])

    def _keep_cookies(self, headers: list) -> None:
        for header in headers:
            name, _, value = header.split(";")[0].partition("=")
            self.cookies[name.strip()] = value.strip()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def rerun(
        self, page_hash: str = "", page_name: str = "", widgets: list | None = None
    ) -> Rerun:
        """Ask for a run of a page with the given widget states; wait for it to finish."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = ""
        state.page_script_hash = page_hash
        state.page_name = page_name
        for w in widgets or []:
            state.widget_states.widgets.append(w)
        await self.ws.send(msg.SerializeToString())
        out = Rerun(ok=True, error=None)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no script_finished within {self.timeout:.0f} s")
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(self.ws.recv(), left))
            kind = fm.WhichOneof("type")
            if kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                _note_element(fm.delta.new_element, out)
                out.digest.update(fm.delta.new_element.SerializeToString())
            elif kind == "navigation":
                out.pages = [
                    (p.page_script_hash, p.page_name, p.url_pathname)
                    for p in fm.navigation.app_pages
                ]
            elif kind == "page_not_found":
                out.ok, out.error = False, f"page not found: {fm.page_not_found.page_name!r}"
            elif kind == "session_event" and fm.session_event.WhichOneof("type") in (
                "script_compilation_exception",
            ):
                out.ok, out.error = False, "script compilation error"
            elif kind == "script_finished":
                if fm.script_finished != FINISHED_OK:
                    out.ok = False
                    out.error = out.error or f"script finished with status {fm.script_finished}"
                return out


def _note_element(element, out: Rerun) -> None:
    kind = element.WhichOneof("type")
    if kind == "exception":
        ex = element.exception
        out.ok = False
        out.error = out.error or f"{ex.type}: {ex.message}"[:300]
    elif kind == "number_input":
        w = element.number_input
        if not w.form_id and not w.id.endswith("-None"):  # a user key, outside any form
            out.number_inputs.append((w.id, w))


def _changed(widget_id: str, w) -> object:
    """A WidgetState that moves a number input to its value + step (or - step at its max)."""
    from streamlit.proto.NumberInput_pb2 import NumberInput
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    value = w.value if w.HasField("value") else w.default
    step = w.step or 1
    new = value + step
    if w.has_max and new > w.max:
        new = value - step
    state = WidgetState(id=widget_id)
    if w.data_type == NumberInput.INT:
        state.int_value = int(new)
    else:
        state.double_value = float(new)
    return state


def _key_of(widget_id: str) -> str:
    return widget_id.rsplit("-", 1)[-1]


async def run_session(
    index: int, url: str, args, pages: list, steps: list, replica_of: dict | None = None
) -> None:
    """Open a session and go through every page (and its number input) ``args.rounds`` times;
    ``replica_of[index]``: the replica that a balancer pinned it to."""
    session = Session(url, args.timeout)
    rng = random.Random(args.seed * 1_000_003 + index)

    async def timed(name, coro):
        if args.think > 0 and name != "open session":
            await asyncio.sleep(rng.uniform(0.0, 2.0 * args.think))  # not part of the step
        t0 = time.perf_counter()
        try:
            res = await coro
        except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - every failure counts
            steps.append(Step(name, None, f"{type(e).__name__}: {e}"[:300], session=index))
            raise _Abort from None
        seconds = time.perf_counter() - t0
        steps.append(Step(name, seconds, None if res.ok else res.error, session=index))
        return res

    try:
        await timed("open session", _open_and_noop(session))
        if replica_of is not None:
            replica_of[index] = session.replica
        for rnd in range(args.rounds):
            for page_hash, page_name, url_path in pages:
                name = page_name + (" (first visit)" if rnd == 0 else "")
                res = await timed(f"load {name}", session.rerun(page_hash, url_path))
                if page_name in args.skip_interactions or not res.number_inputs:
                    continue
                wid, w = res.number_inputs[0]
                after = await timed(
                    f"{page_name}: change {_key_of(wid)}",
                    session.rerun(page_hash, url_path, [_changed(wid, w)]),
                )
                steps[-1].unchanged = after.digest.digest() == res.digest.digest()
    except _Abort:
        if args.reload_on_error:
            await _reload(session, index, steps, replica_of)
    finally:
        try:
            await asyncio.wait_for(session.close(), 10)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001
            pass


async def _reload(session: Session, index: int, steps: list, replica_of: dict | None) -> None:
    """What a user does after an error: reload the tab (same browser, same cookies) and get
    the default page; timed as one step, "reload after an error". ``replica_of[-1 - index]``:
    the replica that answered the reload."""
    again = Session(session.url, session.timeout)
    again.cookies = dict(session.cookies)
    t0 = time.perf_counter()
    try:
        await again.open()
        res = await again.rerun()
        steps.append(
            Step(
                "reload after an error",
                time.perf_counter() - t0,
                None if res.ok else res.error,
                session=index,
            )
        )
        if replica_of is not None:
            replica_of[-1 - index] = again.replica
    except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - every failure counts
        steps.append(
            Step("reload after an error", None, f"{type(e).__name__}: {e}"[:300], session=index)
        )
    finally:
        try:
            await asyncio.wait_for(again.close(), 10)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001
            pass


class _Abort(Exception):
    """A session stops at its first failed step (its connection is gone or stuck)."""


async def _open_and_noop(session: Session) -> Rerun:
    await session.open()
    return Rerun(ok=True, error=None)


async def discover_pages(url: str, timeout: float) -> list:
    """The app's pages, default first: from the navigation message of a first run."""
    session = Session(url, timeout)
    await session.open()
    try:
        res = await session.rerun()
    finally:
        await session.close()
    if not res.pages:
        raise RuntimeError("the app sent no navigation message (is it an st.navigation app?)")
    return res.pages


# ---------------------------------------------------------------------------- report
def percentile(values: list, q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    v = sorted(values)
    return v[max(0, math.ceil(q / 100 * len(v)) - 1)]


def summarise(steps: list) -> list[dict]:
    order: dict[str, list] = {}
    for s in steps:
        order.setdefault(s.name, []).append(s)
    rows = []
    for name, group in order.items():
        times = [s.seconds for s in group if s.seconds is not None and s.error is None]
        errors = [s.error for s in group if s.error is not None]
        row = {"interaction": name, "n": len(group), "errors": len(errors)}
        flags = [s.unchanged for s in group if s.unchanged is not None]
        if flags:
            row["unchanged"] = sum(flags)  # the change did not alter anything drawn
        if times:
            row.update(
                p50_s=round(percentile(times, 50), 3),
                p95_s=round(percentile(times, 95), 3),
                max_s=round(max(times), 3),
            )
        if errors:
            row["first_error"] = errors[0]
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    width = max(len(r["interaction"]) for r in rows)
    print(
        f"{'interaction':<{width}}  {'n':>4} {'errors':>6} {'p50 s':>8} {'p95 s':>8} "
        f"{'max s':>8} {'unchanged':>9}"
    )
    for r in rows:
        cells = [f"{r[k]:8.2f}" if k in r else f"{'-':>8}" for k in ("p50_s", "p95_s", "max_s")]
        print(
            f"{r['interaction']:<{width}}  {r['n']:>4} {r['errors']:>6} {' '.join(cells)} "
            f"{r.get('unchanged', '-'):>9}"
        )
    for r in rows:
        if "first_error" in r:
            print(f"  {r['interaction']}: {r['first_error']}")


# ---------------------------------------------------------------------------- main
async def _bench(url: str, args, kill=None) -> dict:
    pages = await discover_pages(url, args.timeout)
    if args.pages:
        pages = [p for p in pages if p[1] in args.pages]
    steps: list[Step] = []
    replica_of: dict[int, str | None] = {}
    t0 = time.perf_counter()
    tasks = [
        asyncio.create_task(run_session(i, url, args, pages, steps, replica_of))
        for i in range(args.sessions)
    ]
    killer = asyncio.create_task(_kill_later(kill, args.kill_at)) if kill else None
    done, pending = await asyncio.wait(tasks, timeout=args.deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    killed = None
    if killer is not None:
        killer.cancel()
        killed = (await asyncio.gather(killer, return_exceptions=True))[0]
    return {
        "pages": [p[1] for p in pages],
        "steps": steps,
        "wall_s": time.perf_counter() - t0,
        "sessions_unfinished": len(pending),
        "replica_of": replica_of,
        "killed_at_s": killed if isinstance(killed, float) else None,
    }


async def _kill_later(kill, after_s: float) -> float:
    await asyncio.sleep(after_s)
    kill()
    return after_s


# ---------------------------------------------------------------------------- a balancer
def start_balancer(replicas: int, port: int, run_dir: Path, threads: int | None = None):
    """``scripts/serve.py -n replicas`` with nginx on 127.0.0.1:port and the replicas on the
    ports after ``port + 1``; its log is ``run_dir/serve.out``."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["DLGM_TORCH_THREADS"] = str(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "scripts/serve.py",
        "-n",
        str(replicas),
        "--port",
        str(port),
        "--replica-port",
        str(port + 1),
        "--run-dir",
        str(run_dir),
    ]
    log = open(run_dir / "serve.out", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def balancer_pids(run_dir: Path) -> dict[str, int]:
    """Replica name -> pid of the local replicas that ``scripts/serve.py`` runs now, and
    ``nginx`` -> nginx's master."""
    pids = {}
    for line in (run_dir / "replicas.txt").read_text().splitlines():
        name, _, pid = line.split()
        if pid.isdigit():
            pids[name] = int(pid)
    nginx_pid = run_dir / "nginx.pid"
    if nginx_pid.exists():
        pids["nginx"] = int(nginx_pid.read_text().strip())
    return pids


def server_urls(run_dir: Path) -> list[str]:
    """The replicas of ``scripts/serve.py``, each at its own address."""
    return [
        f"http://{line.split()[1]}" for line in (run_dir / "replicas.txt").read_text().splitlines()
    ]


def free_ports(n: int) -> int:
    """A port p such that p .. p + n - 1 are free on 127.0.0.1 (checked, not reserved)."""
    for _ in range(100):
        first = free_port()
        if first + n < 65536 and all(_is_free(first + i) for i in range(n)):
            return first
    raise RuntimeError(f"no {n} consecutive free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (all their threads; Linux)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def settle(pids, most_s: float, idle_cpu: float = 0.05) -> float:
    """Wait until the processes ``pids()`` used under ``idle_cpu`` CPU seconds in one second,
    or ``most_s`` seconds; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < most_s:
        before = cpu_seconds(pids())
        time.sleep(1.0)
        if cpu_seconds(pids()) - before < idle_cpu:
            break
    return time.perf_counter() - t0


def per_replica(result: dict) -> dict:
    """Sessions, steps and errors per replica that the balancer pinned sessions to; with
    ``reloaded_on``: where its sessions that reloaded after an error went."""
    out: dict[str, dict] = {}
    for index, name in result["replica_of"].items():
        if index < 0:  # where a reload after an error went
            continue
        out.setdefault(str(name), {"sessions": 0, "steps": 0, "errors": 0})["sessions"] += 1
    for index, name in result["replica_of"].items():
        if index >= 0:
            continue
        row = out[str(result["replica_of"].get(-1 - index))]
        row.setdefault("reloaded_on", {}).setdefault(str(name), 0)
        row["reloaded_on"][str(name)] += 1
    for step in result["steps"]:
        name = str(result["replica_of"].get(step.session))
        row = out.setdefault(name, {"sessions": 0, "steps": 0, "errors": 0})
        row["steps"] += 1
        row["errors"] += step.error is not None
    return dict(sorted(out.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=20, help="concurrent sessions (1-200)")
    p.add_argument("--rounds", type=int, default=1, help="passes over all pages (1-20)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per step")
    p.add_argument("--deadline", type=float, default=900.0, help="seconds for the whole test")
    p.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean think time in seconds before each step, drawn uniformly from "
        "[0, 2 * THINK] (default 0: every session clicks at once, a burst)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the think times")
    p.add_argument("--pages", nargs="*", help="only these pages (by title)")
    p.add_argument(
        "--skip-interactions",
        nargs="*",
        default=["Models"],
        help="pages that are only loaded (default: Models)",
    )
    p.add_argument("--url", help="test a running app at this http://127.0.0.1:PORT instead")
    p.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="start scripts/serve.py with this many app processes behind nginx and "
        "test through it (default 0: one app process, no balancer)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="after the server(s) answer, run the default page once on each (which "
        "starts the app's background warm-up) and wait at most this many "
        "seconds until they are idle (under 5%% of a core for a second) before "
        "the test (default 0: start at once, the warm-up starts with the test)",
    )
    p.add_argument(
        "--kill-replica",
        metavar="NAME",
        help="with --replicas: SIGKILL this replica (r0, r1, ...) during the test",
    )
    p.add_argument(
        "--kill-at", type=float, default=3.0, help="seconds into the test for --kill-replica"
    )
    p.add_argument(
        "--reload-on-error",
        action="store_true",
        help="a session that fails reloads once, as a user would (same cookies): "
        "one more step, 'reload after an error'",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads per operation of the server it "
        "starts (DLGM_TORCH_THREADS and OMP_NUM_THREADS; default: the app's, 1)",
    )
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--json-out", help="also write the JSON summary to this file")
    args = p.parse_args(argv)
    if not 1 <= args.sessions <= 200 or not 1 <= args.rounds <= 20:
        p.error("--sessions must be in [1, 200] and --rounds in [1, 20]")
    if not 0 <= args.think <= 60:
        p.error("--think must be in [0, 60] seconds")
    if not 0 <= args.replicas <= 16 or (args.replicas and args.url):
        p.error("--replicas must be in [0, 16], and not with --url")
    if args.kill_replica and not args.replicas:
        p.error("--kill-replica needs --replicas")
    proc, log_path, run_dir = None, None, None
    if args.url:
        base = args.url.rstrip("/")
        if not base.startswith(("http://127.0.0.1:", "http://localhost:")):
            p.error("--url must be http://127.0.0.1:PORT (this bench only contacts localhost)")
    elif args.replicas:
        port = free_ports(args.replicas + 1)
        base = f"http://127.0.0.1:{port}"
        run_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"dlgm-load-test-serve-{port}"
        log_path = run_dir / "serve.out"
        proc = start_balancer(args.replicas, port, run_dir, args.threads)
    else:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"dlgm-load-test-{port}.log"
        proc = start_server(port, log_path, args.threads)
    try:
        startup = wait_healthy(base, args.startup_timeout, proc)
        pids = (
            (lambda: list(balancer_pids(run_dir).values()))
            if run_dir
            else (lambda: [proc.pid] if proc else [])
        )
        settled = 0.0
        if args.settle:  # one page run per server starts its warm-up; then wait for idle
            t0 = time.perf_counter()
            for url in server_urls(run_dir) if run_dir else [base]:
                asyncio.run(
                    discover_pages(
                        url.replace("http://", "ws://") + "/_stcore/stream", args.timeout
                    )
                )
            settled = time.perf_counter() - t0 + settle(pids, args.settle)
        kill = None
        if args.kill_replica:

            def kill():
                os.kill(balancer_pids(run_dir)[args.kill_replica], signal.SIGKILL)

        load_start = os.getloadavg()[0]
        before, client_before = cpu_seconds(pids()), time.process_time()
        result = asyncio.run(
            _bench(base.replace("http://", "ws://") + "/_stcore/stream", args, kill)
        )
        server_cpu = None if args.url or args.kill_replica else cpu_seconds(pids()) - before
        client_cpu = time.process_time() - client_before
    finally:
        if proc is not None:
            stop_server(proc)
    rows = summarise(result["steps"])
    times = [s.seconds for s in result["steps"] if s.seconds is not None and s.error is None]
    overall = (
        {
            "p50_s": round(percentile(times, 50), 3),
            "p95_s": round(percentile(times, 95), 3),
            "max_s": round(max(times), 3),
        }
        if times
        else {}
    )
    replicas = per_replica(result) if (args.replicas or args.url) else None
    pause = (
        f"think time U[0, {2 * args.think:g}] s before each step"
        if args.think
        else "no pause (burst)"
    )
    where = (
        f"{args.replicas} app processes behind nginx"
        if args.replicas
        else ("one app process" if not args.url else args.url)
    )
    print(
        f"{args.sessions} concurrent sessions x {args.rounds} round(s) over "
        f"{len(result['pages'])} pages, {pause}, {where}: {result['wall_s']:.1f} s; server "
        f"healthy after {startup:.1f} s, warm and idle after {settled:.1f} s more; load average "
        f"{load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs"
    )
    print_table(rows)
    print(
        f"all steps: p50 {overall.get('p50_s', '-')} s, p95 {overall.get('p95_s', '-')} s, "
        f"max {overall.get('max_s', '-')} s"
        + (
            f"; server CPU {server_cpu:.1f} s ({1000 * server_cpu / len(times):.0f} ms per step)"
            if server_cpu and times
            else ""
        )
        + f"; this client's CPU {client_cpu:.1f} s"
    )
    if replicas:
        print(
            "per replica (sessions / steps / errors): "
            + ", ".join(
                f"{k} {v['sessions']} / {v['steps']} / {v['errors']}"
                + (f" (reloaded on {v['reloaded_on']})" if "reloaded_on" in v else "")
                for k, v in replicas.items()
            )
        )
    if result["killed_at_s"] is not None:
        print(
            f"replica {args.kill_replica} was killed (SIGKILL) {result['killed_at_s']:g} s "
            "into the test"
        )
    summary = {
        "sessions": args.sessions,
        "rounds": args.rounds,
        "pages": result["pages"],
        "think_s": args.think,
        "seed": args.seed,
        "replicas": args.replicas or None,
        "server_threads": "not set here (--url)"
        if args.url
        else (args.threads or os.environ.get("DLGM_TORCH_THREADS", "1 (app default)")),
        "wall_s": round(result["wall_s"], 2),
        "server_startup_s": round(startup, 2),
        "settled_s": round(settled, 1),
        "sessions_unfinished": result["sessions_unfinished"],
        "errors": sum(r["errors"] for r in rows),
        "cpus": os.cpu_count(),
        "server_log": None if log_path is None else str(log_path),
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 2),
        "client_cpu_s": round(client_cpu, 2),
        "all_steps": overall,
        "worst_p95_s": max((r.get("p95_s", 0) for r in rows), default=None),
        "per_replica": replicas,
        "killed": None
        if result["killed_at_s"] is None
        else {"replica": args.kill_replica, "at_s": result["killed_at_s"]},
        "load_average_1m_at_start": round(load_start, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "interactions": rows,
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0 if summary["errors"] == 0 and not result["sessions_unfinished"] else 1


if __name__ == "__main__":
    sys.exit(main())

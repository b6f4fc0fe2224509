"""Serve a class: N app processes behind nginx, with sticky sessions and failover.

One Streamlit process runs every session's script under one Python interpreter, so sessions
that click at once queue behind its GIL. This starts ``N`` processes of ``streamlit run
streamlit_app.py`` on local ports (and/or names replicas that run elsewhere, ``--replica
HOST:PORT``) and nginx in front of them on one port::

    python scripts/serve.py                  # one replica per core, nginx on 127.0.0.1:8501
    python scripts/serve.py -n 4 --address 0.0.0.0 --port 8080
    python scripts/serve.py -n 0 --replica 10.0.0.5:8501 --replica 10.0.0.6:8501

Stickiness: a browser keeps one replica. Its first request has no cookie, so nginx sends it to
the next replica in turn (round robin over all of them) and answers with the cookie
``dlgm_replica=rI``; every later request of that browser (page, websocket ``/_stcore/stream``,
media files, uploads) carries the cookie and goes to replica ``rI``'s upstream, whose only
primary server is that replica. The other replicas are its ``backup`` servers: when ``rI``
refuses connections (passive health check: ``max_fails=1 fail_timeout``, and
``proxy_next_upstream error timeout``), nginx sends the request to another one and re-pins the
cookie to the replica that answered, so that the tab's next requests go there too.

Health: this script asks each replica's ``/_stcore/health`` every ``--health-interval``
seconds and logs every change; a local replica whose process exited is started again (after a
back-off if it keeps dying). Ctrl-C or SIGTERM stops nginx and every replica it started.

nginx runs from a configuration of its own (``nginx_config``, a pure function) in a run
directory (``--run-dir``, else a temporary one): its pid file, logs and temporary files are
there, with ``-p RUN_DIR -c nginx.conf`` and ``daemon off``; nothing in ``/etc/nginx`` is read.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COOKIE = "dlgm_replica"
NGINX_MISSING = (
    "nginx is not installed: `apt-get install nginx` (Debian/Ubuntu; "
    "`brew install nginx` on macOS), or pass its path with --nginx"
)


@dataclass(frozen=True)
class Replica:
    """One app server behind the balancer: its name (the cookie value) and address."""

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def replica_list(local_ports: list[int], remote: list[str]) -> list[Replica]:
    """Local replicas on 127.0.0.1 at ``local_ports``, then the ``remote`` ``HOST:PORT``s;
    named r0, r1, ... in that order."""
    addresses = [("127.0.0.1", p) for p in local_ports] + [parse_address(r) for r in remote]
    return [Replica(f"r{i}", host, port) for i, (host, port) in enumerate(addresses)]


def _server_address(r: Replica) -> str:
    return f"[{r.host}]:{r.port}" if ":" in r.host else r.address


def nginx_config(
    replicas: list[Replica],
    *,
    listen: str = "127.0.0.1:8501",
    run_dir: str,
    cookie: str = COOKIE,
    fail_timeout_s: int = 10,
    max_body_mb: int = 64,
    user: str | None = None,
) -> str:
    """The whole nginx configuration of the balancer, as text (pure: no I/O).

    Parameters
    ----------
    replicas : the app servers, at least one; ``Replica.name`` is the cookie's value. Each
        gets an upstream ``dlgm_<name>`` with itself as the only primary and every other
        replica as ``backup``; requests without a (known) cookie go to ``dlgm_new``, all of
        them in turn. Hosts should be IP addresses: the cookie is re-pinned by
        matching ``$upstream_addr``, which nginx writes as IP:port.
    listen : ``[address:]port`` that nginx listens on.
    run_dir : absolute directory for the pid file, logs and temporary files.
    cookie : name of the sticky cookie.
    fail_timeout_s : passive health check: after one failed connection a replica gets no
        requests of its upstream for this many seconds (``max_fails=1``), then is tried again.
    max_body_mb : largest request body (checkpoint uploads), in MB.
    user : the user of nginx's worker processes when it is started as root (else ignored).
    """
    if not replicas:
        raise ValueError("nginx_config needs at least one replica")
    names = [r.name for r in replicas]
    if (
        len(set(names)) != len(names)
        or "new" in names
        or not all(re.fullmatch(r"[A-Za-z0-9_]+", n) for n in names)
    ):
        raise ValueError(f"replica names must be distinct words other than 'new': {names}")
    run = run_dir.rstrip("/")
    health = f"max_fails=1 fail_timeout={fail_timeout_s}s"
    lines = [
        "# Generated by scripts/serve.py (nginx_config); edits are overwritten at the next start.",
        "daemon off;",
        "worker_processes 1;",
        f"pid {run}/nginx.pid;",
        f"error_log {run}/error.log warn;",
        *([f"user {user};"] if user else []),
        "events { worker_connections 4096; }",
        "http {",
        f"    access_log {run}/access.log;",
        f"    client_body_temp_path {run}/tmp/body;",
        f"    proxy_temp_path {run}/tmp/proxy;",
        f"    fastcgi_temp_path {run}/tmp/fastcgi;",
        f"    uwsgi_temp_path {run}/tmp/uwsgi;",
        f"    scgi_temp_path {run}/tmp/scgi;",
        f"    client_max_body_size {max_body_mb + 1}m;",
        "",
        "    # A browser with a cookie goes to its replica; a new one to each replica in turn...",
        f"    map $cookie_{cookie} $dlgm_replica {{",
        *[f"        {r.name} {r.name};" for r in replicas],
        "        default new;",
        "    }",
        "    # ... and keeps the one that answered it (another one after a failover).",
        "    map $upstream_addr $dlgm_served_by {",
        *[f"        ~(^|\\s){re.escape(_server_address(r))}$ {r.name};" for r in replicas],
        '        default "";',
        "    }",
        f'    map "$cookie_{cookie}/$dlgm_served_by" $dlgm_set_cookie {{',
        '        ~^(\\w+)/\\1$ "";',
        f'        "~/(?<served>\\w+)$" "{cookie}=$served; Path=/; HttpOnly; SameSite=Lax";',
        '        default "";',
        "    }",
        "    map $http_upgrade $connection_upgrade { default upgrade; '' ''; }",
        "",
    ]
    lines.append("    upstream dlgm_new {")
    lines += [f"        server {_server_address(r)} {health};" for r in replicas]
    lines.append("    }")
    for r in replicas:
        lines.append(f"    upstream dlgm_{r.name} {{")
        lines.append(f"        server {_server_address(r)} {health};")
        lines += [
            f"        server {_server_address(o)} backup {health};" for o in replicas if o is not r
        ]
        lines.append("    }")
    proxy = [
        "proxy_pass http://dlgm_$dlgm_replica;",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_next_upstream error timeout;",
        "proxy_connect_timeout 3s;",
        "proxy_request_buffering off;",
        "add_header Set-Cookie $dlgm_set_cookie always;",
        "error_page 502 504 = @down;",
    ]
    lines += [
        "",
        "    server {",
        f"        listen {listen};",
        "        location / {",
        *[f"            {line}" for line in proxy],
        "        }",
        "        location = /_stcore/stream {  # the websocket: an idle tab keeps it",
        *[f"            {line}" for line in proxy],
        "            proxy_read_timeout 1h;",
        "            proxy_send_timeout 1h;",
        "        }",
        "        location @down {  # no replica answered",
        "            default_type text/plain;",
        '            return 503 "DLGM Lab: no app process answers just now; reload in a few '
        'seconds.\\n";',
        "        }",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- processes
def default_replicas() -> int:
    """One replica per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def find_nginx(path: str | None = None) -> str | None:
    """The nginx binary: ``path``, else on PATH, else Debian's /usr/sbin/nginx."""
    for candidate in (path, shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    return None


def port_is_free(host: str, port: int) -> bool:
    """Could a server listen on host:port? (As servers do, with SO_REUSEADDR: connections of
    an earlier server still in TIME_WAIT do not count.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_replica(port: int, log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """``streamlit run streamlit_app.py`` on 127.0.0.1:port, in its own process group."""
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "streamlit_app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    full_env = {"OMP_NUM_THREADS": "1", **os.environ, **(env or {})}
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = 10) -> None:
    """Signal ``proc``'s process group, then kill it if it has not exited after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace_s)


def healthy(url: str, timeout: float = 3.0) -> bool:
    """Does ``url/_stcore/health`` answer ``ok``?"""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


def resolve(host: str) -> str:
    """``host`` as an IP address (nginx reports upstreams by address)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]


def _prepare_run_dir(run_dir: Path) -> str | None:
    """nginx's temporary directories under ``run_dir``. Started as root, nginx runs its workers
    as ``nobody``: they get those directories and the user to name is returned."""
    subs = [run_dir / "tmp" / sub for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi")]
    for sub in subs:
        sub.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return None
    import grp
    import pwd

    user = pwd.getpwnam("nobody")
    group = next((g for g in ("nogroup", "nobody") if _has_group(grp, g)), None)
    for path in (run_dir, run_dir / "tmp"):
        path.chmod(path.stat().st_mode | 0o711)  # workers only need to pass through
    for sub in subs:
        os.chown(sub, user.pw_uid, user.pw_gid)
    return "nobody" + (f" {group}" if group else "")


def _has_group(grp, name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


class Balancer:
    """The replicas this script started, nginx, and the loop that watches them."""

    def __init__(
        self,
        replicas: list[Replica],
        local: int,
        run_dir: Path,
        nginx: str,
        listen: str,
        fail_timeout_s: int = 10,
        log=print,
    ):
        self.replicas, self.local, self.run_dir = replicas, local, run_dir
        self.nginx, self.listen, self.fail_timeout_s, self.log = nginx, listen, fail_timeout_s, log
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        self.health: dict[str, bool | None] = {r.name: None for r in replicas}
        self.nginx_proc: subprocess.Popen | None = None
        self.next_start: dict[str, float] = {}
        self.worker_user: str | None = None
        self.url: str | None = None  # the balancer's, once started

    def log_path(self, r: Replica) -> Path:
        return self.run_dir / f"replica-{r.name}.log"

    def start_local(self, r: Replica) -> None:
        self.procs[r.name] = start_replica(r.port, self.log_path(r))
        self.started_at[r.name] = time.monotonic()
        self.write_pids()

    def write_pids(self) -> None:
        """``replicas.txt``: name, address, pid (local) per line, for tools and tests."""
        rows = [
            f"{r.name} {r.address} {self.procs[r.name].pid if r.name in self.procs else '-'}"
            for r in self.replicas
        ]
        (self.run_dir / "replicas.txt").write_text("\n".join(rows) + "\n")

    def config(self) -> str:
        return nginx_config(
            self.replicas,
            listen=self.listen,
            run_dir=str(self.run_dir),
            fail_timeout_s=self.fail_timeout_s,
            max_body_mb=int(os.environ.get("DLGM_MAX_UPLOAD_MB", 64)),
            user=self.worker_user,
        )

    def start(self, startup_timeout: float = 120) -> None:
        self.worker_user = _prepare_run_dir(self.run_dir)
        for r in self.replicas[: self.local]:
            self.start_local(r)
        deadline = time.monotonic() + startup_timeout
        for r in self.replicas:
            while not healthy(r.url, 2):
                proc = self.procs.get(r.name)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"replica {r.name} exited with code {proc.returncode}; "
                        f"see {self.log_path(r)}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"replica {r.name} ({r.address}) not healthy after {startup_timeout:.0f} s"
                    )
                time.sleep(0.3)
            self.health[r.name] = True
            self.log(f"replica {r.name} at {r.address} is healthy")
        conf = self.run_dir / "nginx.conf"
        conf.write_text(self.config())
        check = subprocess.run(
            [self.nginx, "-t", "-q", "-p", str(self.run_dir), "-c", str(conf)],
            capture_output=True,
            text=True,
        )
        if check.returncode:
            raise RuntimeError(f"nginx rejected {conf}:\n{check.stderr}")
        log = open(self.run_dir / "nginx.out", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.nginx_proc = subprocess.Popen(
                [self.nginx, "-p", str(self.run_dir), "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        host, port = parse_address(self.listen) if ":" in self.listen else ("", self.listen)
        host = "127.0.0.1" if host in ("", "0.0.0.0", "*", "::") else host
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        while not healthy(url, 2):
            if self.nginx_proc.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with code {self.nginx_proc.returncode}; see "
                    f"{self.run_dir / 'error.log'}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the balancer at {url} did not answer")
            time.sleep(0.2)
        self.url = url

    def check(self, min_uptime_s: float = 20, max_backoff_s: float = 60) -> None:
        """One round of the watch loop: restart exited local replicas (at once, or after
        2, 4, ... ``max_backoff_s`` seconds while they keep exiting within ``min_uptime_s``),
        log every change of health."""
        if self.nginx_proc is not None and self.nginx_proc.poll() is not None:
            raise RuntimeError(
                f"nginx exited with code {self.nginx_proc.returncode}; see "
                f"{self.run_dir / 'error.log'}"
            )
        now = time.monotonic()
        for r in self.replicas:
            proc = self.procs.get(r.name)
            if proc is not None and proc.poll() is not None:
                if r.name not in self.next_start:
                    quick = now - self.started_at[r.name] < min_uptime_s
                    n = self.restarts[r.name] = self.restarts.get(r.name, 0) + 1 if quick else 0
                    wait = min(max_backoff_s, 2.0**n) if n else 0.0
                    self.next_start[r.name] = now + wait
                    self.log(
                        f"replica {r.name} exited with code {proc.returncode}; restarting "
                        f"it{f' in {wait:.0f} s' if wait else ''} (log: {self.log_path(r)})"
                    )
                if now >= self.next_start[r.name]:
                    del self.next_start[r.name]
                    self.start_local(r)
            ok = healthy(r.url, 3)
            if ok != self.health[r.name]:
                self.log(
                    f"replica {r.name} at {r.address} is "
                    f"{'healthy' if ok else 'not answering /_stcore/health'}"
                )
                self.health[r.name] = ok

    def stop(self) -> None:
        if self.nginx_proc is not None:
            stop_process(self.nginx_proc, signal.SIGTERM, 10)
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            stop_process(proc, signal.SIGTERM, 10)


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop(signal.Signals(signum).name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See docs/serving.md.",
    )
    p.add_argument(
        "-n",
        "--replicas",
        type=int,
        default=default_replicas(),
        help="app processes to start here (default: one per core, "
        f"{default_replicas()} here); 0 with --replica: remote ones only",
    )
    p.add_argument(
        "--replica",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="an app already running elsewhere (repeatable)",
    )
    p.add_argument(
        "--address", default="127.0.0.1", help="address nginx listens on (0.0.0.0: every interface)"
    )
    p.add_argument("--port", type=int, default=8501, help="port nginx listens on")
    p.add_argument(
        "--replica-port",
        type=int,
        default=None,
        help="first port of the local replicas (default: --port + 100)",
    )
    p.add_argument(
        "--run-dir",
        help="nginx's configuration, pid, logs and the replicas' logs "
        "(default: a temporary directory, removed at exit)",
    )
    p.add_argument("--nginx", help="path of the nginx binary")
    p.add_argument(
        "--fail-timeout",
        type=int,
        default=10,
        help="seconds nginx leaves a replica alone after a failed connection",
    )
    p.add_argument("--health-interval", type=float, default=2.0)
    p.add_argument("--startup-timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    if args.replicas < 0 or args.replicas + len(args.replica) < 1:
        p.error("nothing to serve: give -n 1 or more, or --replica HOST:PORT")
    nginx = find_nginx(args.nginx)
    if nginx is None:
        print(
            f"serve: {NGINX_MISSING}. `make run` starts one app process without it.",
            file=sys.stderr,
        )
        return 2
    first = args.replica_port or args.port + 100
    local_ports = list(range(first, first + args.replicas))
    busy = [q for q in [args.port, *local_ports] if not port_is_free("127.0.0.1", q)]
    if busy:
        p.error(f"port(s) {busy} are in use (choose others with --port / --replica-port)")
    try:
        remote = [f"{resolve(h)}:{q}" for h, q in map(parse_address, args.replica)]
    except (ValueError, OSError) as e:
        p.error(f"--replica: {e}")
    replicas = replica_list(local_ports, remote)
    temp = args.run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="dlgm-serve-") if temp else args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    host = f"[{args.address}]" if ":" in args.address else args.address  # IPv6 in brackets
    listen = f"{host}:{args.port}"
    balancer = Balancer(
        replicas,
        args.replicas,
        run_dir,
        nginx,
        listen,
        args.fail_timeout,
        log=lambda m: print(f"serve: {m}", flush=True),
    )
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a shell starts a
        signal.signal(sig, _raise_stop)  # background job with it ignored
    code = 0
    try:
        balancer.start(args.startup_timeout)
        print(
            f"serve: {len(replicas)} replica(s) behind nginx: open "
            f"http://{'localhost' if args.address == '127.0.0.1' else host}:"
            f"{args.port}  (run directory {run_dir}; Ctrl-C stops everything)",
            flush=True,
        )
        while True:
            time.sleep(args.health_interval)
            balancer.check()
    except (KeyboardInterrupt, _Stop):
        print("serve: stopping", flush=True)
    except (RuntimeError, TimeoutError) as e:
        print(f"serve: {e}", file=sys.stderr, flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        balancer.stop()
        if temp and code == 0:
            shutil.rmtree(run_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Serving a class (``scripts/serve.py``): the nginx configuration, and a real balancer.

The configuration is a pure function, checked line by line (and by ``nginx -t`` where nginx is
installed). The fault test starts nginx and two app processes on free local ports, checks
that a cookie pins new browsers to each replica in turn, kills one with SIGKILL and checks that
the other replica's sessions keep working, that the balancer still answers
``/_stcore/health``, the page and the websocket for everyone (the dead replica's users on the
other one, re-pinned by the cookie) with no failed request, and that the watch loop restarts
the dead replica and puts it back in rotation. Without nginx it is skipped, except when
``CI=true``, where that is a failure. No timings are asserted (latency targets: ``bench/``).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dlgm_serve", ROOT / "scripts" / "serve.py")
serve = sys.modules["dlgm_serve"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve)

WAIT_S = 90  # at most, for a replica to start or come back (never reached on a healthy run)


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the serving test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def nginx() -> str:
    path = serve.find_nginx()
    if path is None:
        _missing(serve.NGINX_MISSING)
    return path


# ---------------------------------------------------------------------------- configuration
def _config(replicas, **kw):
    return serve.nginx_config(replicas, run_dir="/run/dlgm", **kw)


def _block(conf: str, head: str) -> list[str]:
    """The lines inside the first block whose opening line starts with ``head``."""
    lines = [line.strip() for line in conf.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    return lines[start + 1 : lines.index("}", start)]


def test_replica_list_names_local_then_remote():
    replicas = serve.replica_list([8601, 8602], ["10.1.2.3:8501", "[fd00::5]:9000"])
    assert [(r.name, r.host, r.port) for r in replicas] == [
        ("r0", "127.0.0.1", 8601),
        ("r1", "127.0.0.1", 8602),
        ("r2", "10.1.2.3", 8501),
        ("r3", "fd00::5", 9000),
    ]


@pytest.mark.parametrize("bad", ["8501", "host:", ":8501", "host:port", "host:70000"])
def test_parse_address_refuses(bad):
    with pytest.raises(ValueError, match="HOST:PORT"):
        serve.parse_address(bad)


def test_each_replica_is_the_primary_of_its_upstream_and_the_others_its_backups():
    replicas = serve.replica_list([8601, 8602], ["10.1.2.3:8501"])
    conf = _config(replicas, fail_timeout_s=7)
    for r in replicas:
        servers = _block(conf, f"upstream dlgm_{r.name} {{")
        assert servers[0] == f"server {r.address} max_fails=1 fail_timeout=7s;"
        assert sorted(servers[1:]) == sorted(
            f"server {o.address} backup max_fails=1 fail_timeout=7s;"
            for o in replicas
            if o is not r
        )


def test_cookie_picks_the_upstream_and_new_browsers_take_turns():
    replicas = serve.replica_list([1, 2, 3], [])
    conf = _config(replicas, cookie="tab", fail_timeout_s=7)
    assert _block(conf, "map $cookie_tab $dlgm_replica {") == [
        "r0 r0;",
        "r1 r1;",
        "r2 r2;",
        "default new;",
    ]
    assert _block(conf, "upstream dlgm_new {") == [  # round robin over all replicas
        f"server 127.0.0.1:{port} max_fails=1 fail_timeout=7s;" for port in (1, 2, 3)
    ]
    assert conf.count("proxy_pass http://dlgm_$dlgm_replica;") == 2
    # the cookie is (re)set to the replica that answered, only when it changes
    setter = _block(conf, 'map "$cookie_tab/$dlgm_served_by" $dlgm_set_cookie {')
    assert setter[0] == '~^(\\w+)/\\1$ "";'
    assert "tab=$served; Path=/; HttpOnly; SameSite=Lax" in setter[1]
    assert _block(conf, "map $upstream_addr $dlgm_served_by {")[:3] == [
        f"~(^|\\s)127\\.0\\.0\\.1:{i + 1}$ r{i};" for i in range(3)
    ]


def test_websocket_upgrade_timeouts_and_next_upstream():
    conf = _config(serve.replica_list([8601], []), listen="0.0.0.0:8080", max_body_mb=64)
    page, stream = _block(conf, "location / {"), _block(conf, "location = /_stcore/stream {")
    for line in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header Host $http_host;",
        "proxy_next_upstream error timeout;",
        "add_header Set-Cookie $dlgm_set_cookie always;",
    ):
        assert line in page and line in stream, line
    assert "proxy_read_timeout 1h;" in stream and not any("read_timeout" in x for x in page)
    assert "listen 0.0.0.0:8080;" in conf and "client_max_body_size 65m;" in conf


def test_everything_nginx_writes_is_in_the_run_directory():
    conf = _config(serve.replica_list([8601], []), user="nobody nogroup")
    assert "daemon off;" in conf and "user nobody nogroup;" in conf
    assert "/etc/nginx" not in conf and "include" not in conf
    paths = [
        line.split()[1].rstrip(";")
        for line in conf.splitlines()
        if line.strip().split(" ")[0] in ("pid", "error_log", "access_log")
        or line.strip().endswith("_temp_path")
        or "_temp_path " in line
    ]
    assert len(paths) == 8 and all(p.startswith("/run/dlgm/") for p in paths), paths
    assert "user " not in _config(serve.replica_list([8601], []))


def test_ipv6_replicas_are_bracketed():
    conf = _config(serve.replica_list([], ["[fd00::5]:9000"]))
    assert "server [fd00::5]:9000 max_fails=1" in conf
    assert "~(^|\\s)\\[fd00::5\\]:9000$ r0;" in conf


@pytest.mark.parametrize(
    "replicas",
    [
        [],
        [serve.Replica("a", "h", 1), serve.Replica("a", "g", 2)],
        [serve.Replica("a b", "h", 1)],
        [serve.Replica("new", "h", 1)],
    ],
)
def test_config_refuses_no_or_clashing_replicas(replicas):
    with pytest.raises(ValueError):
        _config(replicas)


def test_nginx_accepts_the_config(nginx, tmp_path):
    user = serve._prepare_run_dir(tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        serve.nginx_config(
            serve.replica_list([_free_port(), _free_port()], ["10.1.2.3:8501"]),
            listen=f"127.0.0.1:{_free_port()}",
            run_dir=str(tmp_path),
            user=user,
        )
    )
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr


def test_serve_says_how_to_get_nginx(monkeypatch, capsys):
    monkeypatch.setattr(serve, "find_nginx", lambda path=None: None)
    assert serve.main(["-n", "1"]) == 2
    assert "apt-get install nginx" in capsys.readouterr().err


# ---------------------------------------------------------------------------- a real balancer
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, cookie: str | None = None, timeout: float = 30) -> tuple[int, str | None, str]:
    """GET through the balancer as a browser with ``cookie`` (a replica name) would:
    (status, the replica named by a Set-Cookie answer or None, body)."""
    req = urllib.request.Request(url)
    if cookie:
        req.add_header("Cookie", f"{serve.COOKIE}={cookie}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        ours = [
            c.split(";")[0].split("=", 1)[1]
            for c in r.headers.get_all("Set-Cookie") or []
            if c.startswith(f"{serve.COOKIE}=")
        ]
        assert len(ours) <= 1, ours
        return r.status, (ours or [None])[0], r.read().decode(errors="replace")


def _open_stream(base: str, cookie: str):
    from websockets.sync.client import connect

    return connect(
        base.replace("http://", "ws://") + "/_stcore/stream",
        subprotocols=["streamlit"],
        open_timeout=30,
        max_size=None,
        additional_headers={"Cookie": f"{serve.COOKIE}={cookie}"},
    )


def _run_default_page(ws, timeout: float = 60) -> None:
    """Ask for a run of the app's default page over ``ws``; wait until it finished OK."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = BackMsg()
    msg.rerun_script.query_string = ""
    ws.send(msg.SerializeToString())
    deadline = time.monotonic() + timeout
    while True:
        fm = ForwardMsg()
        fm.ParseFromString(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if (
            fm.WhichOneof("type") == "delta"
            and fm.delta.new_element.WhichOneof("type") == "exception"
        ):
            pytest.fail(f"the app raised: {fm.delta.new_element.exception.message}")
        if fm.WhichOneof("type") == "script_finished":
            assert fm.script_finished == 0  # FINISHED_SUCCESSFULLY
            return


def _until(what: str, condition, timeout: float = WAIT_S, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(step)


@pytest.fixture(scope="module")
def balancer(nginx, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("serve")
    replicas = serve.replica_list([_free_port(), _free_port()], [])
    messages: list[str] = []
    b = serve.Balancer(
        replicas,
        2,
        run_dir,
        nginx,
        f"127.0.0.1:{_free_port()}",
        fail_timeout_s=1,
        log=messages.append,
    )
    b.messages = messages
    try:
        b.start(startup_timeout=WAIT_S)
        yield b
    finally:
        b.stop()


def test_two_replicas_failover_and_restart(balancer):
    base = balancer.url
    assert [r.name for r in balancer.replicas] == ["r0", "r1"]
    # New browsers are pinned to each replica in turn.
    pinned = []
    for _ in range(4):
        status, name, body = _get(f"{base}/")
        assert status == 200 and "<html" in body.lower()
        pinned.append(name)
    assert sorted(pinned) == ["r0", "r0", "r1", "r1"]
    # A pinned browser stays: no new cookie; its websocket and a run of the page work.
    for name in ("r0", "r1"):
        assert _get(f"{base}/_stcore/health", name)[:2] == (200, None)
    # (The page is run on r1 only: a first run in a process starts the app's warm-up, seconds
    # of CPU that would only slow this test down.)
    with _open_stream(base, "r0") as ws0, _open_stream(base, "r1") as ws1:
        _run_default_page(ws1)
        # Kill r0 outright.
        dead = balancer.procs["r0"]
        os.killpg(dead.pid, signal.SIGKILL)
        dead.wait(30)
        # r0's tab loses its connection (and with it the tab's models) ...
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed):
            while True:
                ws0.recv(timeout=30)
        # ... while r1's tab goes on working, over the same websocket.
        _run_default_page(ws1)

    # Everyone gets the app through the balancer: r0's browsers on r1 (cookie re-pinned).
    status, pinned, _ = _get(f"{base}/_stcore/health", "r0")
    assert status == 200 and pinned == "r1"
    for _ in range(10):
        for cookie in ("r0", "r1", None):
            status, pinned, body = _get(f"{base}/", cookie)
            assert status == 200 and "<html" in body.lower()
            assert pinned == ("r1" if cookie in ("r0", None) else None)
            assert _get(f"{base}/_stcore/health", cookie)[0] == 200
    with _open_stream(base, "r0") as conn:  # a reloaded tab of r0's user
        assert conn.response.headers.get("Set-Cookie", "").startswith(f"{serve.COOKIE}=r1;")
        _run_default_page(conn)

    # The watch loop restarts r0; it comes back into rotation.
    def r0_back() -> bool:
        balancer.check()
        return balancer.health["r0"] is True and balancer.procs["r0"] is not dead

    _until("the watch loop restarts r0", r0_back, step=1.0)
    assert any("r0 exited with code -9" in m for m in balancer.messages), balancer.messages
    # After nginx's fail_timeout (1 s here) the cookie r0 reaches r0 again: no re-pinning.
    _until(
        "nginx sends r0's browsers to r0 again",
        lambda: _get(f"{base}/_stcore/health", "r0")[:2] == (200, None),
    )
    with _open_stream(base, "r0") as conn:
        assert conn.response.headers.get("Set-Cookie") is None  # r0 itself answered
    assert balancer.nginx_proc.poll() is None

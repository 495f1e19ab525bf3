"""The web playground: the real server (``eingrad serve`` in a subprocess) and its JSON API."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install 'eingrad[web]'")
pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install 'eingrad[web]'")

from eingrad.web.examples import EXAMPLES  # noqa: E402
from eingrad.web.server import _is_loopback  # noqa: E402
from eingrad.web.work import MAX_ORDER, derive, validate  # noqa: E402
from eingrad.web.workers import WorkerDied, WorkerPool  # noqa: E402
from webserver import Server, env  # noqa: E402

TIME_LIMIT = 3.0
AFFINE = "Y_nh = X_nd W_dh + b_h\nL = sum_{n,h}(G_nh Y_nh)"
# The guide's RNN, third derivative: minutes of symbolic work, far past the time limit.
RUNAWAY = {"program": next(e["program"] for e in EXAMPLES if "unrolled" in e["name"]), "wrt": ["W"], "mode": "diff", "order": 3}


@pytest.fixture(scope="module")
def server():
    s = Server("--workers", "2", "--time-limit", str(TIME_LIMIT))
    try:
        yield s
    finally:
        s.close()


# ---------------------------------------------------------------- the page


def test_page_and_its_files_are_served_with_no_other_origin(server):
    status, headers, body = server.get("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = body.decode()
    for path in ("/static/katex/katex.min.js", "/static/katex/katex.min.css", "/static/app.js", "/static/style.css"):
        assert path in page
        assert server.get(path)[0] == 200
    assert "http://" not in page and "https://" not in page  # no CDN: the page works offline
    assert "default-src 'self'" in headers["content-security-policy"]
    css = server.get("/static/katex/katex.min.css")[2].decode()
    assert "KaTeX_Main-Regular.woff2" in css
    assert server.get("/static/katex/fonts/KaTeX_Main-Regular.woff2")[0] == 200
    assert server.get("/static/nothing.js")[0] == 404


def test_a_shared_link_serves_the_page(server):
    query = urllib.parse.urlencode({"program": AFFINE, "wrt": "W", "order": 1})
    status, _, body = server.get("/?" + query)
    assert status == 200 and b'id="program"' in body


def test_examples_menu(server):
    status, _, body = server.get("/api/examples")
    examples = json.loads(body)
    assert status == 200 and [e["name"] for e in examples] == [e["name"] for e in EXAMPLES]
    assert {"program", "wrt", "mode", "order"} <= set(examples[0])


# ---------------------------------------------------------------- good programs


def test_derivative_of_the_affine_layer(server):
    status, r = server.derive(program=AFFINE, wrt=["W"], order=1, mode="diff")
    assert status == 200
    assert r["text"] == "∂L/∂W_ij = G_nj X_ni"
    assert "\\frac{\\partial L}{\\partial W_{ij}}" in r["latex"]
    assert r["matrix"] == [{"name": "W", "text": "∂L/∂W = Xᵀ G", "latex": "\\frac{\\partial L}{\\partial W} = X^{\\top} G",
                            "reason": None}]
    steps = r["steps"][0]["steps"]
    assert steps[0]["reason"].startswith("chain rule") and steps[-1]["latex"]
    assert r["steps"][0]["result"] == "∂L/∂W_ij = G_nj X_ni"
    assert "def compiled(arrays, sizes=None):" in r["code"]["source"] and "import numpy as xp" in r["code"]["source"]
    assert "def _sigmoid" not in r["code"]["source"]  # helpers the code never calls are left out
    assert r["check"]["pass"] and r["check"]["rows"][0]["shape"] == [3, 3]
    assert r["program"]["inputs"] == {"X": ["n", "d"], "W": ["d", "h"], "b": ["h"], "G": ["n", "h"]}
    graph = r["graph"]
    assert {n["id"] for n in graph["nodes"]} == {"X", "W", "b", "G", "Y", "L"}
    assert ["W", "Y"] in graph["edges"] and ["Y", "L"] in graph["edges"]


def test_generated_code_runs(server):
    """The code the page shows is the code eingrad runs: numpy gives the same numbers."""
    import numpy as np

    status, r = server.derive(program="Y_nh = X_nd W_dh + b_h", wrt=["W", "b"], mode="grad")
    assert status == 200
    namespace: dict = {}
    exec(compile(r["code"]["source"], "<test>", "exec"), namespace)  # noqa: S102 - the test runs what it was sent
    rng = np.random.default_rng(0)
    X, W, b, G = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2), rng.standard_normal((4, 2))
    out = namespace["compiled"]({"X": X, "W": W, "b": b, "dLdY": G})
    assert np.allclose(out["dLdW"], X.T @ G) and np.allclose(out["dLdb"], G.sum(0))


def test_gradient_program_with_an_upstream_gradient(server):
    status, r = server.derive(program="Y_nh = X_nd W_dh + b_h", wrt=["W", "b"], mode="grad")
    assert status == 200
    assert r["seed"] == "dLdY" and r["gradients"] == {"W": "dLdW", "b": "dLdb"}
    assert "dLdW_dh = X_nd dLdY_nh" in r["text"].splitlines()
    assert [row["what"] for row in r["check"]["rows"]] == ["diff, order 1"] * 2 + ["grad (reverse mode)"] * 2
    assert r["check"]["pass"]
    assert {m["name"] for m in r["matrix"]} == {"dLdW", "dLdb"}


def test_hessian(server):
    status, r = server.derive(program="s = x_i A_ij x_j", wrt=["x"], mode="hessian")
    assert status == 200 and r["order"] == 2
    assert r["text"].startswith("∂²s/∂x_") and r["text"].count("A_") == 2
    assert r["check"]["rows"][0]["what"] == "diff, orders 1-2" and r["check"]["pass"]
    assert r["matrix"][0]["text"] == "∂²s/∂x² = A + Aᵀ"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["name"] for e in EXAMPLES])
def test_every_example_derives_and_checks(example):
    r = derive({k: example[k] for k in ("program", "wrt", "mode", "order")})
    assert r["check"]["pass"], r["check"]["rows"]
    assert r["text"] and r["latex"] and r["code"]["source"]


def test_wrt_defaults_to_every_input_and_warnings_are_returned(server):
    status, r = server.derive(program="f_i = W_ij v_j")
    assert status == 200 and r["wrt"] == ["W", "v"] and len(r["results"]) == 2
    status, r = server.derive(program="y = A_ij B_ij", wrt=["A"])
    assert status == 200 and isinstance(r["warnings"], list)


def test_a_backend_that_is_not_installed_is_said_in_place_of_the_code(server):
    status, r = server.derive(program="f_i = W_ij v_j", wrt=["W"], backend="cupy")
    assert status == 200 and r["text"]
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert r["code"]["source"] is None and "cupy" in r["code"]["error"]["message"].lower()


def test_a_failed_check_is_a_row_not_an_error(server):
    status, r = server.derive(program="L = x_i / |n|", wrt=["x"])
    assert status == 200 and not r["check"]["pass"]
    assert r["check"]["rows"][0]["message"].startswith("SizeError")


def test_parse_endpoint(server):
    status, r = server.post("/api/parse", {"program": AFFINE})
    assert status == 200 and list(r["program"]["inputs"]) == ["X", "W", "b", "G"] and r["program"]["output"] == "L"
    status, r = server.post("/api/parse", {"program": "y_i = foo(x_i)"})
    assert status == 400 and r["error"]["type"] == "UnknownFunctionError"
    assert server.post("/api/parse", {"text": "y = x"})[0] == 400


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("program, wrt, mode, kind, line, column, end_column", [
    ("Y_nh = X_nd W_dh + b_h\nL = sum_{n,h}(G_nh Y_nh", ["W"], "diff", "ParseError", 2, 14, 15),
    ("y_i = x_i +", ["x"], "diff", "ParseError", 1, 12, 13),
    ("y_i = foo(x_i)", ["x"], "diff", "UnknownFunctionError", 1, 7, 10),
    ("sum_i = x_i", ["x"], "diff", "ReservedNameError", 1, 1, 4),
    ("y_i = x_j", ["x"], "diff", "IndexRuleError", 1, 3, 4),
    ("y_i = x_i\ny_i = z_i", ["x"], "diff", "ProgramError", 1, 1, 4),
    ("y_i = x_i\nz = y_i y_i", ["q"], "diff", "DiffError", None, None, None),
    ("y_i = x_i\nz = y_i y_i", ["y"], "grad", "GradError", 1, 1, 4),
])
def test_an_invalid_program_is_a_positioned_400(server, program, wrt, mode, kind, line, column, end_column):
    status, r = server.derive(program=program, wrt=wrt, mode=mode)
    assert status == 400, r
    error = r["error"]
    assert error["type"] == kind and error["message"]
    assert (error["line"], error["column"], error["end_column"]) == (line, column, end_column)
    assert set(error) == {"type", "message", "line", "column", "end_line", "end_column", "hint"}


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"wrt": ["W"]}', "'program'"),
    (b'{"program": 3}', "'program'"),
    (b'{"program": "f_i = W_ij v_j", "wrt": 3}', "'wrt'"),
    (b'{"program": "f_i = W_ij v_j", "order": "2"}', "'order'"),
    (b'{"program": "f_i = W_ij v_j", "order": 0}', "'order'"),
    (b'{"program": "f_i = W_ij v_j", "order": 1000000}', "'order'"),
    (b'{"program": "f_i = W_ij v_j", "mode": "hessian", "order": 3}', "order 2"),
    (b'{"program": "f_i = W_ij v_j", "mode": "integrate"}', "'mode'"),
    (b'{"program": "f_i = W_ij v_j", "backend": "fortran"}', "'backend'"),
    (b'{"program": "f_i = W_ij v_j", "wrong": 1}', "unknown field"),
    (b'{"program": "y_ij = delta_ij"}', "no inputs"),
])
def test_a_bad_request_is_a_400_with_a_message(server, body, needle):
    start = time.monotonic()
    status, r = server.post("/api/derive", body)
    assert status == 400 and needle in r["error"]["message"], r
    assert r["error"]["type"] == "RequestError"
    assert time.monotonic() - start < TIME_LIMIT  # refused up front, not stopped by the time limit


def test_orders_up_to_the_maximum_are_taken():
    assert validate({"program": "s = x_i x_i", "order": MAX_ORDER})["order"] == MAX_ORDER


def test_body_size_limit(server):
    big = json.dumps({"program": "y = x_i x_i" + " " * 100_000}).encode()
    status, r = server.post("/api/derive", big)
    assert status == 413 and r["error"]["type"] == "RequestTooLarge"
    # Chunked, with no Content-Length: still cut off at the limit.
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    chunks = (b" " * 8192 for _ in range(20))
    conn.request("POST", "/api/derive", body=chunks, encode_chunked=True,
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["type"] == "RequestTooLarge"
    conn.close()


def test_wrong_method(server):
    assert server.get("/api/derive")[0] == 405


# ---------------------------------------------------------------- time limit and concurrency


def test_a_runaway_request_is_stopped_and_others_are_served(server):
    results: dict[str, tuple[int, dict, float]] = {}

    def runaway():
        start = time.monotonic()
        status, r = server.post("/api/derive", RUNAWAY)
        results["runaway"] = (status, r, time.monotonic() - start)

    thread = threading.Thread(target=runaway)
    thread.start()
    time.sleep(0.5)
    start = time.monotonic()
    status, r = server.derive(program="f_i = W_ij v_j", wrt=["W"])  # the other worker answers meanwhile
    assert status == 200 and r["text"] == "∂f_i/∂W_kl = δ_ik v_l"
    assert time.monotonic() - start < TIME_LIMIT
    thread.join(timeout=60)
    status, r, elapsed = results["runaway"]
    assert status == 504 and r["error"]["type"] == "TimeLimitError", r
    assert TIME_LIMIT - 0.5 < elapsed < TIME_LIMIT + 10
    # The killed worker is replaced: the server still computes.
    for _ in range(3):
        status, r = server.derive(program="s = x_i A_ij x_j", wrt=["x"])
        assert status == 200 and r["check"]["pass"]


def test_concurrent_requests_each_get_their_own_answer(server):
    names = ["A", "B", "C", "D", "E", "F", "G", "H"]
    answers: dict[str, tuple[int, dict]] = {}

    def ask(name: str) -> None:
        answers[name] = server.derive(program=f"f_i = {name}_ij v_j", wrt=[name])

    threads = [threading.Thread(target=ask, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for name in names:
        status, r = answers[name]
        assert status == 200 and r["text"] == f"∂f_i/∂{name}_kl = δ_ik v_l"


def test_a_busy_server_says_so():
    """One worker: runaway A holds it; B, sent just before A is stopped, gets A's replacement;
    C waits for a worker the whole time limit (B holds it) and is told the server is busy."""
    s = Server("--workers", "1", "--time-limit", "2")
    try:
        results: dict[str, tuple[int, dict]] = {}

        def send(name: str, body: dict) -> threading.Thread:
            thread = threading.Thread(target=lambda: results.setdefault(name, s.post("/api/derive", body)))
            thread.start()
            return thread

        threads = [send("A", RUNAWAY)]
        time.sleep(1.5)
        threads.append(send("B", RUNAWAY))
        time.sleep(0.2)
        threads.append(send("C", {"program": "f_i = W_ij v_j", "wrt": ["W"]}))
        for thread in threads:
            thread.join(timeout=60)
        assert results["A"][0] == 504 and results["B"][0] == 504
        status, r = results["C"]
        assert status == 503 and r["error"]["type"] == "BusyError"
        assert s.derive(program="f_i = W_ij v_j", wrt=["W"])[0] == 200
    finally:
        s.close()


def test_a_worker_that_dies_mid_job_is_replaced():
    async def main():
        pool = WorkerPool(size=1, time_limit=60)
        await pool.start()
        try:
            (worker,) = pool._all
            job = asyncio.create_task(pool.run("derive", RUNAWAY))
            await asyncio.sleep(1.0)
            worker.process.kill()  # as the kernel does to a process out of memory
            with pytest.raises(WorkerDied):
                await job
            status, result = await pool.run("derive", {"program": "f_i = W_ij v_j", "wrt": ["W"]})
            assert status == "ok" and result["text"] == "∂f_i/∂W_kl = δ_ik v_l"
            assert pool.replaced == 1 and worker not in pool._all
        finally:
            await pool.close()

    asyncio.run(main())


# ---------------------------------------------------------------- the command


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
    ("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("example.org", False),
])
def test_only_loopback_addresses_are_private(host, loopback):
    assert _is_loopback(host) is loopback




def test_serve_opens_the_page_in_a_browser(tmp_path):
    """Without --no-browser the page's address goes to the browser ($BROWSER, as webbrowser reads it)."""
    opened = tmp_path / "opened.txt"
    browser = f"{sys.executable} -c \"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\" %s"
    process = subprocess.Popen([sys.executable, "-m", "eingrad", "serve", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env={**env(), "BROWSER": browser})
    try:
        url = process.stdout.readline().split()[2]
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert opened.read_text() == url
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()


def test_serve_without_the_web_extra_names_it():
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"  # as if not installed: importing it raises ImportError
        "from eingrad.cli import main\n"
        "sys.exit(main(['serve', '--no-browser']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 1
    assert "pip install 'eingrad[web]'" in done.stderr and "Traceback" not in done.stderr


def test_serve_on_a_port_in_use_is_a_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "eingrad", "serve", "--port", str(port), "--no-browser"],
                              capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def test_serve_help_and_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "eingrad", "serve", "--help"], capture_output=True, text=True,
                          env=env(), timeout=60)
    assert done.returncode == 0 and "--no-browser" in done.stdout and "127.0.0.1" in done.stdout
    done = subprocess.run([sys.executable, "-m", "eingrad", "serve", "--port", "70000"], capture_output=True,
                          text=True, env=env(), timeout=60)
    assert done.returncode == 2 and "--port" in done.stderr

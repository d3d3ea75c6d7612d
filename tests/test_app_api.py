"""The web API of ``xmem annotate`` (xmem.app.server over xmem.app.annotator): every endpoint, the token
and Host guard, bad requests (4xx JSON, never a stack trace), one job at a time (409), cancellation, the
progress stream, and a server killed mid-propagation that reopens a consistent workspace."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from appserver import H, W, annotate_command, running_server, scene, scene_video
from conftest import GOLDEN_CONFIG
from xmem.app.annotator import Annotator, stroke_mask
from xmem.app.server import ServerConfig, allowed_hosts_for, create_app, page_url
from xmem.interactive import VideoSession
from xmem.io.frames import FrameFolder
from xmem.io.masks import read_index_mask
from xmem.model.checkpoint import load_model

TOKEN = "test-token-0123456789"
AUTH = {"X-XMem-Token": TOKEN}
CONFIG = dataclasses.replace(GOLDEN_CONFIG, size=48)


class SlowFolder(FrameFolder):
    """A frame folder that takes ``delay`` seconds a frame, so that a job is still running when asked."""

    delay = 0.0

    def frames(self, start: int = 0):
        for frame in super().frames(start):
            time.sleep(self.delay)
            yield frame


@pytest.fixture
def folder(tmp_path) -> Path:
    frames, _ = scene(12)
    path = tmp_path / "clip"
    path.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{t:05d}.png")
    return path


@pytest.fixture
def app(tmp_path, folder, golden_model):
    source = SlowFolder(folder)
    session = VideoSession(source, golden_model, CONFIG, workspace=tmp_path / "ws")
    annotator = Annotator(session, tmp_path / "ws" / "export")
    client = TestClient(create_app(annotator, ServerConfig(token=TOKEN)), base_url="http://127.0.0.1:8765")
    yield client, annotator, source
    annotator.close()


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def bad(response, status: int, needle: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert needle in message, message
    assert "Traceback" not in response.text


def add_disc(client) -> None:
    ok(client.post("/api/objects", json={"name": "disc"}, headers=AUTH), 201)
    ok(
        client.post(
            "/api/frames/0/brush", json={"object": 1, "points": [[40, 60]], "radius": 16}, headers=AUTH
        )
    )


# -- the guard -------------------------------------------------------------------------------------------
def test_every_request_needs_the_token(app):
    client, _, _ = app
    bad(client.get("/api/session"), 401, "token")
    bad(client.get("/api/session", headers={"X-XMem-Token": "wrong"}), 401, "token")
    bad(client.get("/static/app.js"), 401, "token")
    bad(client.get("/api/events"), 401, "token")
    bad(client.post("/api/objects", json={}), 401, "token")
    page = client.get("/")
    assert page.status_code == 401 and '<form method="get" action="/">' in page.text  # asks for the token
    assert ok(client.get("/api/session", headers={"Authorization": f"Bearer {TOKEN}"}))["frames"] == 12
    assert ok(client.get(f"/api/session?token={TOKEN}"))["frames"] == 12


def test_the_token_url_sets_a_cookie_that_reads_but_cannot_change(app):
    client, annotator, _ = app
    first = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/")  # the cookie is kept by the client
    assert page.status_code == 200 and f'content="{TOKEN}"' in page.text
    assert client.get("/static/app.js").status_code == 200
    bad(client.post("/api/objects", json={}), 403, "X-XMem-Token".lower())
    assert annotator.session.object_info == {}


def test_a_foreign_host_is_refused(app):
    client, _, _ = app
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example"):
        bad(client.get("/api/session", headers={**AUTH, "host": host}), 403, "not allowed")
    for host in ("127.0.0.1:8765", "localhost", "[::1]:8765"):
        assert client.get("/api/session", headers={**AUTH, "host": host}).status_code == 200
    assert allowed_hosts_for("0.0.0.0", ["lab-pc"]) == ("127.0.0.1", "localhost", "::1", "lab-pc")
    assert allowed_hosts_for("192.168.1.5")[-1] == "192.168.1.5"
    assert page_url("0.0.0.0", 80, "t") == "http://127.0.0.1:80/?token=t"
    assert page_url("::1", 80, "t") == "http://[::1]:80/?token=t"


def test_paths_outside_the_fixed_lists_are_refused(app):
    client, _, _ = app
    for path in (
        "/static/..%2F..%2Fannotator.py",
        "/static/../annotator.py",
        "/static/index.html.bak",
        "/api/export/..%2Fworkspace.json",
        "/api/export/masks%2F00000.png",
        "/api/frames/-1.jpg",
        "/api/nothing",
    ):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404, (path, response.text)
        assert "error" in response.json()
    bad(client.get("/api/export/summary.json", headers=AUTH), 404, "not exported yet")


# -- reading ---------------------------------------------------------------------------------------------
def test_frames_scaled_to_the_view_and_masks_as_grey_ids(app):
    client, annotator, _ = app
    info = ok(client.get("/api/session", headers=AUTH))
    assert (info["frames"], info["width"], info["height"]) == (12, W, H)
    assert info["objects"] == [] and info["key_frames"] == [] and info["job"] is None
    full = client.get("/api/frames/3.jpg", headers=AUTH)
    assert full.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(full.content)).size == (
        W,
        H,
    )
    assert Image.open(io.BytesIO(client.get("/api/frames/3.jpg?width=100", headers=AUTH).content)).size == (
        100,
        60,
    )
    assert Image.open(io.BytesIO(client.get("/api/frames/3.jpg?width=4000", headers=AUTH).content)).size == (
        W,
        H,
    )
    expected = annotator.session.frames[3].astype(int)
    decoded = np.array(Image.open(io.BytesIO(full.content))).astype(int)
    assert np.abs(decoded - expected).mean() < 6  # the frame asked for, not another
    bad(client.get("/api/frames/12.jpg", headers=AUTH), 400, "outside the video's 12 frames")
    bad(client.get("/api/frames/0.jpg?width=abc", headers=AUTH), 400, "width")
    bad(client.get("/api/frames/0.jpg?width=3", headers=AUTH), 400, "at least 16")
    empty = np.array(Image.open(io.BytesIO(client.get("/api/masks/5.png", headers=AUTH).content)))
    assert empty.shape == (H, W) and not empty.any()
    bad(client.get("/api/masks/99.png", headers=AUTH), 400, "outside")
    add_disc(client)
    mask = np.array(Image.open(io.BytesIO(client.get("/api/masks/0.png", headers=AUTH).content)))
    assert Image.open(io.BytesIO(client.get("/api/masks/0.png", headers=AUTH).content)).mode == "L"
    assert np.array_equal(mask, annotator.session.mask(0)) and (mask == 1).sum() > 700


# -- edits -----------------------------------------------------------------------------------------------
def test_objects_clicks_box_brush_eraser_undo_redo(app, tmp_path):
    client, annotator, _ = app
    truth = scene(12)[1]
    info = ok(client.post("/api/objects", json={"name": "disc"}, headers=AUTH), 201)
    assert info["id"] == 1 and info["objects"] == [{"id": 1, "name": "disc", "colour": [128, 0, 0]}]
    info = ok(
        client.post(
            "/api/frames/0/clicks", json={"object": 1, "points": [[40, 60]], "labels": [1]}, headers=AUTH
        )
    )
    assert info["key_frames"] == [0] and info["undo"] == [0]
    clicked = annotator.session.mask(0) == 1
    assert (clicked & (truth[0] == 1)).sum() / (clicked | (truth[0] == 1)).sum() > 0.8
    ok(client.post("/api/objects", json={}, headers=AUTH), 201)
    ok(client.post("/api/frames/0/box", json={"object": 2, "box": [136, 6, 170, 38]}, headers=AUTH))
    boxed = annotator.session.mask(0) == 2
    assert (boxed & (truth[0] == 2)).sum() / (boxed | (truth[0] == 2)).sum() > 0.7
    # the eraser rubs out object 2 only where the stroke passes
    before = annotator.session.mask(0)
    ok(
        client.post(
            "/api/frames/0/brush",
            json={"object": 2, "points": [[130, 22], [175, 22]], "radius": 4, "erase": True},
            headers=AUTH,
        )
    )
    after = annotator.session.mask(0)
    stroke = stroke_mask(H, W, [[130, 22], [175, 22]], 4)
    assert not (after[stroke] == 2).any() and (before[stroke] == 2).any()
    assert np.array_equal(after[~stroke], before[~stroke])
    info = ok(client.post("/api/frames/0/undo", headers=AUTH))
    assert np.array_equal(annotator.session.mask(0), before) and info["redo"] == [0]
    ok(client.post("/api/frames/0/redo", headers=AUTH))
    assert np.array_equal(annotator.session.mask(0), after)
    info = ok(client.patch("/api/objects/2", json={"name": "square", "colour": [0, 0, 255]}, headers=AUTH))
    assert info["objects"][1] == {"id": 2, "name": "square", "colour": [0, 0, 255]}
    info = ok(client.delete("/api/objects/2", headers=AUTH))
    assert [o["id"] for o in info["objects"]] == [1] and not (annotator.session.mask(0) == 2).any()
    saved = json.loads((tmp_path / "ws" / "workspace.json").read_text())
    assert saved["objects"] == {"1": {"name": "disc", "colour": [128, 0, 0]}}


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/api/frames/0/clicks", {"object": 1, "points": [[40, 60]]}, 400, "labels"),
        ("/api/frames/0/clicks", {"object": 1, "points": [[40, 60]], "labels": [2]}, 400, "labels"),
        (
            "/api/frames/0/clicks",
            {"object": 1, "points": [[400, 60]], "labels": [1]},
            400,
            "outside the frame",
        ),
        (
            "/api/frames/0/clicks",
            {"object": 1, "points": [["a", 6]], "labels": [1]},
            400,
            "a number is required",
        ),
        ("/api/frames/0/clicks", {"object": 7, "points": [[4, 6]], "labels": [1]}, 400, "no object 7"),
        (
            "/api/frames/0/clicks",
            {"object": "1", "points": [[4, 6]], "labels": [1]},
            400,
            "object: an integer",
        ),
        ("/api/frames/0/clicks", {"object": 1, "points": [], "labels": []}, 400, "non-empty list"),
        (
            "/api/frames/0/clicks",
            {"object": 1, "points": [[4, 6]], "labels": [1], "x": 1},
            400,
            "unknown field(s) x",
        ),
        ("/api/frames/40/clicks", {"object": 1, "points": [[4, 6]], "labels": [1]}, 400, "outside the video"),
        ("/api/frames/0/box", {"object": 1, "box": [1, 2, 3]}, 400, "[x0, y0, x1, y1]"),
        ("/api/frames/0/brush", {"object": 1, "points": [[4, 6]], "radius": 0}, 400, "radius"),
        ("/api/frames/0/brush", {"object": 1, "points": [[4, 6]], "radius": 5, "erase": "yes"}, 400, "erase"),
        ("/api/frames/0/brush", {"object": 1, "points": [[4, 6]] * 6000, "radius": 5}, 400, "1-5000 points"),
        ("/api/frames/0/undo", None, 400, "nothing to undo"),
        ("/api/propagate", {"frame": 0}, 400, "no mask to propagate"),
        ("/api/propagate", {"frame": 0, "direction": "sideways"}, 400, "forward, backward or both"),
        ("/api/propagate", {"frame": 99}, 400, "outside"),
        ("/api/export", {"alpha": 1}, 400, "alpha: true or false"),
        ("/api/objects", {"name": 5}, 400, "name: a string"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_change_nothing(app, path, body, status, needle, tmp_path):
    client, annotator, _ = app
    ok(client.post("/api/objects", json={"name": "disc"}, headers=AUTH), 201)
    before = (tmp_path / "ws" / "workspace.json").read_text()
    bad(client.post(path, json=body, headers=AUTH), status, needle)
    assert (tmp_path / "ws" / "workspace.json").read_text() == before
    assert annotator.session.masked_frames == []


def test_bodies_that_are_not_json_objects_or_too_large(app):
    client, _, _ = app
    bad(client.post("/api/objects", content=b"{not json", headers=AUTH), 400, "not valid JSON")
    bad(client.post("/api/objects", content=b"[1, 2]", headers=AUTH), 400, "must be a JSON object")
    bad(client.post("/api/objects", content=b" " * (1 << 20 + 1), headers=AUTH), 413, "larger than")
    bad(client.patch("/api/objects/1", json={"colour": [1, 2]}, headers=AUTH), 400, "colour")
    bad(client.patch("/api/objects/1", json={"name": "x"}, headers=AUTH), 400, "no object 1")
    bad(client.patch("/api/objects/1", json={"name": " "}, headers=AUTH), 400, "no object 1")
    assert client.put("/api/objects", headers=AUTH).status_code == 405


# -- jobs ------------------------------------------------------------------------------------------------
def test_one_job_at_a_time_409_and_cancel(app):
    client, annotator, source = app
    add_disc(client)
    source.delay = 0.15
    job = ok(client.post("/api/propagate", json={"frame": 0, "direction": "forward"}, headers=AUTH), 202)[
        "job"
    ]
    assert job["total"] == 11 and job["state"] == "running"
    bad(client.post("/api/propagate", json={"frame": 0}, headers=AUTH), 409, "propagation in progress")
    bad(client.post("/api/export", json={}, headers=AUTH), 409, "propagation in progress")
    bad(
        client.post("/api/frames/0/brush", json={"object": 1, "points": [[9, 9]], "radius": 3}, headers=AUTH),
        409,
        "in progress",
    )
    bad(client.post("/api/objects", json={}, headers=AUTH), 409, "in progress")
    assert client.get("/api/frames/5.jpg", headers=AUTH).status_code == 200  # reading goes on
    while annotator.job.done < 2:
        time.sleep(0.02)
    ok(client.post("/api/cancel", headers=AUTH))
    job = annotator.wait(30)
    assert job.state.value == "cancelled" and 2 <= job.done < 11
    assert len(annotator.session.masked_frames) == 1 + job.done  # the frames done keep their masks
    source.delay = 0.0
    job = ok(client.post("/api/propagate", json={"frame": 0, "direction": "forward"}, headers=AUTH), 202)[
        "job"
    ]
    assert annotator.wait(60).state.value == "done" and annotator.job.done == 11


def test_propagate_backward_and_both_from_a_middle_frame(app):
    client, annotator, _ = app
    ok(client.post("/api/objects", json={}, headers=AUTH), 201)
    ok(
        client.post(
            "/api/frames/6/brush", json={"object": 1, "points": [[58, 60]], "radius": 16}, headers=AUTH
        )
    )
    ok(client.post("/api/propagate", json={"frame": 6, "direction": "backward"}, headers=AUTH), 202)
    assert annotator.wait(60).done == 6 and annotator.session.masked_frames == list(range(7))
    ok(
        client.post(
            "/api/frames/9/brush", json={"object": 1, "points": [[67, 60]], "radius": 16}, headers=AUTH
        )
    )
    ok(client.post("/api/propagate", json={"frame": 9, "direction": "both"}, headers=AUTH), 202)
    job = annotator.wait(60)
    assert job.done == 2 + 2  # 10-11 forward, 8-7 backward (6 is a key frame)
    assert annotator.session.masked_frames == list(range(12))


def test_export_and_download(app, tmp_path):
    client, annotator, _ = app
    add_disc(client)
    ok(client.post("/api/propagate", json={"frame": 0}, headers=AUTH), 202)
    annotator.wait(60)
    answer = ok(client.post("/api/export", json={"overlay": False}, headers=AUTH), 202)
    assert answer["folder"] == str(tmp_path / "ws" / "export")
    job = annotator.wait(60)
    assert job.state.value == "done" and job.done == 12
    archive = client.get("/api/export/xmem-export.zip", headers=AUTH)
    assert archive.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert "masks/00011.png" in names and "alpha/1-disc/00011.png" in names and "overlay.mp4" not in names
    summary = ok(client.get("/api/export/summary.json", headers=AUTH))
    assert summary["objects"][0]["frames"] == 12
    bad(client.get("/api/export/overlay.mp4", headers=AUTH), 404, "not exported yet")
    for t in range(12):
        assert np.array_equal(
            read_index_mask(tmp_path / "ws" / "export" / "masks" / f"{t:05d}.png"), annotator.session.mask(t)
        )


# -- a real server: the progress stream, and a kill mid-propagation ---------------------------------------
def test_progress_streams_and_a_killed_server_reopens_a_consistent_workspace(tmp_path):
    video, _ = scene_video(tmp_path / "clip.mp4", 60)
    workspace = tmp_path / "ws"
    command = annotate_command(video, workspace, None)
    with running_server(command) as server:
        assert server.request("POST", "/api/objects", {"name": "disc"})[0] == 201
        status, _ = server.request(
            "POST", "/api/frames/0/brush", {"object": 1, "points": [[40, 60]], "radius": 18}
        )
        assert status == 200
        events: list[dict] = []
        request = urllib.request.Request(server.base + "/api/events", headers={"X-XMem-Token": server.token})

        def listen() -> None:
            with urllib.request.urlopen(request, timeout=60) as stream:
                for raw in stream:
                    line = raw.decode().strip()
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        job = events[-1]["job"]
                        if job is not None and job["done"] >= 8:
                            return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert server.request("POST", "/api/propagate", {"frame": 0, "direction": "forward"})[0] == 202
        listener.join(60)
        done = [e["job"]["done"] for e in events if e["job"] is not None]
        assert done == sorted(done) and done[-1] >= 8 and len(set(done)) >= 3  # progress, frame by frame
        assert events[-1]["job"]["frames_per_second"] > 0
        os.kill(server.process.pid, signal.SIGKILL)  # killed mid-propagation
        server.process.wait(10)
    masks = sorted(workspace.glob("masks/*.png"))
    assert 8 <= len(masks) < 60
    for path in masks:  # every mask on disk is a whole file
        with Image.open(path) as image:
            image.load()
    with running_server(command) as server:  # reopens the workspace where it stopped
        _, info = server.request("GET", "/api/session")
        assert info["key_frames"] == [0] and info["objects"][0]["name"] == "disc"
        assert info["masked"][0][0] == 0 and info["masked"][0][1] >= len(masks) - 1
        assert server.request("POST", "/api/propagate", {"frame": 0})[0] == 202
        assert server.wait_job()["job"]["state"] == "done"
    assert len(list(workspace.glob("masks/*.png"))) == 60


# -- the command's errors: one line, exit status 2, before anything is served ---------------------------------
def test_annotate_command_errors(tmp_path, folder, weights, capsys):
    import socket

    from conftest import GOLDEN_FLAGS, check_error
    from xmem.cli import main

    flags = ["--weights", str(weights), *GOLDEN_FLAGS[:-1]]
    check_error(
        capsys,
        main(["annotate", str(tmp_path / "missing.mp4"), "--workspace", str(tmp_path / "w")]),
        "no such file",
    )
    check_error(
        capsys,
        main(["annotate", str(folder), "--workspace", str(tmp_path / "w"), "--token", "short"]),
        "--token",
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        code = main(["annotate", str(folder), "--workspace", str(tmp_path / "w"), "--port", port, *flags])
        check_error(capsys, code, f"--port {port}: cannot listen there", "--port 0")
    assert not (tmp_path / "w").exists()  # refused before the workspace was made
    other = tmp_path / "other"
    other.mkdir()
    for t in range(5):
        Image.fromarray(np.full((H, W, 3), 40 * t, np.uint8)).save(other / f"{t:05d}.png")
    VideoSession(FrameFolder(other), load_model(weights), CONFIG, workspace=tmp_path / "w")
    code = main(["annotate", str(folder), "--workspace", str(tmp_path / "w"), "--port", "0", *flags])
    check_error(capsys, code, "belongs to another video")
    # a workspace served by another process (here: held by this one) is refused
    from xmem.app.server import hold_workspace

    with hold_workspace(tmp_path / "busy"):
        code = main(["annotate", str(folder), "--workspace", str(tmp_path / "busy"), "--port", "0", *flags])
    check_error(capsys, code, "in use by xmem annotate (pid")


def test_warm_up_runs_the_click_method_once_and_survives_its_failure(app):
    _, annotator, _ = app
    calls = []

    class Recording:
        def predict(self, image, prompt):
            calls.append((image.shape, prompt.points.tolist()))
            raise RuntimeError("no model here")

    annotator.session.predictor = Recording()
    annotator.warm_up()  # the failure is logged, not raised
    assert calls == [((64, 64, 3), [[32.0, 32.0]])]

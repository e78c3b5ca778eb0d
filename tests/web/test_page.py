"""The web page, as a visitor and a script use it: the real page (its own process and environment) over a real
stack on 127.0.0.1, driven through gradio_client and in headless Chromium."""
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def web_python() -> str:
    """The web room's interpreter: its own environment (Gradio needs numpy 2; the services' set pins numpy < 2)."""
    path = os.environ.get("WEB_PYTHON") or os.path.join(ROOT, ".venv-web", "bin", "python")
    if not os.path.isfile(path):
        pytest.skip(f"needs the web room's environment at {path} (make setup-web)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_web(gateway: str, work, **env_extra) -> tuple[subprocess.Popen, str]:
    python = web_python()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{os.path.join(ROOT, 'gen')}", GATEWAY_ADDR=gateway,
               WEB_PORT=str(port), WEB_WORK_DIR=str(work), GRADIO_ANALYTICS_ENABLED="False", **env_extra)
    proc = subprocess.Popen([python, "-m", "services.web.server"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if urllib.request.urlopen(url + "/healthz", timeout=2).status == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None, f"the web page exited with code {proc.returncode}"
        assert time.time() < deadline, "the web page did not come up in 120 s"
        time.sleep(0.3)
    return proc, url


@pytest.fixture(scope="module")
def web(stack, tmp_path_factory):
    work = tmp_path_factory.mktemp("web")
    proc, url = start_web(stack.addrs["gateway"], work / "out", AUTH_MODE="local")
    yield {"url": url, "work": work}
    proc.terminate()
    assert proc.wait(20) is not None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web-in")
    return {"face": helpers.write_png(str(tmp / "face.png"), helpers.face_image()),
            "speech": helpers.write_wav(str(tmp / "speech.wav"), helpers.speech_like([(0.6, True), (0.3, False),
                                                                                       (0.6, True)]))}


def test_health_and_metrics(web):
    assert b"SERVING" in urllib.request.urlopen(web["url"] + "/healthz").read()
    assert b"lipsync_web_health_checks" in urllib.request.urlopen(web["url"] + "/metrics").read()


def test_token_auth_as_the_gateways(stack, tmp_path):
    """With tokens the page asks for one (any user name, a gateway token as password); without tokens and not in
    local mode it refuses to start, as the gateway does."""
    from gradio_client import Client
    proc, url = start_web(stack.addrs["gateway"], tmp_path / "out", AUTH_MODE="token", AUTH_TOKENS="s3cret,other")
    try:
        with pytest.raises(Exception):
            Client(url + "/", verbose=False)
        with pytest.raises(Exception):
            Client(url + "/", auth=("ann", "wrong"), verbose=False)
        assert Client(url + "/", auth=("ann", "s3cret"), verbose=False).view_api(return_format="dict")
    finally:
        proc.terminate()
        proc.wait(20)
    bare = subprocess.run([web_python(), "-m", "services.web.server"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=f"{ROOT}:{os.path.join(ROOT, 'gen')}", AUTH_MODE="token",
                                   AUTH_TOKENS="", WEB_PORT=str(free_port())), timeout=120)
    assert bare.returncode != 0 and "no tokens" in bare.stderr


# version, bbox_shift, extra_margin, face_index, smoothing, parsing mode, cheek widths
FACE_DEFAULTS = ["v15", 0, 10, -1, True, "jaw", 90, 90]
RENDER_DEFAULTS = [False, False, "default"]        # lossless, colour match, priority


def test_generate_preview_and_compare_through_gradio_client(web, inputs, tmp_path):
    from gradio_client import Client, handle_file
    client = Client(web["url"] + "/", verbose=False)
    face, speech = handle_file(inputs["face"]), handle_file(inputs["speech"])
    video, summary = client.predict(face, speech, "auto", 0, 18, *RENDER_DEFAULTS, *FACE_DEFAULTS,
                                    api_name="/generate")
    frames, fps, has_audio, _ = helpers.decode_video(video)
    assert len(frames) == 37 and fps == 25 and has_audio          # floor(1.5 s x 25) frames, with the speech
    assert "37 frames" in summary and "engine" in summary
    with pytest.raises(Exception, match="greater than maximum value 51"):    # the table's range, on the page
        client.predict(face, speech, "auto", 0, 99, *RENDER_DEFAULTS, *FACE_DEFAULTS, api_name="/generate")

    png, info = client.predict(face, *FACE_DEFAULTS, api_name="/preview")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and "bbox_shift range [" in info

    video_dict = video if isinstance(video, str) else video["video"]
    table, report = client.predict(face, speech, [handle_file(video_dict), handle_file(video_dict)], "one, two",
                                   api_name="/compare")
    assert table["headers"] == ["metric", "one", "two", "better", "winner"], table
    rows = table.get("data") or table.get("value", {}).get("data")
    assert "sync_conf_free" in [row[0] for row in rows] and "data:image/png" in report


def test_a_live_session_shows_frames_as_they_come_and_records_the_session(web, inputs, tmp_path):
    """The live tab plays the 1.5 s speech into a live session at the pace of speech: frames are shown while it
    runs (more than one update with a frame), the last update has the figures and the recorded MP4 with sound;
    bad input gets the page's error and leaves no file behind."""
    from gradio_client import Client, handle_file
    client = Client(web["url"] + "/", verbose=False)
    face, speech = handle_file(inputs["face"]), handle_file(inputs["speech"])
    before = set(os.listdir(web["work"] / "out"))
    job = client.submit(face, speech, "auto", 0, *FACE_DEFAULTS, api_name="/live")
    video, status = job.result(timeout=120)[2], job.result()[1]
    updates = job.outputs()
    assert sum(1 for u in updates if u[0]) >= 3, updates            # the newest frame, several times while live
    assert "**recorded**" in status and "latency from the audio's arrival" in status and "late" in status
    frames, fps, has_audio, audio_s = helpers.decode_video(video if isinstance(video, str) else video["video"])
    assert fps == 25 and has_audio and 37 <= len(frames) <= 45      # 1.5 s of speech, then the last idle frames
    assert abs(audio_s - len(frames) / 25) < 0.1                     # the session's sound, as long as its frames
    with pytest.raises(Exception, match="Upload a face"):
        client.predict(None, speech, "auto", 0, *FACE_DEFAULTS, api_name="/live")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all" * 50)
    with pytest.raises(Exception, match="INVALID_ARGUMENT"):
        client.predict(handle_file(str(broken)), speech, "auto", 0, *FACE_DEFAULTS, api_name="/live")
    assert len(set(os.listdir(web["work"] / "out")) - before) == 1   # the recording; nothing from the failures


def test_a_live_session_left_by_its_visitor_ends_on_every_service(stack, web, tmp_path):
    """A visitor who cancels (or closes the page) mid-session: the gateway's, generator's and render's calls of
    the session end, and the half-made recording is not kept."""
    from gradio_client import Client, handle_file
    client = Client(web["url"] + "/", verbose=False)
    # 20 s of speech: the session runs on unless the cancel reaches it
    speech = helpers.write_wav(str(tmp_path / "long.wav"), helpers.speech_like([(20.0, True)]))
    face = helpers.write_png(str(tmp_path / "face.png"), helpers.face_image())
    before = set(os.listdir(web["work"] / "out"))
    job = client.submit(handle_file(face), handle_file(speech), "loudness", 0, *FACE_DEFAULTS, api_name="/live")
    deadline = time.time() + 60
    while sum(1 for u in job.outputs() if u[0]) < 2:
        assert time.time() < deadline and not job.done(), job.outputs()
        time.sleep(0.1)
    assert helpers.in_flight(stack, "gateway", "LiveSession") >= 1
    job.cancel()
    calls = {"gateway": "LiveSession", "generator": "GenerateLive", "render": "RenderLive"}
    deadline = time.time() + 8
    while time.time() < deadline and any(helpers.in_flight(stack, s, m) for s, m in calls.items()):
        time.sleep(0.2)
    assert {s: helpers.in_flight(stack, s, m) for s, m in calls.items()} == {s: 0 for s in calls}
    assert set(os.listdir(web["work"] / "out")) == before


@pytest.fixture
def browser():
    """Headless Chromium (Debian's chromium + chromium-driver), or the test skips with the reason."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (make setup-web installs them where apt can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()


def upload(driver, field: str, path: str) -> None:
    from selenium.webdriver.common.by import By
    driver.find_element(By.CSS_SELECTOR, f"#{field} input[type=file]").send_keys(path)


def test_a_browser_generates_and_plays_the_result(web, inputs, tmp_path, browser):
    """The page in Chromium: upload the sample face and speech, press Preview (the drawn frame appears) and
    Generate, and the finished video element appears with its media loaded; the screenshot is kept
    (WEB_SCREENSHOT=path copies it out)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(web["url"] + "/")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#face input[type=file]"))
    upload(driver, "face", inputs["face"])
    upload(driver, "speech", inputs["speech"])
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#speech audio, #speech [data-testid=waveform-controls]")
               or "speech.wav" in d.page_source)
    time.sleep(1)                                          # the uploads settle
    driver.find_element(By.CSS_SELECTOR, "#preview").click()
    WebDriverWait(driver, 120).until(lambda d: d.execute_script(
        "const i = document.querySelector('#preview-image img'); return i && i.complete && i.naturalWidth > 0"))
    assert "bbox_shift range" in driver.find_element(By.CSS_SELECTOR, "#preview-info").text
    driver.find_element(By.CSS_SELECTOR, "#generate").click()
    WebDriverWait(driver, 240).until(lambda d: d.execute_script(
        "const v = document.querySelector('#result video'); return v && v.readyState >= 1 && v.duration > 0"))
    duration = driver.execute_script("return document.querySelector('#result video').duration")
    assert abs(duration - 1.5) < 0.2
    assert "37 frames" in driver.find_element(By.CSS_SELECTOR, "#summary").text
    shot = str(tmp_path / "page.png")
    driver.save_screenshot(shot)
    assert open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(shot) > 20000
    if os.environ.get("WEB_SCREENSHOT"):
        shutil.copy(shot, os.environ["WEB_SCREENSHOT"])


def test_a_browser_watches_a_live_session(web, inputs, tmp_path, browser):
    """The Live tab in Chromium: frames show while the session runs (the shown image changes), then the recorded
    session plays with its length."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    speech = helpers.write_wav(str(tmp_path / "speech3.wav"), helpers.speech_like([(3.0, True)]))
    driver.get(web["url"] + "/")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: [t for t in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text == "Live"])
    [t for t in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text == "Live"][0].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#live-face input[type=file]"))
    upload(driver, "live-face", inputs["face"])
    upload(driver, "live-speech", speech)
    wait.until(lambda d: "speech3.wav" in d.page_source or d.find_elements(By.CSS_SELECTOR, "#live-speech audio"))
    time.sleep(1)
    driver.find_element(By.CSS_SELECTOR, "#live-start").click()
    shown = set()
    deadline = time.time() + 60
    while not driver.find_elements(By.CSS_SELECTOR, "#live-result video") and time.time() < deadline:
        src = driver.execute_script("const i = document.querySelector('#live-frame img'); return i && i.src")
        if src:
            shown.add(src)
        time.sleep(0.05)
    assert len(shown) >= 3, shown                       # the frame changed while the session ran
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "const v = document.querySelector('#live-result video'); return v && v.readyState >= 1 && v.duration > 0"))
    duration = driver.execute_script("return document.querySelector('#live-result video').duration")
    assert 2.9 < duration < 3.6
    assert "**" not in driver.find_element(By.CSS_SELECTOR, "#live-status").text    # rendered Markdown
    assert "latency" in driver.find_element(By.CSS_SELECTOR, "#live-status").text

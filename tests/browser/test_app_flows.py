"""The app's flows in a real browser: forget a known person, enrol and forget an uploaded face set, refuse a photo
without a face, keep two sessions apart, and delete a session's files (uploads included) when its page closes.

Set ``DLFD_SCREENSHOTS=<folder>`` to save a screenshot of each view there (``docs/screenshots`` for the README).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from .conftest import wait_for_gradio

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

THUMBNAILS = "#identity-gallery .grid-container .thumbnail-item"
RUN_TIMEOUT_MS = 300_000  # a run with the gold model on a busy 2-core machine; normally about 20 s


def _shot(page: Page, name: str, selector: str | None = None) -> None:
    folder = os.environ.get("DLFD_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    target = page.locator(selector) if selector else page
    target.screenshot(path=str(Path(folder) / f"{name}.png"), **({} if selector else {"full_page": True}))


@pytest.fixture(scope="module")
def face_photos(tmp_path_factory) -> list[Path]:
    """PNG copies of an unseen ORL person's ten photos (standing in for a person's own upload)."""
    from dlfd_core.data import load_orl
    from dlfd_core.studio import write_example_photos

    return write_example_photos(load_orl(), tmp_path_factory.mktemp("upload"), prefix="me")


@pytest.fixture(scope="module")
def no_face(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("noface") / "wall.png"
    Image.fromarray(np.full((160, 160, 3), 180, np.uint8)).save(path)
    return path


def _select_person(page: Page, index: int) -> str:
    thumb = page.locator(THUMBNAILS).nth(index)
    name = thumb.locator("img").get_attribute("alt")
    thumb.click()
    from playwright.sync_api import expect

    expect(page.locator("#forget-who")).to_contain_text(name)
    return name


def _set_gold(page: Page, on: bool) -> None:
    box = page.locator("#with-gold input[type=checkbox]")
    if box.is_checked() != on:
        box.click()


def _run(page: Page) -> None:
    from playwright.sync_api import expect

    page.locator("#run").click()
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=RUN_TIMEOUT_MS)


def _enrol(page: Page, name: str, files: list[Path]) -> None:
    page.get_by_role("button", name="Or upload your own face set").click()
    page.locator("#enrol-name textarea").fill(name)
    page.locator("#enrol-files input[type=file]").set_input_files([str(f) for f in files])
    from playwright.sync_api import expect

    expect(page.locator("#enrol-count")).to_contain_text(f"{len(files)} photo", timeout=60_000)
    page.locator("#enrol-button").click()


def test_forget_a_known_person_shows_cards_and_plots(app_page: Page) -> None:
    from playwright.sync_api import expect

    page = app_page
    expect(page.locator("#intro")).to_contain_text("30 people")
    expect(page.locator("#intro")).to_contain_text("CPU")
    _shot(page, "01_start")
    name = _select_person(page, 6)
    expect(page.locator("#method input[role=combobox]")).to_have_value("DLFD (dlfd)")
    started = time.monotonic()
    _run(page)
    print(f"\nclick to results (DLFD, gold model trained): {time.monotonic() - started:.1f} s")
    expect(page.locator("#verdict")).to_contain_text(
        re.compile(rf"{name}(: inconclusive| looks forgotten| is not forgotten)")
    )
    cards = page.locator("#cards .dlfd-card")
    expect(cards).to_have_count(6)  # the comparison with the gold model, four metrics, the time
    _verdict_matches_its_card(page)
    # one attack scale: the attack card is LiRA's AUC (the bundled model ships its reference statistics) in percent
    # with its interval, like the verdict's comparison; a line under the cards says how to read them
    attack = page.locator("#cards .dlfd-card[data-metric=attack_auc]")
    expect(attack).to_contain_text("Membership attack (AUC), LiRA")
    expect(attack.locator(".dlfd-ci")).to_have_count(3)
    expect(page.locator("#cards .dlfd-scale-note")).to_contain_text("50% = it cannot tell")
    expect(page.locator("#cards .dlfd-cards-caption")).to_have_text("Original → Unlearned → Gold")
    for plot in ("#plot-embedding", "#plot-attack", "#plot-runs"):
        expect(page.locator(f"{plot} .js-plotly-plot")).to_be_visible(timeout=60_000)
    expect(page.locator("#predictions .dlfd-face").first).to_be_visible()
    # every caption is shown whole: the person, the role and each model's answer
    first = page.locator("#predictions .dlfd-face figcaption").first
    expect(first).to_contain_text("before:")
    expect(first).to_contain_text("after:")
    expect(first).to_contain_text("gold:")
    expect(page.locator('#runs-table [data-testid="cell-0-0"]')).to_contain_text("#1 dlfd")
    expect(page.locator("#downloads")).to_contain_text(".safetensors")
    expect(page.locator("#downloads")).to_contain_text(".json")
    _shot(page, "02_results")
    _shot(page, "03_plots", "#plot-embedding")
    _shot(page, "04_attack", "#plot-attack")


def test_choose_the_lfw_model_and_forget_a_person_by_name(app_page: Page) -> None:
    """The LFW model is chosen on the page, a public figure is picked by name from the list and forgotten; the
    results name them, and the page says which data and model are loaded and credits LFW."""
    from playwright.sync_api import expect

    from dlfd_core.bundled import bundle
    from dlfd_core.data import load_split

    known = load_split(bundle("lfw").split_path).known
    page = app_page
    page.locator("#dataset").get_by_text(re.compile("^LFW")).click()
    # the first switch loads the faces and, in the background, the model's outputs on all 4,324 photos
    expect(page.locator(THUMBNAILS)).to_have_count(len(known), timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#intro")).to_contain_text("Labeled Faces in the Wild")
    expect(page.locator("#intro")).to_contain_text(f"over the {len(known)} people")
    captions = page.locator(f"{THUMBNAILS} img").evaluate_all("images => images.map(image => image.alt)")
    assert captions == [name.replace("_", " ") for name in known]
    combobox = page.locator("#forget-who input[role=combobox]")
    combobox.fill("Colin Pow")
    page.get_by_role("option", name="Colin Powell", exact=True).click()
    expect(page.locator("#forget-who")).to_contain_text("Colin Powell")
    _set_gold(page, False)
    _run(page)
    expect(page.locator("#verdict")).to_contain_text("Colin Powell: not judged")
    expect(page.locator("#predictions")).to_contain_text("Colin Powell")
    expect(page.locator("#plot-attack .js-plotly-plot")).to_be_visible(timeout=60_000)
    expect(page.locator('#runs-table [data-testid="cell-0-0"]')).to_contain_text("#1 dlfd")
    _shot(page, "10_lfw_results")
    # and back: the ORL model again, a fresh start (no runs)
    page.locator("#dataset").get_by_text(re.compile("^ORL")).click()
    expect(page.locator(THUMBNAILS)).to_have_count(30, timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#intro")).to_contain_text("ORL")
    expect(page.locator('#runs-table [data-testid="cell-0-0"]')).to_have_count(0)


def test_enrol_an_uploaded_face_set_then_forget_it(app_page: Page, face_photos, no_face, gradio_temp) -> None:
    from playwright.sync_api import expect

    page = app_page

    def cached() -> set[Path]:  # files with content (Gradio's upload parser also leaves empty temp files)
        return {p for p in gradio_temp.rglob("*") if p.is_file() and p.stat().st_size > 0}

    before = cached()
    _enrol(page, "me", [*face_photos, no_face])
    expect(page.locator("#enrol-status")).to_contain_text("Enrolled", timeout=RUN_TIMEOUT_MS)
    expect(page.locator(THUMBNAILS)).to_have_count(31)
    # the uploaded photos are gone from the server once their faces are aligned, and no face of the person was
    # copied into Gradio's shared cache (crops are served from the session's own folder, deleted with it)
    left = cached() - before
    assert sorted(str(p.relative_to(gradio_temp)) for p in left) == []
    expect(page.locator("#enrol-failures")).to_contain_text("wall.png")
    expect(page.locator("#enrol-failures")).to_contain_text("No face found")
    expect(page.locator("#enrol-crops .dlfd-face")).to_have_count(len(face_photos))
    expect(page.locator("#enrol-heldout .dlfd-face").first).to_be_visible()
    box = page.locator("#enrol-heldout .dlfd-face img").first.bounding_box()
    assert box is not None and box["width"] <= 120  # a held-out photo is a thumbnail, never blown up to full width
    expect(page.locator(THUMBNAILS)).to_have_count(31)
    expect(page.locator("#forget-who")).to_contain_text("me")
    _shot(page, "05_enrolled")
    _set_gold(page, False)
    _run(page)
    expect(page.locator("#verdict")).to_contain_text(re.compile(r"\bme: not judged"))
    expect(page.locator("#cards .dlfd-cards-caption")).to_have_text("Original → Unlearned")


def test_a_photo_without_a_face_gets_a_clear_message(app_page: Page, no_face) -> None:
    from playwright.sync_api import expect

    page = app_page
    _enrol(page, "nobody", [no_face])
    message = page.get_by_text("usable, different faces", exact=False).first
    expect(message).to_be_visible(timeout=60_000)
    expect(page.get_by_text("wall.png: No face found", exact=False).first).to_be_visible()
    assert "Traceback" not in page.content()
    _shot(page, "06_no_face")
    # the session is still usable: the people list is unchanged and a run still works
    expect(page.locator(THUMBNAILS)).to_have_count(30)
    name = _select_person(page, 2)
    _set_gold(page, False)
    _run(page)
    expect(page.locator('#runs-table [data-testid="cell-0-1"]')).to_have_text(name)


def test_two_sessions_see_only_their_own_uploads(browser: Browser, app_server: str, face_photos, sessions_dir) -> None:
    from playwright.sync_api import expect

    first, second = browser.new_context(), browser.new_context()
    try:
        a, b = first.new_page(), second.new_page()
        wait_for_gradio(a, app_server)
        wait_for_gradio(b, app_server)
        _enrol(a, "alice", face_photos)
        expect(a.locator("#enrol-status")).to_contain_text("Enrolled", timeout=RUN_TIMEOUT_MS)
        expect(a.locator(THUMBNAILS)).to_have_count(31)
        # the other session still has only the bundled people, no crops, and cannot choose alice
        expect(b.locator(THUMBNAILS)).to_have_count(30)
        assert "alice" not in b.locator(THUMBNAILS).locator("img").evaluate_all("els => els.map(e => e.alt)")
        b.get_by_role("button", name="Or upload your own face set").click()
        expect(b.locator("#enrol-crops .dlfd-face")).to_have_count(0)
        b.locator("#forget-who input[role=combobox]").click()
        options = b.locator("ul[role=listbox] li").all_inner_texts()
        assert options and "alice" not in [o.strip() for o in options]
        folders = {p for p in sessions_dir.iterdir() if p.is_dir()}
        assert len(folders) >= 2
        # closing the first page ends its session: its folder (crops, reports, models) is deleted
        a_crops = [p for p in sessions_dir.rglob("enrolled_*.png")]
        assert a_crops
        first.close()
        deadline = time.monotonic() + 30
        while any(p.exists() for p in a_crops) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(p.exists() for p in a_crops)
    finally:
        for context in (first, second):
            try:
                context.close()
            except Exception:  # already closed
                pass


def test_photos_chosen_but_never_enrolled_are_deleted_when_the_page_closes(
    browser: Browser, app_server: str, face_photos, gradio_temp, tmp_path
) -> None:
    import shutil

    from playwright.sync_api import expect

    def cached(name: str) -> list[Path]:
        return [p for p in gradio_temp.rglob(name) if p.is_file()]

    context = browser.new_context()
    try:
        page = context.new_page()
        wait_for_gradio(page, app_server)
        page.get_by_role("button", name="Or upload your own face set").click()
        chosen = [Path(shutil.copy(f, tmp_path / f"pending_{i}.png")) for i, f in enumerate(face_photos[:3])]
        page.locator("#enrol-files input[type=file]").set_input_files([str(f) for f in chosen])
        expect(page.locator("#enrol-count")).to_contain_text("3 photo", timeout=60_000)
        names = [f.name for f in chosen]
        assert all(cached(name) for name in names), "the upload should be on the server while the page is open"
    finally:
        context.close()
    deadline = time.monotonic() + 30
    while any(cached(name) for name in names) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(cached(name) for name in names)


def _y4m(image: np.ndarray, path: Path, frames: int = 5) -> Path:
    """A still video (YUV4MPEG2, 4:2:0) of a greyscale image, for chromium's fake webcam."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    luma = np.ascontiguousarray(image[:height, :width], dtype=np.uint8)
    chroma = np.full((height // 2) * (width // 2), 128, np.uint8).tobytes()
    with path.open("wb") as stream:
        stream.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            stream.write(b"FRAME\n" + luma.tobytes() + chroma + chroma)
    return path


def test_a_webcam_photo_is_enrolled_with_the_uploads(launch, app_server: str, face_photos, tmp_path) -> None:
    """Chromium's fake camera plays a photo of the example person; one capture plus four uploaded photos enrol."""
    from playwright.sync_api import expect

    face = np.asarray(Image.open(face_photos[-1]).convert("L").resize((368, 448)))
    video = _y4m(face, tmp_path / "face.y4m")
    camera = launch(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    )
    context = camera.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        wait_for_gradio(page, app_server)
        page.get_by_role("button", name="Or upload your own face set").click()
        page.locator("#enrol-webcam").get_by_text("Click to Access Webcam").click()
        page.wait_for_function("document.querySelector('#enrol-webcam video')?.videoWidth > 0")
        page.locator("#enrol-webcam button[aria-label='capture photo']").click()
        expect(page.locator("#enrol-webcam button[aria-label='Remove Image']")).to_be_visible()  # a photo is taken
        page.locator("#enrol-add-webcam").click()
        expect(page.locator("#enrol-count")).to_contain_text("1 webcam photo")
        page.locator("#enrol-name textarea").fill("cam")
        # four photos that are not near-identical to each other or to the webcam's (ORL's s35 has three near-identical
        # pairs among its first four, which enrolment keeps together and does not count as different faces)
        chosen = [face_photos[i] for i in (2, 4, 5, 8)]
        page.locator("#enrol-files input[type=file]").set_input_files([str(f) for f in chosen])
        expect(page.locator("#enrol-count")).to_contain_text("5 photo", timeout=60_000)
        page.locator("#enrol-button").click()
        expect(page.locator("#enrol-status")).to_contain_text("Enrolled", timeout=RUN_TIMEOUT_MS)
        expect(page.locator("#enrol-crops .dlfd-face")).to_have_count(5)
        expect(page.locator("#enrol-failures")).not_to_contain_text("without a usable face")
    finally:
        context.close()


OUTCOME_WORDS = {"forgotten": "looks forgotten", "detectable": "is not forgotten", "inconclusive": "inconclusive"}


def _verdict_matches_its_card(page: Page) -> str:
    """The verdict's words and the gold-comparison card's outcome agree, and no other outcome's words appear."""
    from playwright.sync_api import expect

    card = page.locator("#cards .dlfd-card[data-metric=judgement]")
    expect(card).to_have_count(1)
    outcome = card.get_attribute("data-outcome")
    assert outcome in OUTCOME_WORDS
    text = page.locator("#verdict").inner_text()
    for other, words in OUTCOME_WORDS.items():
        assert (words in text) == (other == outcome), (outcome, text)
    return outcome


def test_a_run_that_differs_from_the_gold_model_is_not_called_forgotten(app_page: Page) -> None:
    """Fine-tuning at a learning rate of 0 leaves the person recognised: the verdict must say so, never
    "forgotten", and name what is still detectable."""
    from playwright.sync_api import expect

    page = app_page
    name = _select_person(page, 6)
    _set_gold(page, True)
    page.locator("#method input[role=combobox]").click()
    page.locator("ul[role=listbox] li", has_text="(finetune)").click()
    expect(page.locator("#method-info")).to_contain_text("Fine-tun")
    page.locator("#settings").click()
    for label in ("lr", "head_lr"):
        field = page.get_by_label(label, exact=True)
        field.fill("0")
        field.press("Tab")
    _run(page)
    expect(page.locator("#verdict")).to_contain_text(f"{name} is not forgotten")
    expect(page.locator("#verdict")).to_contain_text("recognises more of the")
    assert _verdict_matches_its_card(page) == "detectable"
    expect(page.locator("#cards .dlfd-card[data-metric=judgement]")).to_contain_text("forget accuracy: 100% → ")


def test_method_form_follows_the_method_and_refuses_bad_values(app_page: Page) -> None:
    from playwright.sync_api import expect

    page = app_page
    _select_person(page, 3)
    _set_gold(page, False)
    page.locator("#method input[role=combobox]").click()
    page.locator("ul[role=listbox] li", has_text="(finetune)").click()
    from dlfd_core.unlearn import method_class

    finetune = method_class("finetune")
    first_paragraph = " ".join(finetune.__doc__.strip().split("\n\n")[0].split())
    expect(page.locator("#method-info")).to_contain_text(first_paragraph)  # its help, with its paper, in full
    expect(page.locator("#settings")).to_contain_text("Settings of finetune")
    page.locator("#settings").click()  # open the accordion of the method's settings
    for field in finetune.fields_info():  # a control for each setting of this method
        expect(page.get_by_label(field["name"], exact=True)).to_be_visible()
    expect(page.get_by_label("steps", exact=True)).to_have_count(0)  # DLFD's synthesis steps are gone
    lr = page.get_by_label("lr", exact=True)
    expect(lr).to_have_value("0.0005")
    lr.fill("-1")
    lr.press("Tab")
    page.locator("#run").click()
    expect(page.get_by_text("lr", exact=False).filter(has_text="-1").first).to_be_visible(timeout=60_000)
    assert "Traceback" not in page.content()
    lr.fill("0.0005")
    lr.press("Tab")
    epochs = page.get_by_label("epochs", exact=True)
    epochs.fill("3")
    epochs.press("Tab")
    _run(page)
    expect(page.locator('#runs-table [data-testid="cell-0-2"]')).to_have_text("finetune")
    expect(page.locator('#runs-table [data-testid="cell-0-3"]')).to_have_text("epochs=3")


def test_cancel_stops_a_run_and_leaves_the_session_as_it_was(app_page: Page) -> None:
    from playwright.sync_api import expect

    page = app_page
    _select_person(page, 10)
    _set_gold(page, True)  # the gold model's training makes the run long enough to cancel midway
    page.locator("#run").click()
    # Cancel only once the run is under way (its progress names a stage), so that this checks a run stopped midway,
    # not one cancelled while it waited in the queue, on a machine of any speed
    expect(page.locator("#run-status")).to_contain_text(re.compile("unlearning|training|evaluating"), timeout=60_000)
    page.locator("#cancel").click()
    expect(page.locator("#run-status")).to_contain_text("cancelled", timeout=120_000)
    expect(page.locator('#runs-table [data-testid="cell-0-0"]')).to_have_count(0)
    expect(page.locator("#verdict")).to_have_text("")
    assert "Traceback" not in page.content()

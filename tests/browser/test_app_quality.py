"""What a new user meets with their own photos and a busy page: progress that shows, a gallery that fits the screen,
old results cleared by a failed run, a set of copies refused, a set with a second person warned about.

Set ``DLFD_SCREENSHOTS=<folder>`` to save the screenshots (``docs/screenshots`` for the docs).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from .conftest import wait_for_gradio
from .test_app_flows import RUN_TIMEOUT_MS, THUMBNAILS, _enrol, _run, _select_person, _set_gold, _shot, face_photos

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["face_photos"]  # the fixture, shared with the flows


@pytest.fixture(scope="module")
def second_person(tmp_path_factory) -> list[Path]:
    """Three photos of another unseen ORL person (s2), as a person might mix into their own set by mistake."""
    from dlfd_core.data import load_orl

    dataset = load_orl()
    folder = tmp_path_factory.mktemp("other")
    paths = []
    for i, record in enumerate(dataset.records_of("s2")[:3]):
        path = folder / f"other_{i + 1}.png"
        with Image.open(dataset.root / record.key) as image:
            image.convert("RGB").save(path)
        paths.append(path)
    return paths


def test_progress_is_visible_while_a_run_works(app_page: Page) -> None:
    from playwright.sync_api import expect

    page = app_page
    _select_person(page, 12)
    _set_gold(page, True)
    page.locator("#run").click()
    status = page.locator("#run-status")
    # Gradio's tracker writes the stage and its fraction into the status line while the run works
    progress = status.locator(".progress-text, .meta-text, .progress-level").first
    expect(progress).to_be_visible(timeout=60_000)
    # the stage is named once the run works (before that the tracker shows the queue position or "processing")
    expect(status).to_contain_text(re.compile(r"unlearning|epoch|training|evaluating"), timeout=120_000)
    box = status.bounding_box()
    assert box is not None and box["height"] >= 30, box
    text = status.inner_text()
    assert text.strip(), "the status line shows nothing while the run works"
    _shot(page, "07_progress")
    expect(status).to_contain_text("finished", timeout=RUN_TIMEOUT_MS)


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_the_gallery_shows_every_person_whole(browser: Browser, app_server: str, width: int, height: int) -> None:
    """Every face of the gallery is on the page, whole and not hidden in a scroll box, on a laptop and on a phone."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        wait_for_gradio(page, app_server)
        thumbs = page.locator(THUMBNAILS)
        assert thumbs.count() == 30
        gallery = page.locator("#identity-gallery").bounding_box()
        assert gallery is not None
        for i in range(thumbs.count()):
            thumb = thumbs.nth(i)
            thumb.scroll_into_view_if_needed()
            box = thumb.bounding_box()
            assert box is not None and box["width"] >= 40, (i, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (i, box)
            # nothing is clipped by the gallery's own scroll area: the page scrolls, the gallery grows
            clipped = thumb.evaluate(
                """el => { for (let p = el.parentElement; p; p = p.parentElement) {
                    const s = getComputedStyle(p);
                    if ((s.overflowY === 'auto' || s.overflowY === 'scroll' || s.overflowY === 'hidden')
                        && p.scrollHeight > p.clientHeight + 1 && p.closest('#identity-gallery')) return true; }
                    return false; }"""
            )
            assert not clipped, f"face {i} sits in a scrolled or clipped box"
        _shot(page, f"08_gallery_{width}px")
    finally:
        context.close()


def test_a_failed_run_clears_the_old_results(app_page: Page) -> None:
    from playwright.sync_api import expect

    page = app_page
    _select_person(page, 4)
    _set_gold(page, False)
    page.locator("#method input[role=combobox]").click()
    page.locator("ul[role=listbox] li", has_text="(finetune)").click()
    expect(page.locator("#method-info")).to_contain_text("Fine-tun")
    _run(page)
    expect(page.locator("#verdict")).not_to_have_text("")
    expect(page.locator("#cards .dlfd-card").first).to_be_visible()
    page.locator("#settings").click()
    lr = page.get_by_label("lr", exact=True)
    lr.fill("-1")
    lr.press("Tab")
    page.locator("#run").click()
    expect(page.locator("#run-status")).to_contain_text("The run failed", timeout=60_000)
    expect(page.locator("#run-status")).to_contain_text("lr")
    expect(page.locator("#verdict")).to_have_text("")
    expect(page.locator("#cards .dlfd-card")).to_have_count(0)
    expect(page.locator("#predictions .dlfd-face")).to_have_count(0)
    assert "Traceback" not in page.content()
    expect(page.locator("#run")).to_be_enabled()  # the page is ready for the next try


def test_a_set_of_copies_of_one_photo_is_refused(app_page: Page, face_photos, tmp_path) -> None:
    from playwright.sync_api import expect

    page = app_page
    copies = [Path(shutil.copy(face_photos[0], tmp_path / f"me_{i:02d}.png")) for i in range(10)]
    _enrol(page, "copies", copies)
    expect(page.locator("#enrol-status")).to_contain_text("The enrolment failed", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#enrol-status")).to_contain_text("Only 1 usable, different face among 10 photos")
    expect(page.locator("#enrol-status")).to_contain_text("9 were repeats of another photo")
    expect(page.locator(THUMBNAILS)).to_have_count(30)  # nobody was enrolled
    expect(page.locator("#enrol-button")).to_be_enabled()


def test_a_set_with_a_second_person_is_enrolled_with_a_warning(app_page: Page, face_photos, second_person) -> None:
    from playwright.sync_api import expect

    page = app_page
    _enrol(page, "mixed", [*face_photos, *second_person])
    status = page.locator("#enrol-status")
    expect(status).to_contain_text("Enrolled", timeout=RUN_TIMEOUT_MS)
    expect(status).to_contain_text("3 of 13 faces look like a different person from the rest of the set")
    for photo in second_person:
        expect(status).to_contain_text(photo.name)
    flagged = page.locator("#enrol-crops .dlfd-face figcaption", has_text="another person?")
    expect(flagged).to_have_count(3)
    _shot(page, "09_two_people_warned")

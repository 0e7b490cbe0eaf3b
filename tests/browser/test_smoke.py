"""The app's first page renders in a real browser: the title and one gallery thumbnail per known identity."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # playwright is imported in the test body: the fixtures skip first when it is missing
    from playwright.sync_api import Page

# Grid thumbnails of the gallery with elem_id="identity-gallery": each a <button class="thumbnail-item"
# aria-label="Thumbnail i of n"> holding an <img> whose alt is the caption. A preview, when open, shows a second
# strip of thumbnails outside `.grid-container`, so stay inside it.
THUMBNAILS = "#identity-gallery .grid-container .thumbnail-item"


def test_title_and_identity_gallery(app_page: Page) -> None:
    from playwright.sync_api import expect

    from dlfd_core.bundled import DEFAULT_BUNDLE, bundle
    from dlfd_core.data import load_split

    known = list(load_split(bundle(DEFAULT_BUNDLE).split_path).known)  # who the shipped model knows, in class order

    expect(app_page).to_have_title("DLFD Studio")
    expect(app_page.get_by_role("heading", level=1, name="DLFD Studio")).to_be_visible()

    thumbnails = app_page.locator(THUMBNAILS)
    expect(thumbnails).to_have_count(len(known))
    expect(thumbnails.first).to_have_attribute("aria-label", f"Thumbnail 1 of {len(known)}")
    captions = app_page.locator(f"{THUMBNAILS} img").evaluate_all("images => images.map(image => image.alt)")
    assert captions == [name.replace("_", " ") for name in known]

    first = app_page.locator(f"{THUMBNAILS} img").first
    expect(first).to_be_visible()
    first.scroll_into_view_if_needed()
    app_page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=first.element_handle())

"""The app's session logic on the bundled default: runs, downloads, enrolment, errors, cancellation, clean-up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlfd_core import studio
from dlfd_core.errors import CancelledError, DataError, TooFewFacesError
from dlfd_core.evaluate.evaluate import collect_parts, split_parts
from dlfd_core.models import load_model
from dlfd_core.unlearn import create_method

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(orl_aligned):
    return studio.load_workspace("orl", device="cpu")


@pytest.fixture()
def session(workspace, tmp_path):
    s = studio.Session.start(workspace, tmp_path / "sessions")
    yield s
    s.close()


def _orl_photos(orl_dataset, identity):
    return [str(orl_dataset.root / record.key) for record in orl_dataset.records_of(identity)]


def test_workspace_describes_the_bundled_default(workspace):
    assert workspace.split.num_classes == 30
    assert "30 people" in workspace.description and "CPU" in workspace.description
    gallery = workspace.gallery()
    assert [name for _, name in gallery] == list(workspace.split.known)
    assert gallery[0][0].shape == (150, 150, 3)


def test_cached_parts_match_a_fresh_evaluation(workspace):
    from dlfd_core.data import with_forget_identities

    split = with_forget_identities(workspace.split, ["s7"])
    cached = workspace.outputs.parts(workspace.aligned, split)
    fresh = collect_parts(workspace.model, split_parts(workspace.aligned, split))
    assert cached.keys() == fresh.keys()
    for name in fresh:
        assert cached[name].identities == fresh[name].identities
        np.testing.assert_array_equal(cached[name].labels, fresh[name].labels)
        np.testing.assert_allclose(cached[name].logits, fresh[name].logits, rtol=1e-4, atol=1e-4)


def test_a_run_writes_its_report_and_model(session):
    record = studio.run_forget(session, ["s7"], create_method("class_reset"), seed=3, with_gold=False)
    assert session.runs == [record]
    assert record.outcome.reports["after"].metrics["forget_train_acc"] == 0.0
    assert "s7: not judged" in record.verdict and record.judgement is None
    assert {p.role for p in record.predictions} >= {"forgotten", "kept"}
    data = json.loads(record.files["report_json"].read_text())
    assert data["method"] == "class_reset" and data["seed"] == 3 and data["forgotten"] == ["s7"]
    assert data["environment"]["torch"] and "after" in data and "before" in data
    assert "class_reset" in record.files["report_md"].read_text()
    reloaded = load_model(record.files["model"])
    for a, b in zip(reloaded.state_dict().values(), record.outcome.result.model.state_dict().values(), strict=True):
        assert torch_equal(a, b)
    assert reloaded.metadata["forgotten"] == ["s7"]
    row = session.runs_table()[0]
    assert row["run"] == "#1 class_reset" and row["forget_train_acc"] == 0.0
    assert "data-metric='attack_auc'" in studio.cards_html(record)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a.cpu(), b.cpu()))


def test_bad_requests_are_refused_and_change_nothing(session, workspace):
    with pytest.raises(DataError, match="at least one person"):
        studio.run_forget(session, [], create_method("class_reset"), with_gold=False)
    with pytest.raises(DataError, match="leave at least one"):
        studio.run_forget(session, list(workspace.split.known), create_method("class_reset"), with_gold=False)
    with pytest.raises(CancelledError):
        studio.run_forget(session, ["s7"], create_method("finetune"), with_gold=False, should_stop=lambda: True)
    assert session.runs == []
    assert session.model is workspace.model


def test_close_deletes_the_session_folder(workspace, tmp_path):
    s = studio.Session.start(workspace, tmp_path)
    studio.run_forget(s, ["s9"], create_method("class_reset"), with_gold=False)
    assert any(s.folder.rglob("*.safetensors"))
    s.close()
    assert not s.folder.exists()
    other = studio.Session.start(workspace, tmp_path)
    assert other.folder != s.folder and other.runs == []
    other.close()


def test_enrol_then_forget_an_uploaded_face_set(session, workspace, orl_dataset, tmp_path):
    """An unseen ORL person's photos stand in for an upload; a blank image is refused with its reason."""
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(blank)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    photos = [*_orl_photos(orl_dataset, "s35"), str(blank), str(not_an_image)]
    enrolment = studio.enrol(session, "visitor", photos, exclude_unseen=["s35"])
    assert [name for name, _ in enrolment.failures] == ["blank.png", "notes.png"]
    assert "No face found" in enrolment.failures[0][1]
    assert len(enrolment.crops) == 10 and enrolment.train + enrolment.holdout + enrolment.test == 10
    assert session.split.known[-1] == "visitor" and "s35" not in session.split.unseen
    assert session.model.num_classes == 31 and session.model is not workspace.model
    assert enrolment.recognised > 0.0  # the new class is predicted for some held-out photo of the person
    assert len(enrolment.predictions) == enrolment.test
    shared = len(workspace.gold_cache)
    record = studio.run_forget(session, ["visitor"], create_method("class_reset"), with_gold=True)
    # this gold model was trained with the upload among its data: it stays in the session
    assert len(session.gold_cache) == 1 and len(workspace.gold_cache) == shared
    assert record.outcome.reports["before"].metrics["forget_train_acc"] > 0.0
    assert record.outcome.reports["after"].metrics["forget_train_acc"] == 0.0
    # the shipped reference statistics never saw the enrolled person: the verdict's attack is the reference-free one
    assert session.references is None and record.judgement.comparisons[1].name == "membership attack AUC"
    # the shared workspace is untouched by this session's enrolment
    assert workspace.split.num_classes == 30 and "visitor" not in workspace.split.known


def test_enrol_refuses_bad_input_and_keeps_the_session(session, workspace, orl_dataset, tmp_path):
    with pytest.raises(DataError, match="name"):
        studio.enrol(session, "../etc", _orl_photos(orl_dataset, "s35"))
    with pytest.raises(DataError, match="already a person"):
        studio.enrol(session, "s7", _orl_photos(orl_dataset, "s35"))
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(blank)
    with pytest.raises(
        TooFewFacesError, match="Only 2 usable, different faces among 4 photos.*1 was a near-identical copy.*blank.png"
    ):
        studio.enrol(session, "few", [*_orl_photos(orl_dataset, "s35")[:3], str(blank)])
    copies = []
    for i in range(10):  # the same photo uploaded ten times, under ten names
        copies.append(tmp_path / f"copy_{i}.pgm")
        copies[-1].write_bytes(Path(_orl_photos(orl_dataset, "s35")[0]).read_bytes())
    with pytest.raises(TooFewFacesError, match="Only 1 usable, different face among 10 photos.*9 were repeats"):
        studio.enrol(session, "copies", [str(p) for p in copies])
    assert session.model is workspace.model and session.enrolment is None and session.job is None


@pytest.mark.parametrize("name", ["Zoë", "José María", "O'Brien", "李雷", "anne-marie_2"])
def test_names_in_any_script_are_accepted(workspace, name):
    assert studio.check_name(f"  {name} ", workspace.split) == name


@pytest.mark.parametrize("name", ["", " ", "../etc", "_x", "a" * 41, "tab\there", "emoji 🙂", "<b>x</b>", None, 3])
def test_names_that_are_not_names_are_refused(workspace, name):
    with pytest.raises(DataError, match="Give the person a name"):
        studio.check_name(name, workspace.split)


def test_gold_models_of_bundled_people_are_shared_between_sessions(workspace, tmp_path):
    first, second = (studio.Session.start(workspace, tmp_path) for _ in range(2))
    try:
        a = studio.run_forget(first, ["s10"], create_method("class_reset"), seed=1, with_gold=True)
        b = studio.run_forget(second, ["s10"], create_method("class_reset"), seed=1, with_gold=True)
        assert "gold_train_seconds" in a.outcome.timings and "gold_train_seconds" not in b.outcome.timings
        # the bundle ships reference statistics: a bundled person is judged by offline LiRA, named so on the card
        assert workspace.references is not None and workspace.references.covers(workspace.split.train["s10"])
        assert a.judgement.comparisons[1].name == "LiRA attack AUC"
        assert "LiRA attack AUC" in studio.cards_html(a)
        assert a.outcome.reports["gold"].metrics == b.outcome.reports["gold"].metrics
        c = studio.run_forget(second, ["s10"], create_method("class_reset"), seed=2, with_gold=True)
        assert "gold_train_seconds" in c.outcome.timings  # another seed is another gold model
    finally:
        first.close()
        second.close()


def test_models_sharing_the_frozen_prefix_are_evaluated_from_it(workspace):
    """A fine-tuned model (last stage only) is evaluated from the cached prefix outputs; one whose earlier layers
    changed is not (it gets a full forward pass), and both agree with a plain evaluation."""
    import copy

    import torch

    from dlfd_core.data import with_forget_identities

    split = with_forget_identities(workspace.split, ["s7"])
    tuned = copy.deepcopy(workspace.model)
    changed = copy.deepcopy(workspace.model)
    with torch.no_grad():
        tuned.backbone.fc.weight.mul_(1.5)
        changed.backbone.conv32_down.conv.weight.mul_(1.5)
    assert workspace.outputs.prefix.matches(tuned) and not workspace.outputs.prefix.matches(changed)
    for model in (tuned, changed):
        fast = workspace.outputs.collect(model, workspace.aligned, split, device="cpu")
        full = collect_parts(model, split_parts(workspace.aligned, split))
        assert fast.keys() == full.keys()
        for name in full:
            assert fast[name].identities == full[name].identities
            np.testing.assert_array_equal(fast[name].labels, full[name].labels)
            np.testing.assert_allclose(fast[name].features, full[name].features, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(fast[name].logits, full[name].logits, rtol=1e-4, atol=1e-3)


def test_gold_training_takes_its_head_initialisation_from_the_cached_prefix(workspace):
    """The gold model's untrained embeddings come from the cached frozen-prefix outputs when the prefix matches (and
    agree with a forward pass); a model whose prefix changed gets ``None``, so training falls back to the pass."""
    import copy

    import torch

    from dlfd_core.data import crops_to_tensor, with_forget_identities
    from dlfd_core.data.splits import aligned_for
    from dlfd_core.models import create_model
    from dlfd_core.train import imprint_head

    split = with_forget_identities(workspace.split, ["s7"])
    keys = split.retain_train_keys
    fresh = create_model("dlib_resnet", split.num_classes).eval()
    cached = workspace.outputs.embeddings(fresh, keys)
    crops, labels = aligned_for(workspace.aligned, split, keys)
    inputs = crops_to_tensor(crops)
    with torch.no_grad():
        computed = fresh.features(inputs)
    torch.testing.assert_close(cached, computed)
    heads = []
    for features in (cached, None):
        model = copy.deepcopy(fresh)
        imprint_head(model, inputs, torch.as_tensor(labels), logit_scale=10.0, features=features)
        heads.append(model.head.state_dict())
    for name in heads[0]:
        torch.testing.assert_close(heads[0][name], heads[1][name])
    changed = copy.deepcopy(fresh)
    with torch.no_grad():
        changed.backbone.conv32_down.conv.weight.mul_(1.5)
    assert workspace.outputs.embeddings(changed, keys) is None


def _in_another_process(job):
    """What ZeroGPU's ``spaces.GPU`` does with a call: pickle it into a worker process, pickle the result back."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(studio.execute_job, (job,))


def test_a_run_executed_in_another_process_matches_one_run_here(workspace, tmp_path):
    """A job pickled into another process (as on a ZeroGPU Space) trains the same gold model and gives the same
    reports as the same job run here; the session keeps the result as usual."""
    there = studio.Session.start(workspace, tmp_path)
    here = studio.Session.start(workspace, tmp_path)
    try:
        method = create_method("finetune", epochs=1)
        remote = studio.run_forget(there, ["s13"], method, seed=4, with_gold=True, runner=_in_another_process)
        assert "gold_train_seconds" in remote.outcome.timings
        workspace.gold_cache.clear()
        local = studio.run_forget(here, ["s13"], method, seed=4, with_gold=True)
        assert "gold_train_seconds" in local.outcome.timings
        for name in ("before", "after", "gold"):
            assert remote.outcome.reports[name].metrics == pytest.approx(local.outcome.reports[name].metrics)
        assert there.runs == [remote] and remote.files["model"].exists()
    finally:
        there.close()
        here.close()


def test_cancel_pressed_while_a_run_executes_elsewhere_keeps_nothing(session):
    """With a runner (ZeroGPU) the run cannot be stopped midway; a Cancel pressed meanwhile discards its result."""

    def runner(job):
        outcome = studio.execute_job(job)
        session.cancel.set()  # pressed while the job ran
        return outcome

    with pytest.raises(CancelledError):
        studio.run_forget(
            session,
            ["s9"],
            create_method("class_reset"),
            with_gold=False,
            runner=runner,
            should_stop=session.cancel.is_set,
        )
    assert session.runs == [] and not any(session.folder.rglob("*.safetensors"))


def test_a_closed_session_refuses_work_and_writes_nothing(workspace, tmp_path):
    s = studio.Session.start(workspace, tmp_path)
    s.close()
    assert s.cancel.is_set() and s.uses_bundled_model and not s.folder.exists()
    with pytest.raises(DataError, match="session has ended"):
        studio.run_forget(s, ["s7"], create_method("class_reset"), with_gold=False)
    with pytest.raises(DataError, match="session has ended"):
        studio.enrol(s, "late", ["a.png"] * 5)
    assert not s.folder.exists()

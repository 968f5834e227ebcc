"""What a region does with a deploy request, given its release record: apply, resume,
ignore a duplicate, refuse an older push, or reject an impossible rollback."""

from __future__ import annotations

import pytest

from shared.releases import Action, ReleaseRecord, decide, resolve_previous
from tests.core.builders import (
    HASH,
    OTHER_REPO,
    SHOP_REPO,
    at,
    deploy_request,
    record,
    ref,
    release,
)

OLD, CURRENT, NEW = ref("old"), ref("current"), ref("new")


def same_hash(_image: str) -> str:
    return HASH


def run(request, rec, hash_of=same_hash):
    return decide(request, rec, SHOP_REPO, hash_of)


def history() -> ReleaseRecord:
    """current (succeeded, t=0) ← old (succeeded, t=-60)."""
    return record(
        release("rel-current", CURRENT, issued_at=at(0)),
        release("rel-old-01", OLD, issued_at=at(-60)),
    )


# --- deploys ----------------------------------------------------------------------------------


def test_a_new_digest_is_applied():
    decision = run(deploy_request(NEW, issued_at=at(5)), history())
    assert decision.action is Action.APPLY
    assert decision.image == NEW


def test_the_first_release_in_a_region_is_applied():
    decision = run(deploy_request(NEW), ReleaseRecord())
    assert (decision.action, decision.image) == (Action.APPLY, NEW)


@pytest.mark.parametrize("status", ["succeeded", "progressing", "applying"])
def test_the_image_already_released_is_a_duplicate_with_no_writes(status):
    rec = record(release("rel-current", CURRENT, status=status, issued_at=at(0)))
    decision = run(deploy_request(CURRENT, release_id="rel-other-tag", issued_at=at(1)), rec)
    assert decision.action is Action.DUPLICATE
    assert decision.reason == "already_released"
    assert decision.release.release_id == "rel-current"


def test_a_changed_config_with_the_same_image_is_a_new_release():
    decision = run(deploy_request(CURRENT, issued_at=at(1)), history(), hash_of=lambda _: "sha256:" + "1" * 64)
    assert decision.action is Action.APPLY
    assert decision.image == CURRENT


def test_a_failed_release_of_the_same_image_is_applied_again():
    rec = record(release("rel-current", CURRENT, status="failed", issued_at=at(0)))
    assert run(deploy_request(CURRENT, issued_at=at(1)), rec).action is Action.APPLY


def test_the_same_image_after_a_different_current_release_is_applied():
    # Going back to an image that ran before (but is not current) is a real deploy.
    assert run(deploy_request(OLD, issued_at=at(1)), history()).action is Action.APPLY


def test_an_older_push_never_replaces_a_newer_release():
    decision = run(deploy_request(NEW, issued_at=at(-1)), history())
    assert decision.action is Action.SUPERSEDED
    assert decision.reason == "newer_release_recorded"
    assert decision.release.release_id == "rel-current"


def test_a_push_issued_at_the_same_instant_as_the_current_release_is_not_superseded():
    assert run(deploy_request(NEW, issued_at=at(0)), history()).action is Action.APPLY


def test_a_redelivered_request_resumes_its_own_release():
    rec = record(release("rel-new-0001", NEW, status="progressing", issued_at=at(5)), *history().history)
    decision = run(deploy_request(NEW, release_id="rel-new-0001", issued_at=at(5)), rec)
    assert decision.action is Action.RESUME
    assert decision.reason == "redelivered"
    assert decision.release.release_id == "rel-new-0001"


def test_a_redelivered_request_resumes_even_after_a_newer_release():
    # Its own release is in the record: it reports that, rather than being "superseded".
    rec = record(
        release("rel-newest", ref("newest"), issued_at=at(9)),
        release("rel-new-0001", NEW, status="superseded", issued_at=at(5)),
    )
    decision = run(deploy_request(NEW, release_id="rel-new-0001", issued_at=at(5)), rec)
    assert (decision.action, decision.release.release_id) == (Action.RESUME, "rel-new-0001")


def test_a_redelivered_request_whose_automatic_rollback_is_running_resumes_the_rollback():
    failed = release("rel-new-0001", NEW, status="failed", issued_at=at(5))
    rollback = release(
        "rel-new-0001-rb", CURRENT, status="progressing", issued_at=at(5), kind="rollback", rollback_of="rel-new-0001"
    )
    rec = record(rollback, failed, *history().history)
    decision = run(deploy_request(NEW, release_id="rel-new-0001", issued_at=at(5)), rec)
    assert decision.action is Action.RESUME
    assert decision.reason == "rollback_in_progress"
    assert decision.release.release_id == "rel-new-0001-rb"
    assert decision.image == CURRENT


# --- the same digest pushed under three tags -------------------------------------------------


def test_one_image_pushed_under_three_tags_is_released_once():
    first = deploy_request(NEW, release_id="rel-tag-v1", issued_at=at(1))
    assert run(first, history()).action is Action.APPLY
    after_first = history().with_release(release("rel-tag-v1", NEW, status="progressing", issued_at=at(1)), limit=10)
    for n, tag in enumerate(["rel-tag-v1-0", "rel-tag-latest"], start=2):
        again = deploy_request(NEW, release_id=tag, issued_at=at(n))
        assert run(again, after_first).action is Action.DUPLICATE


def test_an_earlier_tag_of_the_same_image_delivered_late_is_a_duplicate_not_an_older_release():
    after = history().with_release(release("rel-tag-v2", NEW, issued_at=at(2)), limit=10)
    late = run(deploy_request(NEW, release_id="rel-tag-v1", issued_at=at(1)), after)
    assert (late.action, late.reason) == (Action.DUPLICATE, "already_released")


def test_an_older_push_of_a_failed_image_is_still_superseded():
    rec = record(release("rel-current", CURRENT, status="failed", issued_at=at(0)))
    assert run(deploy_request(CURRENT, issued_at=at(-1)), rec).action is Action.SUPERSEDED


# --- rollbacks -----------------------------------------------------------------------------------


def rollback(target=None, *, issued_at=None, release_id="previous-abc123"):
    # Issued after every release of these histories, as a rollback message is.
    return deploy_request(target, kind="rollback", release_id=release_id, issued_at=issued_at or at(30))


def test_rollback_to_previous_picks_the_newest_succeeded_release_with_another_image():
    rec = record(
        release("rel-current", CURRENT, issued_at=at(0)),
        release("rel-current-again", CURRENT, issued_at=at(-10)),
        release("rel-broken", ref("broken"), status="failed", issued_at=at(-20)),
        release("rel-old-01", OLD, issued_at=at(-60)),
        release("rel-older", ref("older"), issued_at=at(-90)),
    )
    decision = run(rollback(), rec)
    assert (decision.action, decision.image) == (Action.APPLY, OLD)


def test_rollback_to_previous_from_a_failed_release_returns_to_the_last_good_one():
    rec = record(release("rel-new-0001", NEW, status="failed", issued_at=at(5)), *history().history)
    assert run(rollback(), rec).image == CURRENT


def test_a_rollback_issued_before_the_current_release_and_delivered_late_is_superseded():
    # Ordering holds for every kind: a stale rollback must not undo a newer push.
    decision = run(rollback(issued_at=at(-1000)), history())
    assert (decision.action, decision.reason) == (Action.SUPERSEDED, "newer_release_recorded")


@pytest.mark.parametrize(
    "rec",
    [
        ReleaseRecord(),
        record(release("rel-current", CURRENT)),
        record(release("rel-current", CURRENT), release("rel-old-01", OLD, status="failed")),
    ],
    ids=["empty", "only-one", "only-failed-before"],
)
def test_rollback_with_nothing_to_go_back_to_is_rejected(rec):
    decision = run(rollback(), rec)
    assert (decision.action, decision.reason) == (Action.REJECT, "no_previous_release")


def test_rollback_to_a_named_image_from_the_apps_repository_is_applied():
    target = ref("never-ran-here")
    assert run(rollback(target), history()).action is Action.APPLY


def test_rollback_to_an_image_from_history_is_rejected_when_it_is_from_another_repository():
    # The history may hold an image no request could name today (a repository changed in
    # the config, or one applied before requests were checked): it is not run again.
    foreign = ref("hotfix", OTHER_REPO)
    rec = record(release("rel-current", CURRENT, issued_at=at(0)), release("rel-foreign", foreign, issued_at=at(-5)))
    decision = run(rollback(foreign), rec)
    assert (decision.action, decision.reason, decision.image) == (Action.REJECT, "image_not_allowed", foreign)


def test_rollback_to_an_unknown_image_from_another_repository_is_rejected():
    decision = run(rollback(ref("evil", OTHER_REPO)), history())
    assert (decision.action, decision.reason) == (Action.REJECT, "image_not_allowed")


def test_rollback_to_the_image_already_running_is_a_duplicate():
    assert run(rollback(CURRENT), history()).action is Action.DUPLICATE


def test_a_redelivered_rollback_resumes():
    rec = history().with_release(
        release("previous-abc123", OLD, status="progressing", kind="rollback", issued_at=at(30)), limit=10
    )
    decision = run(rollback(), rec)
    assert (decision.action, decision.reason, decision.image) == (Action.RESUME, "redelivered", OLD)


# --- the record ------------------------------------------------------------------------------------


def test_a_new_release_becomes_current_and_history_is_newest_first():
    rec = history().with_release(release("rel-new-0001", NEW, issued_at=at(5)), limit=10)
    assert rec.current.release_id == "rel-new-0001"
    assert [r.release_id for r in rec.history] == ["rel-new-0001", "rel-current", "rel-old-01"]


def test_history_keeps_only_the_configured_number_of_releases():
    rec = ReleaseRecord()
    for n in range(6):
        rec = rec.with_release(release(f"rel-{n:08d}", ref(str(n)), issued_at=at(n)), limit=4)
    assert [r.release_id for r in rec.history] == ["rel-00000005", "rel-00000004", "rel-00000003", "rel-00000002"]


def test_writing_a_release_again_replaces_its_entry_and_moves_it_first():
    rec = history().with_release(release("rel-old-01", OLD, status="failed", issued_at=at(-60)), limit=10)
    assert [r.release_id for r in rec.history] == ["rel-old-01", "rel-current"]
    assert rec.current.status == "failed"


def test_updating_a_release_keeps_its_place():
    rec = history().updated(release("rel-old-01", OLD, status="superseded", issued_at=at(-60)))
    assert [r.release_id for r in rec.history] == ["rel-current", "rel-old-01"]
    assert rec.find("rel-old-01").status == "superseded"


def test_the_record_survives_a_json_round_trip():
    rec = record(
        release("rel-new-0001-rb", CURRENT, kind="rollback", rollback_of="rel-new-0001"),
        release("rel-new-0001", NEW, status="failed"),
    )
    assert ReleaseRecord.model_validate_json(rec.model_dump_json()) == rec


def test_an_empty_record_has_no_current_release():
    assert ReleaseRecord().current is None
    assert ReleaseRecord().find("anything") is None
    assert not ReleaseRecord().knows_image(CURRENT)


# --- found while writing these tests ------------------------------------------------------------


def test_rollback_to_previous_is_resolved_once_for_every_region():
    """With waves halted, wave 2 never got the bad release; resolving "previous" per region
    would send it one release further back. Resolved across the fleet, all go to `good`."""
    bad, good, older = ref("bad"), ref("good"), ref("older")
    wave1 = record(
        release("rel-bad-0001", bad, issued_at=at(10)),
        release("rel-good-001", good, issued_at=at(0)),
        release("rel-older-01", older, issued_at=at(-60)),
    )
    wave2 = record(release("rel-good-001", good, issued_at=at(0)), release("rel-older-01", older, issued_at=at(-60)))
    assert resolve_previous([wave1, wave2], SHOP_REPO) == good
    assert resolve_previous([wave2, wave1], SHOP_REPO) == good
    assert resolve_previous([record()], SHOP_REPO) is None
    # In wave 2 the resolved image is what already runs: nothing is applied there.
    assert run(rollback(good), wave2).action is Action.DUPLICATE


# --- a newer release claimed on top of a redelivered one (found in a burst of pushes) --------


@pytest.mark.parametrize("status", ["applying", "progressing"])
def test_a_redelivered_request_never_resumes_under_a_newer_claim(status):
    """The older call died after its claim (or lost the race); a newer push claimed on top.
    Its redelivery must not re-apply the older image: it ends as superseded."""
    rec = record(
        release("rel-newest", ref("newest"), status="applying", issued_at=at(9)),
        release("rel-new-0001", NEW, status=status, issued_at=at(5)),
    )
    decision = run(deploy_request(NEW, release_id="rel-new-0001", issued_at=at(5)), rec)
    assert (decision.action, decision.reason) == (Action.SUPERSEDED, "newer_release_claimed")
    assert decision.own.release_id == "rel-new-0001"
    assert decision.release.release_id == "rel-newest"


def test_an_unfinished_automatic_rollback_under_a_newer_claim_is_superseded_not_resumed():
    failed = release("rel-new-0001", NEW, status="failed", issued_at=at(5))
    rollback = release(
        "rel-new-0001-rb", CURRENT, status="progressing", issued_at=at(5), kind="rollback", rollback_of="rel-new-0001"
    )
    rec = record(release("rel-newest", ref("newest"), status="progressing", issued_at=at(9)), rollback, failed)
    decision = run(deploy_request(NEW, release_id="rel-new-0001", issued_at=at(5)), rec)
    assert (decision.action, decision.own.release_id) == (Action.SUPERSEDED, "rel-new-0001-rb")


def test_a_finished_release_under_a_newer_claim_reports_how_it_ended():
    rec = record(
        release("rel-newest", ref("newest"), status="progressing", issued_at=at(9)),
        release("rel-new-0001", NEW, status="failed", issued_at=at(5)),
    )
    decision = run(deploy_request(NEW, release_id="rel-new-0001", issued_at=at(5)), rec)
    assert (decision.action, decision.reason, decision.release.status) == (Action.RESUME, "already_finished", "failed")


def test_an_automatic_rollback_orders_after_the_release_it_replaces():
    failed = release("rel-new-0001", NEW, status="failed", issued_at=at(5))
    rollback = release("rel-new-0001-rb", CURRENT, issued_at=at(5), kind="rollback", rollback_of="rel-new-0001")
    assert rollback.order > failed.order


def test_the_stamp_on_a_deployment_gives_its_release_order():
    from shared.releases import release_stamp, stamp_order

    newest = release("rel-newest", ref("newest"), issued_at=at(9))
    assert stamp_order({"metadata": {"annotations": release_stamp(newest)}}) == newest.order
    assert stamp_order({"metadata": {}}) is None
    assert (
        stamp_order({"metadata": {"annotations": {"geodeploy.dev/release": "x", "geodeploy.dev/issued-at": "?"}}})
        is None
    )
    assert stamp_order(None) is None


def test_rollback_to_previous_skips_good_releases_of_another_repository():
    # The release before the current one ran an image of a repository the config no longer
    # names: "previous" is the newest good release of the app's own repository.
    foreign, good = ref("old-config", OTHER_REPO), ref("good")
    rec = record(
        release("rel-current", CURRENT, issued_at=at(0)),
        release("rel-foreign", foreign, issued_at=at(-5)),
        release("rel-good-001", good, issued_at=at(-10)),
    )
    decision = run(rollback(), rec)
    assert (decision.action, decision.image) == (Action.APPLY, good)
    assert resolve_previous([rec], SHOP_REPO) == good
    assert resolve_previous([record(rec.history[0], rec.history[1])], SHOP_REPO) is None

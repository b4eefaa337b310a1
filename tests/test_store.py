"""The store on real databases: a temporary SQLite file, and PostgreSQL when one is reachable.

Every behaviour test runs on both backends through the `db_url` fixture. The PostgreSQL variant
creates one uniquely named database for the test session (dropped at the end) and gives each test
an empty schema. Expected lifecycles and table names are written out here from DESIGN.md §5 and
the store's brief, not imported from the code under test, so that a wrong table in the code fails.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError

from studio_nova.errors import ReviewError, StateTransitionError, StoreError
from studio_nova.store import KeyframeFile, ShotRecord, Store
from studio_nova.store.engine import create_store_engine
from studio_nova.store.migrations import migration_config
from studio_nova.store.tables import Base

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get(
    "STUDIO_NOVA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TABLES = {"timelines", "shots", "edit_requests", "keyframes", "reviews", "renders", "chunks"}
HEAD = "0003"

# The shot lifecycle as the brief states it (rendered -> rendering only via start_render).
LIFECYCLE = {
    "ingested": {"keyframes_ready", "failed"},
    "keyframes_ready": {"in_review", "failed"},
    "in_review": {"approved", "rejected", "failed"},
    "approved": {"rendering", "failed"},
    "rejected": {"keyframes_ready", "failed"},
    "rendering": {"rendering", "rendered", "failed"},
    "rendered": {"conformed", "failed"},
    "conformed": {"conformed", "failed"},
    "failed": {"ingested", "keyframes_ready", "approved", "failed"},
}
# How a new shot reaches each state through allowed steps only.
ROUTE = {
    "ingested": [],
    "keyframes_ready": ["keyframes_ready"],
    "in_review": ["keyframes_ready", "in_review"],
    "approved": ["keyframes_ready", "in_review", "approved"],
    "rejected": ["keyframes_ready", "in_review", "rejected"],
    "rendering": ["keyframes_ready", "in_review", "approved", "rendering"],
    "rendered": ["keyframes_ready", "in_review", "approved", "rendering", "rendered"],
    "conformed": ["keyframes_ready", "in_review", "approved", "rendering", "rendered", "conformed"],
    "failed": ["failed"],
}


# ------------------------------------------------------------------------------------ fixtures


def _psycopg2(url: URL) -> URL:
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the store (and this file) use
    psycopg2. Test URLs stay bare so the store's own mapping is exercised."""
    return url.set(drivername="postgresql+psycopg2") if url.drivername == "postgresql" else url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in a folder that does not exist yet, or an empty
    PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'not' / 'yet' / 'studio-nova.db'}"
    url = request.getfixturevalue("postgres_database")
    engine = create_engine(_psycopg2(make_url(url)), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("DROP SCHEMA public CASCADE")
        connection.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    yield opened
    opened.close()


# ------------------------------------------------------------------------------------ helpers


def _timeline(store: Store, name: str = "cut") -> int:
    return store.upsert_timeline(f"/projects/show/{name}.otio", name)


def _shot(
    store: Store,
    timeline_id: int,
    key: str = "V1/clip_0",
    *,
    fingerprint: str = "fp-1",
    name: str | None = None,
    last_frame: int = 99,
    edit: dict | None = None,
) -> ShotRecord:
    return store.upsert_shot(
        timeline_id,
        key=key,
        name=name or key.split("/")[-1],
        media="/media/A001.mov",
        first_frame=0,
        last_frame=last_frame,
        rate=Fraction(24000, 1001),
        width=64,
        height=48,
        bit_depth=10,
        edit=edit if edit is not None else {"instruction": "make it red", "editor": "recolor"},
        fingerprint=fingerprint,
    )


def _walk(store: Store, shot_id: int, route: list[str]) -> None:
    for status in route:
        store.set_status(shot_id, status, error="walked here" if status == "failed" else None)


def _keyframes(store: Store, shot_id: int, frames: list[int], tag: str = "a") -> int:
    return store.add_keyframe_version(
        shot_id,
        editor="recolor",
        seed=7,
        instruction="make it red",
        info={"tag": tag},
        frames=[KeyframeFile(f, f"/kf/o{f}.png", f"/kf/{tag}{f}.png") for f in frames],
    )


def _approved(store: Store, timeline_id: int, key: str) -> ShotRecord:
    shot = _shot(store, timeline_id, key)
    _keyframes(store, shot.id, [0, 99])
    _walk(store, shot.id, ["keyframes_ready", "in_review"])
    store.add_review(shot.id, decision="approved", reviewer="ann")
    return store.shot(shot.id)


# ------------------------------------------------------------------------------------ schema


def test_open_creates_every_table_and_leaves_the_database_at_head(db_url: str) -> None:
    with Store.open(db_url) as store:
        assert TABLES <= set(inspect(store.engine).get_table_names())
        heads = set(ScriptDirectory.from_config(migration_config()).get_heads())
        assert heads == {HEAD}
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert set(context.get_current_heads()) == heads
            # The hand-written migration and the ORM models describe the same schema.
            assert compare_metadata(context, Base.metadata) == []


def test_alembic_command_line_upgrades_a_fresh_database_and_reports_head(db_url: str) -> None:
    def alembic(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", "db/alembic.ini", "-x", f"url={db_url}", *args],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    alembic("upgrade", "head")
    assert f"{HEAD} (head)" in alembic("current")
    engine = create_store_engine(db_url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_database_at_an_older_revision_is_upgraded_on_open(db_url: str) -> None:
    engine = create_store_engine(db_url)
    config = migration_config()
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            command.downgrade(config, "base")
        assert TABLES.isdisjoint(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        assert TABLES <= set(inspect(store.engine).get_table_names())
        timeline_id = _timeline(store)
        assert _shot(store, timeline_id).status == "ingested"


def test_a_store_made_before_render_identities_gets_distinct_slugs_and_linked_renders(db_url: str) -> None:
    engine = create_store_engine(db_url)
    config = migration_config()
    now = datetime.now(UTC)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.commit()
        with engine.begin() as connection:
            for tid, name in ((1, "reel1"), (2, "reel1")):  # two cuts of one name
                connection.execute(
                    text("INSERT INTO timelines (id, path, name, created_at, updated_at) VALUES (:i, :p, :n, :t, :t)"),
                    {"i": tid, "p": f"/cuts/{tid}/reel1.otio", "n": name, "t": now},
                )
            shots = [(1, 1, "V1/0", "x", "rendered"), (2, 1, "V1/1", "x", "in_review"),
                     (3, 1, "V1/2", "x_V1-0", "ingested"), (4, 2, "V1/0", "x", "conformed")]
            for sid, tid, key, name, status in shots:
                connection.execute(
                    text(
                        "INSERT INTO shots (id, timeline_id, key, name, media, first_frame, last_frame, "
                        "rate_num, rate_den, width, height, bit_depth, status, edit_version, fingerprint, "
                        "created_at, updated_at) VALUES (:i, :tl, :k, :n, '/m.mov', 0, 9, 25, 1, 64, 36, 8, "
                        ":s, 1, 'f', :t, :t)"
                    ),
                    {"i": sid, "tl": tid, "k": key, "n": name, "s": status, "t": now},
                )
                connection.execute(
                    text(
                        "INSERT INTO edit_requests (shot_id, version, fingerprint, media, first_frame, "
                        "last_frame, edit, created_at) VALUES (:i, 1, 'f', '/m.mov', 0, 9, '{}', :t)"
                    ),
                    {"i": sid, "t": now},
                )
            for rid, sid, version, status in ((1, 1, 1, "complete"), (2, 1, 2, "failed"), (3, 4, 1, "complete")):
                connection.execute(
                    text(
                        "INSERT INTO renders (id, shot_id, version, edit_version, codec, status, created_at) "
                        "VALUES (:i, :s, :v, 1, 'prores_422_hq', :st, :t)"
                    ),
                    {"i": rid, "s": sid, "v": version, "st": status, "t": now},
                )
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        slugs = [s.slug for s in store.shots()]
        assert slugs == ["x_V1-0", "x_V1-1", "x_V1-0-2", "x"]  # the old names where still free
        assert len({t.slug for t in store.timelines()}) == 2
        assert [store.current_render(s.id) and store.current_render(s.id).id for s in store.shots()] == [1, None, None, 3]


def test_a_database_from_a_newer_studio_nova_is_refused(db_url: str) -> None:
    with Store.open(db_url) as store, store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match=r"revision \['9999'\].*upgrade studio-nova"):
        Store.open(db_url)


def test_two_workers_opening_a_fresh_store_at_once_both_migrate_it_safely(db_url: str) -> None:
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def open_and_record(slot: int) -> None:
        try:
            barrier.wait(timeout=30)
            with Store.open(db_url) as own:
                outcomes.append(own.upsert_timeline(f"/cuts/{slot}.otio", f"cut {slot}"))
        except Exception as exc:  # reported by the main thread below
            outcomes.append(exc)

    threads = [threading.Thread(target=open_and_record, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes, key=repr) == [1, 2], outcomes


def test_sqlite_store_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "studio-nova.db"
    with Store.open(f"sqlite:///{path}") as store:
        assert path.is_file()
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            with pytest.raises(IntegrityError, match="FOREIGN KEY"):
                with store.engine.begin() as session:
                    session.execute(
                        text(
                            "INSERT INTO edit_requests (shot_id, version, fingerprint, media, "
                            "first_frame, last_frame, edit, created_at) "
                            "VALUES (999, 1, 'f', 'm', 0, 1, '{}', '2026-01-01 00:00:00')"
                        )
                    )
    # journal_mode=WAL is a property of the file: a plain sqlite3 connection sees it too.
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_urls_raise_store_error_naming_the_url_without_its_password(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = {
        "this is not a url": ["this is not a url", "not a database URL"],
        "nosuchdb://ann:hunter2@host/db": ["nosuchdb://ann:***@host/db"],
        "postgresql://ann:hunter2@127.0.0.1:1/studio": ["127.0.0.1:1/studio", "***", "refused"],
        f"sqlite:///{blocker}/sub/studio-nova.db": [str(blocker), "cannot create the folder"],
    }
    for url, expected in cases.items():
        with pytest.raises(StoreError) as caught:
            Store.open(url)
        message = str(caught.value)
        assert "hunter2" not in message
        for part in expected:
            assert part.lower() in message.lower(), (url, message)


@pytest.mark.postgres
def test_a_missing_postgres_database_raises_store_error(postgres_database: str) -> None:
    url = make_url(postgres_database).set(database="studio_nova_no_such_db")
    with pytest.raises(StoreError, match="studio_nova_no_such_db.*does not exist"):
        Store.open(url.render_as_string(hide_password=False))


# ------------------------------------------------------------------------------------ shots


def test_upsert_with_the_same_fingerprint_keeps_the_shot_and_its_state(store: Store) -> None:
    timeline_id = _timeline(store)
    assert store.upsert_timeline("/projects/show/cut.otio", "cut v2") == timeline_id
    first = _shot(store, timeline_id)
    assert (first.status, first.edit_version, first.frame_count) == ("ingested", 1, 100)
    assert first.rate == Fraction(24000, 1001)
    _walk(store, first.id, ROUTE["approved"])

    again = _shot(store, timeline_id, name="renamed in the cut")
    assert again.id == first.id
    assert (again.status, again.edit_version, again.name) == ("approved", 1, "renamed in the cut")
    assert len(store.edit_requests(first.id)) == 1
    assert [t.name for t in store.timelines()] == ["cut v2"]


def test_a_changed_fingerprint_opens_a_new_edit_version_back_at_ingested(store: Store) -> None:
    timeline_id = _timeline(store)
    shot = _shot(store, timeline_id)
    _keyframes(store, shot.id, [0, 50, 99])
    _walk(store, shot.id, ROUTE["approved"])
    render = store.start_render(shot.id, "prores_hq")

    changed = _shot(
        store, timeline_id, fingerprint="fp-2", last_frame=119, edit={"instruction": "blue"}
    )
    assert changed.id == shot.id
    assert (changed.status, changed.edit_version, changed.last_frame) == ("ingested", 2, 119)
    assert changed.edit == {"instruction": "blue"}
    history = store.edit_requests(shot.id)
    assert [(r.version, r.fingerprint, r.last_frame) for r in history] == [
        (1, "fp-1", 99),
        (2, "fp-2", 119),
    ]
    assert history[0].edit == {"instruction": "make it red", "editor": "recolor"}
    # Work done for the old request stays; its unfinished render no longer stands.
    assert [k.source_frame for k in store.keyframes(shot.id)] == [0, 50, 99]
    old = store.render(render.id)
    assert old.status == "failed" and "edit version 2" in (old.error or "")
    # The same new request again is a rerun, not another version.
    assert _shot(store, timeline_id, fingerprint="fp-2", last_frame=119).edit_version == 2


def test_shots_are_listed_filtered_and_found_by_name_or_key(store: Store) -> None:
    cut_a, cut_b = _timeline(store, "a"), _timeline(store, "b")
    one = _shot(store, cut_a, "V1/sh010")
    two = _shot(store, cut_a, "V1/sh020")
    other = _shot(store, cut_b, "V1/sh010")
    _walk(store, two.id, ["keyframes_ready"])

    assert [s.id for s in store.shots()] == [one.id, two.id, other.id]
    assert [s.id for s in store.shots(timeline_id=cut_a)] == [one.id, two.id]
    assert [s.id for s in store.shots(status="keyframes_ready")] == [two.id]
    assert [s.id for s in store.find_shots("SH010")] == [one.id, other.id]
    assert [s.id for s in store.find_shots("v1/sh010", timeline_id=cut_b)] == [other.id]
    assert store.find_shots("sh999") == []
    with pytest.raises(StoreError, match="no shot with id 9999"):
        store.shot(9999)


def test_timestamps_are_utc(store: Store) -> None:
    before = datetime.now(UTC)
    shot = _shot(store, _timeline(store))
    stored = store.shot(shot.id)
    assert stored.created_at.tzinfo == UTC
    assert before - timedelta(seconds=1) <= stored.created_at <= datetime.now(UTC)


# ------------------------------------------------------------------------------------ lifecycle


def test_every_allowed_transition_succeeds(store: Store) -> None:
    timeline_id = _timeline(store)
    for source, targets in LIFECYCLE.items():
        for target in sorted(targets):
            shot = _shot(store, timeline_id, f"{source}->{target}")
            _walk(store, shot.id, ROUTE[source])
            assert store.shot(shot.id).status == source
            moved = store.set_status(shot.id, target, error="boom" if target == "failed" else None)
            assert moved.status == target


def test_every_forbidden_transition_raises_naming_shot_from_and_to(store: Store) -> None:
    timeline_id = _timeline(store)
    checked = 0
    for source, allowed in LIFECYCLE.items():
        shot = _shot(store, timeline_id, f"from-{source}", name=f"sh_{source}")
        _walk(store, shot.id, ROUTE[source])
        for target in sorted(set(LIFECYCLE) - allowed):
            with pytest.raises(StateTransitionError) as caught:
                store.set_status(shot.id, target)
            error = caught.value
            assert (error.shot, error.details["from_status"], error.details["to_status"]) == (
                f"sh_{source}", source, target,
            )
            assert repr(source) in str(error) and repr(target) in str(error)
            checked += 1
        assert store.shot(shot.id).status == source
    assert checked == 81 - sum(len(t) for t in LIFECYCLE.values())


def test_failed_needs_a_reason_which_is_kept_through_a_retry(store: Store) -> None:
    shot = _shot(store, _timeline(store))
    with pytest.raises(ValueError, match="error is required"):
        store.set_status(shot.id, "failed")
    assert store.set_status(shot.id, "failed", error="decoder crashed").error == "decoder crashed"
    retried = store.set_status(shot.id, "ingested")
    assert (retried.status, retried.error) == ("ingested", "decoder crashed")
    with pytest.raises(ValueError, match="status must be one of"):
        store.set_status(shot.id, "done")


# ------------------------------------------------------------------------------------ keyframes


def test_keyframe_versions_are_numbered_and_kept(store: Store) -> None:
    shot = _shot(store, _timeline(store))
    assert store.keyframes(shot.id) == []
    first = store.add_keyframe_version(
        shot.id,
        editor="recolor",
        seed=2**40,
        instruction="make it red",
        info={"params": {"hue": 0.1, "tags": ["a", "b"]}},
        frames=[
            KeyframeFile(99, "/kf/o99.png", "/kf/e99.png", "/kf/m99.png"),
            KeyframeFile(0, Path("/kf/o0.png"), Path("/kf/e0.png")),
            KeyframeFile(50, "/kf/o50.png", "/kf/e50.png"),
        ],
    )
    second = _keyframes(store, shot.id, [0, 99], tag="b")
    assert (first, second) == (1, 2)

    latest = store.keyframes(shot.id)
    assert [(k.version, k.source_frame, k.edited_path) for k in latest] == [
        (2, 0, "/kf/b0.png"),
        (2, 99, "/kf/b99.png"),
    ]
    old = store.keyframes(shot.id, version=1)
    assert [k.source_frame for k in old] == [0, 50, 99]
    assert (old[0].original_path, old[0].mask_path, old[2].mask_path) == (
        "/kf/o0.png", None, "/kf/m99.png",
    )
    assert old[0].info == {"params": {"hue": 0.1, "tags": ["a", "b"]}}
    assert (old[0].seed, old[0].editor, old[0].edit_version) == (2**40, "recolor", 1)

    with pytest.raises(ValueError, match="source_frame 100 is outside"):
        _keyframes(store, shot.id, [0, 100])
    with pytest.raises(ValueError, match="listed twice"):
        _keyframes(store, shot.id, [5, 5])
    assert store.keyframes(shot.id)[0].version == 2


# ------------------------------------------------------------------------------------ reviews


def test_a_review_records_who_and_why_and_moves_the_shot(store: Store) -> None:
    shot = _shot(store, _timeline(store), name="sh010")
    _keyframes(store, shot.id, [0, 99])
    _walk(store, shot.id, ["keyframes_ready"])
    with pytest.raises(ReviewError, match="'keyframes_ready', not waiting for review"):
        store.add_review(shot.id, decision="approved", reviewer="ann")
    with pytest.raises(ReviewError, match="no shot with id 4242"):
        store.add_review(4242, decision="approved", reviewer="ann")

    store.set_status(shot.id, "in_review")
    rejected = store.add_review(
        shot.id, decision="rejected", reviewer="ann", notes="too saturated",
        new_instruction="make it dark red", new_seed=11,
    )
    assert (rejected.keyframe_version, rejected.decision) == (1, "rejected")
    assert rejected.reviewer == "ann"
    assert (rejected.notes, rejected.new_instruction, rejected.new_seed) == (
        "too saturated", "make it dark red", 11,
    )
    assert store.shot(shot.id).status == "rejected"

    _keyframes(store, shot.id, [0, 99], tag="b")
    _walk(store, shot.id, ["keyframes_ready", "in_review"])
    approved = store.add_review(shot.id, decision="approved", reviewer="bob", notes="good")
    assert (approved.keyframe_version, approved.reviewer, approved.notes) == (2, "bob", "good")
    assert store.shot(shot.id).status == "approved"
    assert [(r.decision, r.reviewer) for r in store.reviews(shot.id)] == [
        ("rejected", "ann"),
        ("approved", "bob"),
    ]
    with pytest.raises(ValueError, match="decision"):
        store.add_review(shot.id, decision="maybe", reviewer="bob")


# ------------------------------------------------------------------------------------ renders


def test_render_versions_resume_then_advance(store: Store) -> None:
    shot = _approved(store, _timeline(store), "V1/sh010")
    assert store.latest_render(shot.id) is None

    first = store.start_render(shot.id, "prores_hq")
    assert (first.version, first.label, first.status) == (1, "v001", "rendering")
    assert store.shot(shot.id).status == "rendering"
    assert store.start_render(shot.id, "prores_hq").id == first.id  # resume, not a new version

    chunks = store.plan_chunks(first.id, [(0, 80), (65, 99)])
    with pytest.raises(StoreError, match=r"chunks not done \(indices \[0, 1\]\)"):
        store.finish_render(first.id, path="/r/v001.mov", proxy_path=None, qc={})
    for chunk in chunks:
        assert store.claim_chunk(chunk.id, "gpu-1") is not None
        store.complete_chunk(chunk.id, f"/r/chunk{chunk.index}.mov")
    done = store.finish_render(
        first.id, path="/r/v001.mov", proxy_path="/r/v001_proxy.mp4", qc={"seam_psnr": 41.5}
    )
    assert (done.status, done.path, done.qc) == ("complete", "/r/v001.mov", {"seam_psnr": 41.5})
    assert done.finished_at is not None and done.finished_at.tzinfo == UTC
    assert store.shot(shot.id).status == "rendered"

    with pytest.raises(StateTransitionError, match="only through start_render"):
        store.set_status(shot.id, "rendering")
    second = store.start_render(shot.id, "prores_hq")
    assert (second.version, second.label) == (2, "v002")
    failed = store.fail_render(second.id, "out of GPU memory")
    assert (failed.status, failed.error) == ("failed", "out of GPU memory")
    assert store.shot(shot.id).status == "failed"
    assert store.latest_render(shot.id).version == 1
    assert store.latest_render(shot.id, complete_only=False).version == 2

    store.set_status(shot.id, "approved")  # retry
    assert store.start_render(shot.id, "prores_hq").version == 3
    assert [r.version for r in store.renders(shot.id)] == [1, 2, 3]
    with pytest.raises(StoreError, match="is 'complete'"):
        store.finish_render(first.id, path="/r/again.mov", proxy_path=None, qc={})


# ------------------------------------------------------------------------------------ chunks


def test_chunk_plan_is_idempotent_and_a_different_plan_is_refused(store: Store) -> None:
    shot = _approved(store, _timeline(store), "V1/sh010")
    render = store.start_render(shot.id, "prores_hq")
    plan = [(0, 40), (25, 72), (57, 99)]
    chunks = store.plan_chunks(render.id, plan)
    assert [(c.index, c.first_frame, c.last_frame, c.status, c.attempts) for c in chunks] == [
        (0, 0, 40, "pending", 0),
        (1, 25, 72, "pending", 0),
        (2, 57, 99, "pending", 0),
    ]
    store.claim_chunk(chunks[0].id, "gpu-1")
    again = store.plan_chunks(render.id, plan)
    assert [c.id for c in again] == [c.id for c in chunks]
    assert again[0].status == "running"  # progress is returned, not reset
    with pytest.raises(StoreError, match="different chunk plan"):
        store.plan_chunks(render.id, [(0, 50), (35, 99)])
    other = _approved(store, _timeline(store, "b"), "V1/sh020")
    with pytest.raises(ValueError, match="leave shot"):
        store.plan_chunks(store.start_render(other.id, "prores_hq").id, [(0, 80), (65, 120)])


def test_chunk_claims_count_attempts_and_respect_a_live_worker(store: Store) -> None:
    shot = _approved(store, _timeline(store), "V1/sh010")
    render = store.start_render(shot.id, "prores_hq")
    chunk = store.plan_chunks(render.id, [(0, 99)])[0]

    claimed = store.claim_chunk(chunk.id, "gpu-1")
    assert (claimed.status, claimed.attempts, claimed.worker) == ("running", 1, "gpu-1")
    assert store.claim_chunk(chunk.id, "gpu-2") is None  # held by a live worker
    stolen = store.claim_chunk(chunk.id, "gpu-2", stale_after=timedelta(0))  # gpu-1 went silent
    assert (stolen.attempts, stolen.worker) == (2, "gpu-2")
    failed = store.fail_chunk(chunk.id, "CUDA out of memory")
    assert (failed.status, failed.error) == ("failed", "CUDA out of memory")
    retried = store.claim_chunk(chunk.id, "gpu-1")
    assert (retried.status, retried.attempts) == ("running", 3)
    done = store.complete_chunk(chunk.id, "/r/chunk0.mov")
    assert (done.status, done.output, done.attempts) == ("done", "/r/chunk0.mov", 3)
    assert store.complete_chunk(chunk.id, "/r/chunk0.mov") == done  # a retried task is harmless
    assert store.claim_chunk(chunk.id, "gpu-2", stale_after=timedelta(0)) is None
    with pytest.raises(StoreError, match="only a running"):
        store.fail_chunk(chunk.id, "late failure")


def test_a_chunk_out_of_attempts_is_not_handed_out_again(db_url: str) -> None:
    with Store.open(db_url, max_attempts=2) as store:
        shot = _approved(store, _timeline(store), "V1/sh010")
        render = store.start_render(shot.id, "prores_hq")
        first, second = store.plan_chunks(render.id, [(0, 60), (45, 99)])
        for _ in range(2):
            assert store.claim_next_chunk(render.id, "gpu-1").id == first.id
            store.fail_chunk(first.id, "bad frame")
        assert store.claim_next_chunk(render.id, "gpu-1").id == second.id
        assert store.claim_next_chunk(render.id, "gpu-1") is None
        assert store.chunks(render.id)[0].attempts == 2


# ------------------------------------------------------------------------------------ farm


def _race(db_url: str, claim: Callable[[Store, str], object], workers: int = 2) -> list[list[int]]:
    """Run `claim(store, worker)` until it returns None in several threads, each with its own
    Store, all released at once; returns the ids each worker got."""
    barrier = threading.Barrier(workers)
    got: list[list[int]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            with Store.open(db_url) as own:
                barrier.wait(timeout=30)
                while (record := claim(own, f"worker-{slot}")) is not None:
                    got[slot].append(record.id)
        except Exception as exc:  # reported by the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return got


def test_two_workers_claiming_shots_at_once_never_get_the_same_shot(
    store: Store, db_url: str
) -> None:
    timeline_id = _timeline(store)
    ids = [_approved(store, timeline_id, f"V1/sh{i:03d}").id for i in range(10)]
    _shot(store, timeline_id, "V1/not_approved")

    got = _race(db_url, lambda own, worker: own.claim_next_shot(worker))
    claimed = got[0] + got[1]
    assert sorted(claimed) == ids  # all ten, none twice
    for slot, shot_ids in enumerate(got):
        assert all(store.shot(i).worker == f"worker-{slot}" for i in shot_ids)
    assert store.claim_next_shot("late-worker") is None
    # A claim lasts while the shot stays where it was claimed; a stale one can be taken over.
    assert store.claim_next_shot("late-worker", stale_after=timedelta(0)).id == ids[0]


def test_two_workers_claiming_chunks_at_once_never_render_one_twice(
    store: Store, db_url: str
) -> None:
    shot = _approved(store, _timeline(store), "V1/sh010")
    render = store.start_render(shot.id, "prores_hq")
    chunks = store.plan_chunks(render.id, [(i * 8, i * 8 + 7) for i in range(12)])

    got = _race(db_url, lambda own, worker: own.claim_next_chunk(render.id, worker))
    assert sorted(got[0] + got[1]) == [c.id for c in chunks]
    assert [c.attempts for c in store.chunks(render.id)] == [1] * 12

import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from fractions import Fraction

import pytest

import algebra.analysis
from algebra.analysis import analyze, group_key
from algebra.cache import (
    LEASE_PREFIX,
    GroupCache,
    StaleCacheWarning,
    clear_cache,
    decode_certificate,
    encode_certificate,
    render_stats,
)
from algebra.certificate import Certificate
from algebra.polynomial import Polynomial
from blocks.graph import build_graph
from blocks.model_file import load_model
from blocks.parametrize import parametrize
from blocks.split import split_into_blocks
from cli import main

PAIR = {
    "name": "pair",
    "input": [3],
    "layers": [
        {"type": "linear", "name": "fc1", "out": 2, "bias": True},
        {"type": "relu"},
        {"type": "linear", "name": "fc2", "out": 2},
        {"type": "square"},
        {"type": "linear", "name": "fc3", "out": 2},
    ],
}
RENAMED = {
    "name": "other",
    "input": [3],
    "layers": [
        {"type": "linear", "name": "zeta", "out": 2, "bias": True},
        {"type": "relu"},
        {"type": "linear", "name": "alpha", "out": 2},
        {"type": "square"},
        {"type": "linear", "name": "mid", "out": 2},
    ],
}


def residual(name, hidden, activation):
    return {
        "type": "residual",
        "name": name,
        "body": [
            {"type": "linear", "name": f"{name}a", "out": hidden, "bias": True},
            {"type": activation},
            {"type": "linear", "name": f"{name}b", "out": 3},
        ],
    }


FORWARD = {
    "input": [3],
    "layers": [residual("r1", 4, "relu"), residual("r2", 2, "square")],
}
BACKWARD = {
    "input": [3],
    "layers": [residual("q1", 2, "square"), residual("q2", 4, "relu")],
}


class KeyRecorder:
    """A cache that records the keys `analyze` asks for and certifies nothing."""

    def __init__(self):
        self.keys = []

    def get(self, key):
        self.keys.append(key)
        return Certificate(0, 0, (), "certified", (0, 0), 0, True)

    def set(self, key, value):
        raise AssertionError("every key was answered")


def keys_of(spec):
    recorder = KeyRecorder()
    analyze(spec, cache=recorder)
    return set(recorder.keys)


def certificates_of(spec):
    report = analyze(spec)
    return [cert for block in report.blocks for cert, _ in block.instances]


def test_key_ignores_layer_names():
    assert keys_of(PAIR) == keys_of(RENAMED)


def test_key_ignores_the_order_of_unrelated_blocks():
    assert keys_of(FORWARD) == keys_of(BACKWARD)
    assert len(keys_of(FORWARD)) == 2


def test_key_ignores_custom_parameter_names():
    def custom(name):
        return {"custom": {"parameters": {name: [3]}, "phi": [f"{name}_0*{name}_1"]}}

    assert keys_of(custom("x")) == keys_of(custom("w"))


def wide_pair(first, second):
    # Groups of 41 + 20 variables: large enough for the restricted law search.
    return {
        "input": [40],
        "layers": [
            {"type": "linear", "name": first, "out": 4, "bias": True},
            {"type": "relu"},
            {"type": "linear", "name": second, "out": 20},
        ],
    }


def test_key_of_a_large_group_ignores_layer_names():
    assert keys_of(wide_pair("fc1", "fc2")) == keys_of(wide_pair("zz", "aa"))


def test_identical_groups_of_a_block_share_one_key():
    recorder = KeyRecorder()
    analyze(wide_pair("fc1", "fc2"), cache=recorder)

    # Four groups, one per hidden neuron, equal up to renaming: one key.
    assert len(set(recorder.keys)) == 1


def test_key_changes_with_the_engine_version_degree_and_seed(monkeypatch):
    graph = build_graph(load_model(PAIR))
    block = split_into_blocks(graph)[0]
    group = parametrize(block, graph).groups[0]
    before = group_key(group, 2, 0)

    assert group_key(group, 3, 0) != before
    assert group_key(group, 2, 1) != before
    monkeypatch.setattr(algebra.analysis, "ENGINE_VERSION", "test")
    assert group_key(group, 2, 0) != before


def test_key_differs_between_different_blocks():
    wider = {**PAIR, "layers": [{**PAIR["layers"][0], "out": 3}, *PAIR["layers"][1:]]}

    assert keys_of(wider) != keys_of(PAIR)


def test_renamed_model_hits_and_gets_its_own_names(tmp_path):
    with GroupCache(tmp_path) as cache:
        analyze(PAIR, cache=cache)
    with GroupCache(tmp_path) as cache:
        report = analyze(RENAMED, cache=cache)
        hits, misses = cache.hits, cache.misses

    assert (hits, misses) == (2, 0)
    reference = analyze(RENAMED).to_dict()
    assert (
        report.to_dict()["blocks"][0]["expressions"]
        == (reference["blocks"][0]["expressions"])
    )
    assert "zeta_bias_0" in report.to_dict()["blocks"][0]["symbols"]


CERTIFICATES = {
    "relu-pair": PAIR,
    "custom": {"custom": {"parameters": {"x": [3]}, "phi": ["x_0*x_1*x_2"]}},
    "attention": {
        "input": [3, 3],
        "layers": [{"type": "attention", "heads": 1, "head_dim": 2, "value_dim": 2}],
    },
}


@pytest.mark.parametrize("spec", CERTIFICATES.values(), ids=CERTIFICATES.keys())
def test_certificate_round_trips_through_bytes(spec):
    for cert in certificates_of(spec):
        assert decode_certificate(encode_certificate(cert)) == cert


def test_fraction_coefficients_round_trip():
    law = Polynomial({((0, 2),): Fraction(1, 3), ((1, 1), (2, 1)): -2})
    cert = Certificate(3, 2, (law,), "certified", (1, 1), 1, True)

    decoded = decode_certificate(encode_certificate(cert))

    assert decoded == cert
    assert decoded.laws[0].terms[((0, 2),)] == Fraction(1, 3)


def sample_certificate():
    return certificates_of(PAIR)[0]


def tampered(cert):
    body = encode_certificate(cert).split(b"\n", 1)[1]
    return encode_certificate(cert).replace(body, body.replace(b"1", b"2", 1))


def self_contradicting(cert):
    wrong = Certificate(
        cert.dimension, cert.lie_dim, cert.laws, "certified", (0, 5), 1, True
    )
    return encode_certificate(wrong)


BAD_VALUES = {
    "garbage-bytes": (lambda cert: b"\x00\xff garbage", "no certificate header"),
    "wrong-type": (lambda cert: {"laws": 3}, "holds a dict"),
    "old-pickled-object": (lambda cert: cert, "holds a Certificate"),
    "digest-mismatch": (tampered, "digest mismatch"),
    "contradicting": (self_contradicting, "do not match the laws"),
    "deep-nesting": (lambda cert: nested_certificate(), "body is not JSON"),
}


def nested_certificate():
    """Return certificate bytes with a valid digest and a body nested too deep."""
    import hashlib

    from algebra.cache import FORMAT

    body = b"[" * 100_000 + b"]" * 100_000
    return FORMAT + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


@pytest.mark.parametrize("make, match", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_value_is_dropped_with_a_warning(tmp_path, make, match):
    key = "a" * 64
    with GroupCache(tmp_path) as cache:
        cache.store.set(key, make(sample_certificate()))
        with pytest.warns(StaleCacheWarning, match=match):
            assert cache.get(key) is None
        assert key not in cache.store


def raw_sql(directory, statement, *parameters):
    connection = sqlite3.connect(directory / "cache.db")
    with connection:
        connection.execute(statement, parameters)
    connection.close()


def test_unpicklable_row_is_dropped_with_a_warning(tmp_path):
    key = "b" * 64
    with GroupCache(tmp_path) as cache:
        cache.store.set(key, ("a", "pickled", "tuple"))
    raw_sql(tmp_path, "UPDATE Cache SET value = ? WHERE key = ?", b"\x80\x05junk", key)

    with (
        GroupCache(tmp_path) as cache,
        pytest.warns(StaleCacheWarning, match="unreadable"),
    ):
        assert cache.get(key) is None


def test_large_entry_with_a_garbage_file_is_dropped(tmp_path):
    law = Polynomial({((v, 2),): v + 1 for v in range(5000)})
    cert = Certificate(5000, 4999, (law,), "certified", (1, 1), 1, True)
    with GroupCache(tmp_path) as cache:
        cache.set("c" * 64, cert)
    (value_file,) = tmp_path.rglob("*.val")
    value_file.write_bytes(b"garbage" * 100)

    with GroupCache(tmp_path) as cache, pytest.warns(StaleCacheWarning):
        assert cache.get("c" * 64) is None


def test_analyze_recomputes_a_corrupted_entry(tmp_path):
    with GroupCache(tmp_path) as cache:
        analyze(PAIR, cache=cache)
    raw_sql(tmp_path, "UPDATE Cache SET value = ?", b"\x00garbage")

    with GroupCache(tmp_path) as cache, pytest.warns(StaleCacheWarning):
        recomputed = analyze(PAIR, cache=cache)
    with GroupCache(tmp_path) as cache, warnings.catch_warnings():
        warnings.simplefilter("error")
        again = analyze(PAIR, cache=cache)
        hits = cache.hits

    expected = expressions(analyze(PAIR))
    assert expressions(recomputed) == expressions(again) == expected
    assert hits == 2


def expressions(report):
    return [block["expressions"] for block in report.to_dict()["blocks"]]


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_lease_of_a_dead_process_is_broken_at_once(tmp_path):
    import socket

    key = "d" * 64
    with GroupCache(tmp_path) as cache:
        holder = f"{socket.gethostname()}\t{dead_pid()}\tdead"
        cache.store.set(LEASE_PREFIX + key, holder)
        start = time.monotonic()

        assert cache.get(key) is None
        assert time.monotonic() - start < 1.0


def test_lease_held_elsewhere_expires(tmp_path):
    key = "e" * 64
    with GroupCache(tmp_path, lease_seconds=0.5) as cache:
        cache.store.set(LEASE_PREFIX + key, "another-host\t1\tx", expire=0.5)
        start = time.monotonic()

        assert cache.get(key) is None
        assert time.monotonic() - start >= 0.4


WAITER = """
import sys, time
from algebra.cache import GroupCache
with GroupCache(sys.argv[1]) as cache:
    start = time.monotonic()
    cert = cache.get(sys.argv[2])
    print(cert is not None, round(time.monotonic() - start, 2), cache.misses)
"""


def test_another_process_waits_for_the_lease_holder(tmp_path):
    key = "f" * 64
    with GroupCache(tmp_path) as cache:
        assert cache.get(key) is None  # this process now holds the lease
        waiter = subprocess.Popen(
            [sys.executable, "-c", WAITER, str(tmp_path), key],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
        cache.set(key, sample_certificate())
        found, waited, misses = waiter.communicate(timeout=60)[0].split()

    assert found == "True" and misses == "0"
    assert float(waited) > 0.3


def test_released_lease_lets_another_thread_compute(tmp_path):
    key = "0" * 64
    with GroupCache(tmp_path) as cache:
        assert cache.get(key) is None
        cache.release_leases()
        outcome = []
        thread = threading.Thread(target=lambda: outcome.append(cache.get(key)))
        thread.start()
        thread.join(timeout=5)

    assert outcome == [None]


def test_lease_holder_asking_again_does_not_wait_for_itself(tmp_path):
    with GroupCache(tmp_path) as cache:
        assert cache.get("1" * 64) is None
        start = time.monotonic()

        assert cache.get("1" * 64) is None
        assert time.monotonic() - start < 1.0


def test_stats_count_entries_and_show_the_last_run(tmp_path):
    with GroupCache(tmp_path) as cache:
        analyze(PAIR, cache=cache)
        cache.record_run(
            {
                "files": 3,
                "failed": 1,
                "seconds": 1.5,
                "cache_hits": 3,
                "cache_misses": 1,
                "finished": "now",
            }
        )

    text = render_stats(tmp_path)

    assert "entries: 2" in text
    assert "hit rate 75.0 %" in text
    assert "3 files (1 failed)" in text


def test_stats_of_a_missing_directory_do_not_create_it(tmp_path):
    text = render_stats(tmp_path / "absent")

    assert "entries: 0" in text and "none recorded" in text
    assert not (tmp_path / "absent").exists()


def test_clear_removes_every_entry(tmp_path):
    with GroupCache(tmp_path) as cache:
        analyze(PAIR, cache=cache)

    assert clear_cache(tmp_path) == 2
    with GroupCache(tmp_path) as cache:
        assert cache.entries() == 0


def test_cache_commands(runner, tmp_path):
    with GroupCache(tmp_path) as cache:
        analyze(PAIR, cache=cache)

    stats = runner.invoke(main, ["cache", "stats", "--cache-dir", str(tmp_path)])
    cleared = runner.invoke(main, ["cache", "clear", "--cache-dir", str(tmp_path)])
    after = runner.invoke(main, ["cache", "stats", "--cache-dir", str(tmp_path)])

    assert stats.exit_code == cleared.exit_code == after.exit_code == 0
    assert "entries: 2" in stats.output
    assert "removed 2 entries" in cleared.output
    assert "entries: 0" in after.output


def stored_entry(tmp_path, spec, view="text"):
    """Analyse `spec` into the cache at `tmp_path`; return its key and raw bytes."""
    from algebra.cache import REPORT_PREFIX
    from algebra.stored import analyze_stored, report_key

    with GroupCache(tmp_path) as cache:
        analyze_stored(spec, view, cache=cache)
        key = report_key(load_model(spec), 2, 0)
        return key, cache.store.get(REPORT_PREFIX + key)


def reanalysed(tmp_path, spec, view="text"):
    """Analyse again from the cache: (output, report hits, group lookups)."""
    from algebra.stored import analyze_stored

    with GroupCache(tmp_path) as cache:
        stored = analyze_stored(spec, view, cache=cache)
        return stored.output(view), cache.report_hits, cache.hits + cache.misses


def expected_output(spec, view="text"):
    from algebra.stored import analyze_stored

    return analyze_stored(spec, view).output(view)


def forged_body(raw, change):
    """Return the entry with its JSON body changed and its digest recomputed."""
    import hashlib
    import json

    from algebra.cache import REPORT_FORMAT

    body = raw.split(b"\n", 1)[1]
    content = json.loads(body)
    change(content)
    body = json.dumps(content).encode()
    return (
        REPORT_FORMAT + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    )


def entry_with_body(body):
    """Return a report entry whose digest matches `body`."""
    import hashlib

    from algebra.cache import REPORT_FORMAT

    return (
        REPORT_FORMAT + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    )


def more_laws(content):
    content["report"]["summary"]["laws"] += 1


def fewer_laws_everywhere(content):
    report = content["report"]
    report["summary"]["laws"] -= 1
    report["views"]["text"] = report["views"]["text"].replace("4 laws", "3 laws", 1)


BAD_REPORTS = {
    "garbage": (lambda raw: b"\x00garbage", "no report header"),
    "flipped-byte": (lambda raw: raw[:-3] + b"X" + raw[-2:], "digest mismatch"),
    "summary-contradicts-text": (
        lambda raw: forged_body(raw, more_laws),
        "the text view contradicts the summary",
    ),
    "unknown-field": (
        lambda raw: forged_body(raw, lambda c: c["report"].update(extra=1)),
        "fields differ",
    ),
    "wrong-type": (
        lambda raw: forged_body(raw, lambda c: c["report"]["summary"].update(laws="2")),
        "is not a int",
    ),
    "deep-nesting": (
        lambda raw: entry_with_body(b"[" * 100_000 + b"]" * 100_000),
        "body is not JSON",
    ),
}


@pytest.mark.parametrize("make, match", BAD_REPORTS.values(), ids=BAD_REPORTS.keys())
def test_bad_report_entry_is_recomputed_with_a_warning(tmp_path, make, match):
    from algebra.cache import REPORT_PREFIX

    key, raw = stored_entry(tmp_path, PAIR)
    with GroupCache(tmp_path) as cache:
        cache.store.set(REPORT_PREFIX + key, make(raw))

    with pytest.warns(StaleCacheWarning, match=match):
        output, report_hits, group_lookups = reanalysed(tmp_path, PAIR)

    assert output == expected_output(PAIR)
    assert (report_hits, group_lookups) == (0, 2)
    assert reanalysed(tmp_path, PAIR)[1:] == (1, 0)  # repaired


def test_report_moved_under_another_key_is_refused(tmp_path):
    from algebra.cache import REPORT_PREFIX

    _, raw = stored_entry(tmp_path, PAIR)
    other_key, _ = stored_entry(tmp_path, RENAMED)
    with GroupCache(tmp_path) as cache:
        cache.store.set(REPORT_PREFIX + other_key, raw)

    with pytest.warns(StaleCacheWarning, match="stored under another key"):
        output = reanalysed(tmp_path, RENAMED)[0]

    assert output == expected_output(RENAMED)
    assert output.startswith("model other:")


def test_consistent_forgery_is_not_detected(tmp_path):
    # Documented limit: whoever can write the cache can change a result.
    from algebra.cache import REPORT_PREFIX

    key, raw = stored_entry(tmp_path, PAIR)
    with GroupCache(tmp_path) as cache:
        cache.store.set(REPORT_PREFIX + key, forged_body(raw, fewer_laws_everywhere))

    output = reanalysed(tmp_path, PAIR)[0]

    assert output.splitlines()[0] == "model pair: 16 parameters, 3 laws (certified)"


def test_report_views_accumulate_in_one_entry(tmp_path):
    from algebra.cache import decode_report

    stored_entry(tmp_path, PAIR, "text")
    key, raw = stored_entry(tmp_path, PAIR, "latex")

    assert set(decode_report(raw, key).views) == {"text", "latex"}
    with GroupCache(tmp_path) as cache:
        assert (cache.entries(), cache.reports()) == (2, 1)


def test_report_key_ignores_the_path_but_not_the_engine_version(tmp_path, monkeypatch):
    from algebra.stored import report_key

    first, second = tmp_path / "a.yaml", tmp_path / "b" / "a.yaml"
    second.parent.mkdir()
    first.write_text("input: [3]\nlayers:\n  - {type: linear, out: 2}\n")
    second.write_text("\n\ninput: [3]\nlayers:\n- {out: 2, type: linear}\n")
    key = report_key(load_model(first), 2, 0)

    assert report_key(load_model(second), 2, 0) == key
    assert report_key(load_model(first), 3, 0) != key
    assert report_key(load_model(first), 2, 1) != key
    monkeypatch.setattr(algebra.analysis, "ENGINE_VERSION", "test")
    assert report_key(load_model(first), 2, 0) != key


def test_wait_for_a_live_lease_holder_is_announced_once(tmp_path):
    import os
    import socket

    key = "7" * 64
    notices = []
    on_wait = lambda *notice: notices.append(notice)  # noqa: E731
    holder = f"{socket.gethostname()}\t{os.getppid()}\tlive"
    with GroupCache(tmp_path, lease_seconds=1.0, on_wait=on_wait) as cache:
        cache.store.set(LEASE_PREFIX + key, holder, expire=30)
        start = time.monotonic()

        assert cache.get(key) is None
        waited = time.monotonic() - start

    assert 1.0 <= waited < 3.0
    assert len(notices) == 1
    assert notices[0][:2] == (
        key,
        f"process {os.getppid()} on host {socket.gethostname()}",
    )
    assert 0.5 <= notices[0][2] <= 0.8


def test_wait_notice_says_what_it_waits_for(capsys):
    from algebra.cache import print_wait_notice

    print_wait_notice("ab12" * 16, "process 42 on host h", 297.6)

    assert capsys.readouterr().err == (
        "waiting for cache entry ab12ab12ab12, leased by process 42 on host h "
        "(computing it, or stale); at most 298 s more, then computing it here\n"
    )


def test_lease_of_a_reused_pid_is_broken_at_once(tmp_path):
    import os
    import socket

    key = "8" * 64
    # A live pid whose start time differs from the lease's: the pid was reused.
    holder = f"{socket.gethostname()}\t{os.getppid()}\tnonce@1"
    with GroupCache(tmp_path) as cache:
        cache.store.set(LEASE_PREFIX + key, holder, expire=30)
        start = time.monotonic()

        assert cache.get(key) is None
        assert time.monotonic() - start < 1.0


def test_lease_is_kept_when_start_times_cannot_be_compared(monkeypatch):
    import os
    import socket

    import algebra.cache

    holder = f"{socket.gethostname()}\t{os.getppid()}\tnonce@1"
    monkeypatch.setattr(algebra.cache, "_start_time", lambda pid: "")

    assert not algebra.cache._holder_died(holder)

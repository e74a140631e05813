import io
import json
import tarfile

import numpy as np
import pytest

from workbench.core import corpora, data
from workbench.core.errors import InputError


def test_bos_policy_is_explicit_on_causal_models(tiny_llama):
    text = "The sink lives at position zero. " * 20
    with_bos = data.from_text(tiny_llama, text, window=32)
    assert all(s[0] == 1 and len(s) == 32 for s in with_bos.sequences)
    assert with_bos.bos_policy == "bos" and with_bos.special_ids == {"bos": 1}
    without = data.from_text(tiny_llama, text, window=32, prepend_bos=False)
    assert without.bos_policy == "none" and all(1 not in s for s in without.sequences)
    # the BOS window holds one text token fewer, the text is otherwise identical
    assert np.array_equal(with_bos.sequences[0][1:], without.sequences[0][:31])


def test_encoder_windows_are_cls_text_sep(tiny_bert):
    info = tiny_bert.sinkbench
    ds = data.from_text(tiny_bert, "an encoder sentence " * 10, window=16)
    first = ds.sequences[0]
    assert first[0] == info.cls_token_id and first[-1] == info.sep_token_id and len(first) == 16


def test_token_jsonl_is_used_exactly_as_given(tiny_llama, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"tokens": [7, 8, 9]}) + "\n" + json.dumps({"tokens": [10, 11, 12, 13]}) + "\n")
    ds = data.from_file(tiny_llama, path, window=8)
    assert [s.tolist() for s in ds.sequences] == [[7, 8, 9], [10, 11, 12, 13]]
    assert ds.bos_policy == "as-given"
    batches = list(ds.batches(4))
    assert [b[1].shape[1] for b in batches] == [3, 4]  # equal lengths per batch


def test_text_jsonl_is_windowed(tiny_llama, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "abc " * 30}) + "\n")
    ds = data.from_jsonl(tiny_llama, path, window=16)
    assert ds.sequences[0][0] == 1 and len(ds.sequences[0]) == 16


@pytest.mark.parametrize("line, message", [
    ('{"txt": "x"}', r"expected \{\"text\""),
    ("[1, 2, 3]", "got list"),
    ("{not json", "not valid JSON"),
    ('{"tokens": [1]}', "at least 2 ids"),
    ('{"tokens": [1, 99999]}', r"token id 99999 is outside the vocabulary .* allowed 0\.\.\d+"),
    ('{"tokens": [1, "a"]}', "must be integers"),
])
def test_bad_jsonl_lines_name_the_line(tiny_llama, tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"tokens": [1, 2]}\n' + line + "\n")
    with pytest.raises(InputError, match=message) as err:
        data.from_file(tiny_llama, path)
    assert "bad.jsonl:2" in str(err.value)


def test_window_and_text_limits(tiny_llama, tmp_path):
    with pytest.raises(InputError, match=r"window T .* = 257 is out of range: allowed 2\.\.256"):
        data.from_text(tiny_llama, "x y z", window=257)
    with pytest.raises(InputError, match="at least 2 are needed"):
        data.from_text(tiny_llama, "", window=8)
    with pytest.raises(InputError, match="at least 2 are needed"):
        data.from_text(tiny_llama, "x", window=8, prepend_bos=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(InputError, match="empty"):
        data.from_file(tiny_llama, empty)
    with pytest.raises(InputError, match="does not exist"):
        data.from_file(tiny_llama, tmp_path / "nope.txt")
    too_long = tmp_path / "long.jsonl"
    too_long.write_text(json.dumps({"tokens": [5] * 300}) + "\n")
    with pytest.raises(InputError, match=r"exceed the context .* allowed 2\.\.256"):
        data.from_file(tiny_llama, too_long)


def test_short_text_becomes_one_short_sequence_and_tails_are_kept_for_files(tiny_llama, tmp_path):
    ds = data.from_text(tiny_llama, "hello", window=64)
    assert len(ds) == 1 and len(ds.sequences[0]) == 6
    path = tmp_path / "t.txt"
    path.write_text("a" * 40)
    ds = data.from_file(tiny_llama, path, window=16)  # 15 + 15 + 10 text tokens
    assert ds.lengths == [16, 16, 11]


def test_control_prompts(tiny_llama):
    rep = data.control_prompts(tiny_llama, "repeated", window=16, n=5, seed=3)
    assert all(s[0] == 1 and len(set(s[1:].tolist())) == 1 for s in rep.sequences)
    rnd = data.control_prompts(tiny_llama, "random", window=16, n=5, seed=3)
    specials = set(tiny_llama.sinkbench.tokenizer.all_special_ids)
    assert not specials & set(np.concatenate([s[1:] for s in rnd.sequences]).tolist())
    assert rnd.hash() == data.control_prompts(tiny_llama, "random", window=16, n=5, seed=3).hash()
    assert rnd.hash() != data.control_prompts(tiny_llama, "random", window=16, n=5, seed=4).hash()
    with pytest.raises(InputError, match="unknown prompt set"):
        data.control_prompts(tiny_llama, "shuffled")


def test_corpus_windows_round_robin_and_provenance(tiny_llama, fake_corpus):
    ds = data.corpus_windows(tiny_llama, "austen", window=32, n_windows=4)
    tok = tiny_llama.sinkbench.tokenizer
    texts = [tok.decode(s[1:].tolist()) for s in ds.sequences]
    assert texts[0].startswith("It was") and texts[1].startswith("Call me") and "cold" in texts[2]
    assert "sail" in texts[3] or "Ishmael" in texts[3]
    prov = ds.provenance()
    assert prov["bos_policy"] == "bos" and prov["n_tokens"] == 128 and len(prov["data_sha256"]) == 64
    one = data.corpus_windows(tiny_llama, "austen", window=32, n_windows=2, document="second")
    assert all("Ishmael" in tok.decode(s.tolist()) or "sailor" in tok.decode(s.tolist()) for s in one.sequences)
    with pytest.raises(InputError, match="only .* windows"):
        data.corpus_windows(tiny_llama, "austen", window=256, n_windows=10_000)


def test_unfetched_corpus_says_how_to_fetch(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path))
    with pytest.raises(InputError, match="sinkbench data fetch shakespeare"):
        data.corpus_windows(tiny_llama, "shakespeare")
    with pytest.raises(InputError, match="unknown corpus"):
        data.corpus_windows(tiny_llama, "tolstoy")


def test_gutenberg_unwrapping_and_play_markdown():
    assert corpora._unwrap_gutenberg(["It is a truth", "universally acknowledged.", "", "", "Next."]) == \
        "It is a truth universally acknowledged.\n\nNext."
    play = "# Twelfth Night\n\n## ACT I\n\n_Enter DUKE_\n\n**DUKE ORSINO**  \nIf music be the food of love,  \nplay on."
    assert corpora._strip_play_markdown(play) == (
        "Twelfth Night\n\nACT I\n\n[Enter DUKE]\n\nDUKE ORSINO.\nIf music be the food of love,\nplay on.")


def test_ar_member_reads_a_deb_container():
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as tar:
        info = tarfile.TarInfo("./hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    blob = payload.getvalue()

    def member(name, body):
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        return header + body + (b"\n" if len(body) % 2 else b"")

    archive = b"!<arch>\n" + member("debian-binary", b"2.0\n") + member("data.tar.xz", blob)
    assert corpora._ar_member(archive, "data.tar.xz") == blob


def test_every_dataset_records_the_tokenizer_it_was_cut_with(tiny_llama, fake_corpus, tmp_path):
    fingerprint = tiny_llama.sinkbench.tokenizer_fingerprint()
    assert fingerprint and len(fingerprint) == 16
    text = tmp_path / "t.txt"
    text.write_text("some text to cut " * 10)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(json.dumps({"tokens": [1, 5, 6]}) + "\n")
    made = [data.from_text(tiny_llama, "hello there", window=8), data.from_file(tiny_llama, text, window=16),
            data.from_file(tiny_llama, jsonl), data.corpus_windows(tiny_llama, "austen", window=16, n_windows=2),
            data.control_prompts(tiny_llama, "random", window=8, n=2)]
    for ds in made:
        assert (ds.tokenizer_id, ds.prepared_for) == (fingerprint, "tiny-llama"), ds.source
        assert ds.subset([0]).tokenizer_id == fingerprint
        ds.check_model(tiny_llama)  # the model it was cut for: accepted


def test_a_text_file_is_read_as_utf8_exactly(tiny_llama, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffcafé, naïve".encode())  # a BOM is dropped, the rest kept byte for byte
    assert data.read_text_file(path) == "café, naïve"
    ds = data.from_file(tiny_llama, path, window=64, prepend_bos=False)
    assert tiny_llama.sinkbench.tokenizer.decode(ds.sequences[0].tolist()) == "café, naïve"

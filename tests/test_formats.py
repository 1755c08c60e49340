"""grouprank.formats: each published layout on tiny fixtures, malformed files, real collections."""

from __future__ import annotations

import gzip
import json
import zipfile

import pandas as pd
import pytest

from grouprank import formats
from grouprank.formats import (
    FormatError,
    read_benchmark,
    read_bright_examples,
    read_rank_llm,
    read_trec_docs,
    read_trec_qrels,
    read_trec_run,
    read_trec_topics,
    write_rank_llm,
    write_trec_run,
)

MESSY = "pytorch_torch_tensor_functions/Memory Management_2_0.txt"


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path, rows: list[dict]):
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _trec_folder(root):
    _write(root / "doc-text.trec",
           "<DOC>\n<DOCNO>1</DOCNO>\ncompact memories\nhave capacities\n</DOC>\n"
           "<DOC>\n<DOCNO> 2 </DOCNO>\n<TEXT>an &amp; analogue</TEXT>\n</DOC>\n")
    _write(root / "query-text.trec",
           "<top>\n<num>1</num><title>\nDIELECTRIC CONSTANT\n</title>\n</top>\n"
           "<top>\n<num> Number: 2\n<title> Topic: waveguide fed\n<desc> Description:\nlong\n"
           "</top>\n")
    _write(root / "qrels", "1 0 1 1\n2 0 2 1\n")
    return root


def test_trec_folder(tmp_path):
    b = read_benchmark("trec", _trec_folder(tmp_path))
    assert b.corpus.to_dict("records") == [
        {"docid": "1", "text": "compact memories have capacities"},
        {"docid": "2", "text": "an & analogue"},
    ]
    assert b.queries.to_dict("records") == [
        {"qid": "1", "query": "DIELECTRIC CONSTANT"}, {"qid": "2", "query": "waveguide fed"}
    ]
    assert b.qrels.to_dict("records") == [
        {"qid": "1", "docid": "1", "relevance": 1}, {"qid": "2", "docid": "2", "relevance": 1}
    ]
    with pytest.raises(FormatError, match=r"query-text.trec:1: topic 1 has no <desc> text"):
        read_trec_topics(tmp_path / "query-text.trec", field="desc")


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("<DOC>\n<DOCNO>1</DOCNO>\nx\n", 1, "never closed"),
        ("<DOC>\nx\n</DOC>\n", 1, "without a <DOCNO>"),
        ("<DOC>\n<DOCNO>1</DOCNO>\n</DOC>\nstray\n", 4, "outside"),
        ("<DOC>\n<DOCNO>1</DOCNO>\n<DOC>\n", 3, "opened again"),
    ],
)
def test_malformed_trec_docs_name_file_and_line(tmp_path, text, line, problem):
    path = _write(tmp_path / "docs.trec", text)
    with pytest.raises(FormatError, match=rf"docs.trec:{line}: .*{problem}"):
        read_trec_docs(path)


def test_qrels_and_run_ids_with_spaces_and_slashes(tmp_path):
    qrels = read_trec_qrels(_write(tmp_path / "q.txt", f"4\t0\t{MESSY}\t1\n4 0 a/b 0\n"))
    assert qrels["docid"].tolist() == [MESSY, "a/b"]
    run = read_trec_run(_write(tmp_path / "r.txt", f"4 Q0 {MESSY} 7 0.6027 reasonir\n"))
    assert run.iloc[0].to_dict() == {"qid": "4", "docid": MESSY, "rank": 7, "score": 0.6027,
                                     "tag": "reasonir"}


@pytest.mark.parametrize(
    ("reader", "text", "line"),
    [
        (read_trec_qrels, "1 0 d1 1\n1 0 d2\n", 2),
        (read_trec_qrels, "1 0 d1 x\n", 1),
        (read_trec_run, "1 Q0 d1 1 0.5 t\n\n1 Q0 d2 two 0.4 t\n", 3),
        (read_trec_run, "1 Q0 d1 1 nope t\n", 1),
    ],
)
def test_malformed_lines(tmp_path, reader, text, line):
    path = _write(tmp_path / "bad.txt", text)
    with pytest.raises(FormatError, match=rf"bad.txt:{line}: expected"):
        reader(path)


def test_duplicates_and_empty_files_are_errors(tmp_path):
    with pytest.raises(FormatError, match="duplicate qid/docid"):
        read_trec_qrels(_write(tmp_path / "q.txt", "1 0 d 1\n1 0 d 0\n"))
    with pytest.raises(FormatError, match="no judgements"):
        read_trec_qrels(_write(tmp_path / "e.txt", "\n"))


def test_beir_layout(tmp_path):
    _jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "T", "text": "x"},
                                       {"_id": "d2", "title": "", "text": "y"}])
    with gzip.open(tmp_path / "queries.jsonl.gz", "wt") as f:
        f.write(json.dumps({"_id": "q1", "text": "what?", "metadata": {}}) + "\n")
    _write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    b = read_benchmark("beir", tmp_path)
    assert b.corpus.to_dict("records") == [{"docid": "d1", "text": "x", "title": "T"},
                                           {"docid": "d2", "text": "y", "title": None}]
    assert b.queries.to_dict("records") == [{"qid": "q1", "query": "what?"}]
    assert b.qrels.to_dict("records") == [{"qid": "q1", "docid": "d1", "relevance": 1}]
    _write(tmp_path / "corpus.jsonl", '{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": 3}\n')
    with pytest.raises(FormatError, match=r"corpus.jsonl:2: field 'text' is not a string"):
        read_benchmark("beir", tmp_path)


def _bright_examples():
    return [
        {"query": "q zero", "reasoning": "r", "id": "0", "excluded_ids": ["N/A"],
         "gold_ids_long": ["N/A"], "gold_ids": [MESSY, "b/1.txt"], "gold_answer": "N/A"},
        {"query": "q one", "reasoning": "r", "id": "1", "excluded_ids": ["x/2.txt", "x/3.txt"],
         "gold_ids_long": [], "gold_ids": ["b/1.txt"], "gold_answer": "a"},
    ]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_bright_layout(tmp_path, suffix):
    docs = pd.DataFrame({"id": [MESSY, "b/1.txt", "x/2.txt"], "content": ["m", "b", "x"]})
    examples = pd.DataFrame(_bright_examples())
    for folder, frame in (("documents", docs), ("examples", examples)):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / f"biology-00000-of-00001.{suffix}"
        if suffix == "parquet":
            frame.to_parquet(path)
        else:
            _jsonl(path, frame.to_dict("records"))
    b = read_benchmark("bright", tmp_path, subset="biology")
    assert b.corpus["docid"].tolist() == [MESSY, "b/1.txt", "x/2.txt"]
    assert b.queries.to_dict("records") == [
        {"qid": "0", "query": "q zero", "excluded_ids": []},
        {"qid": "1", "query": "q one", "excluded_ids": ["x/2.txt", "x/3.txt"]},
    ]
    assert b.qrels.values.tolist() == [["0", MESSY, 1], ["0", "b/1.txt", 1], ["1", "b/1.txt", 1]]
    with pytest.raises(ValueError, match="--subset is required"):
        read_benchmark("bright", tmp_path)


def test_r2med_layout(tmp_path):
    _jsonl(tmp_path / "Biology" / "corpus.jsonl", [{"id": "p1", "text": "t"}])
    _jsonl(tmp_path / "Biology" / "query.jsonl", [{"id": "q1", "text": "?"}])
    _write(tmp_path / "Biology" / "qrels.jsonl", '{"q_id": "q1", "p_id": "p1", "score": 1}\n{"q_id')
    with pytest.raises(FormatError, match=r"qrels.jsonl:2: invalid JSON"):
        read_benchmark("r2med", tmp_path, subset="Biology")
    _jsonl(tmp_path / "Biology" / "qrels.jsonl", [{"q_id": "q1", "p_id": "p1", "score": 2}])
    b = read_benchmark("r2med", tmp_path, subset="Biology")
    assert b.qrels.to_dict("records") == [{"qid": "q1", "docid": "p1", "relevance": 2}]
    assert b.queries.to_dict("records") == [{"qid": "q1", "query": "?"}]


def test_missing_files_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="none of"):
        read_benchmark("beir", tmp_path)
    with pytest.raises(FileNotFoundError, match="expected one TREC documents file"):
        read_benchmark("trec", tmp_path)
    with pytest.raises(ValueError, match="unknown format"):
        read_benchmark("msmarco", tmp_path)


def test_trec_run_round_trip(tmp_path):
    run = pd.DataFrame({"qid": ["1", "1", "2"], "docid": [MESSY, "b", "c"], "rank": [2, 1, 1],
                        "score": [0.25, 0.5, 1e-17]})
    write_trec_run(run, tmp_path / "run.txt", tag="bm25")
    assert (tmp_path / "run.txt").read_text().splitlines()[0] == "1 Q0 b 1 0.5 bm25"
    back = read_trec_run(tmp_path / "run.txt")
    assert back[["qid", "docid", "rank", "score"]].values.tolist() == [
        ["1", "b", 1, 0.5], ["1", MESSY, 2, 0.25], ["2", "c", 1, 1e-17]]
    with pytest.raises(ValueError, match="cannot be written"):
        write_trec_run(run.assign(docid=[" a", "b", "c"]), tmp_path / "bad.txt")


def test_rank_llm_round_trip_and_old_layout(tmp_path):
    candidates = pd.DataFrame({"qid": ["q1", "q1"], "query": ["flea", "flea"],
                               "docid": ["d2", "d1"], "text": ["two", "one"],
                               "score": [1.0, 2.0], "rank": [2, 1]})
    write_rank_llm(candidates, tmp_path / "requests.jsonl")
    first = json.loads((tmp_path / "requests.jsonl").read_text())
    assert first == {"query": {"text": "flea", "qid": "q1"}, "candidates": [
        {"docid": "d1", "score": 2.0, "doc": {"contents": "one"}},
        {"docid": "d2", "score": 1.0, "doc": {"contents": "two"}}]}
    back = read_rank_llm(tmp_path / "requests.jsonl")
    assert back.values.tolist() == [["q1", "flea", "d1", "one", 2.0, 1],
                                    ["q1", "flea", "d2", "two", 1.0, 2]]
    old = [{"query": "flea", "hits": [{"content": "c", "qid": 7, "docid": "d", "rank": 1,
                                       "score": 3.5}]}]
    _write(tmp_path / "old.json", json.dumps(old, indent=2))
    assert read_rank_llm(tmp_path / "old.json").values.tolist() == [["7", "flea", "d", "c", 3.5, 1]]
    _write(tmp_path / "bad.jsonl", '{"query": {"text": "a", "qid": "1"}, "candidates": [{}]}\n')
    with pytest.raises(FormatError, match=r"bad.jsonl:1: missing field 'score'"):
        read_rank_llm(tmp_path / "bad.jsonl")


def test_vaswani_counts(shared_data):
    b = read_benchmark("trec", shared_data / "vaswani")
    assert (len(b.corpus), len(b.queries), len(b.qrels)) == (11429, 93, 2083)
    assert b.qrels["qid"].nunique() == 93


def test_bright_real_examples_match_anserini_qrels(shared_data):
    queries, qrels = read_bright_examples(
        shared_data / "bright" / "topics" / "topics.bright-leetcode-original.jsonl.gz")
    official = read_trec_qrels(shared_data / "bright" / "qrels" / "qrels.bright-leetcode.txt")
    key = ["qid", "docid"]
    assert sorted(map(tuple, qrels[key].values)) == sorted(map(tuple, official[key].values))
    excluded = read_trec_qrels_like_excludes(shared_data / "bright" / "qrels"
                                             / "exclude.bright-leetcode.txt")
    ours = {(q, d) for q, ids in queries[["qid", "excluded_ids"]].values for d in ids}
    assert ours == excluded


def read_trec_qrels_like_excludes(path) -> set[tuple[str, str]]:
    """Anserini's exclude file: 'qid docid' per line, parsed here independently."""
    pairs = set()
    for line in path.read_text().splitlines():
        qid, docid = line.split(" ", 1)
        pairs.add((qid, docid))
    return pairs


# --- SciFact original release, CACM (Anserini layout) ------------------------------------------

_CLAIMS = (
    "id,claim,evidence_doc_id,evidence_label,evidence_sentences,cited_doc_ids\n"
    "0,\"Claim zero, with a comma.\",,,[],[31715818]\n"
    "2,Claim two.,13734012,CONTRADICT,[4],[13734012]\n"
    "2,Claim two.,7,SUPPORT,[1],[ 13734012        7]\n"
    "5,Claim five.,,,[],[]\n"
)


def _scifact_folder(root, claims: str = _CLAIMS):
    root.mkdir(parents=True)
    with gzip.open(root / "corpus.jsonl.gz", "wt", encoding="utf-8") as handle:
        for docid in ("31715818", "13734012", "7"):
            handle.write(json.dumps({"_id": docid, "title": "t", "text": f"doc {docid}"}) + "\n")
    with zipfile.ZipFile(root / "scifact_original_csv.zip", "w") as archive:
        archive.writestr("claims_train.csv", claims)
        archive.writestr("claims_validation.csv", claims.replace("Claim", "Validation claim"))
    return root


def test_scifact_train_claims_one_query_per_claim(tmp_path):
    b = read_benchmark("scifact", _scifact_folder(tmp_path / "scifact"))
    assert b.queries.to_dict("records") == [
        {"qid": "0", "query": "Claim zero, with a comma."},
        {"qid": "2", "query": "Claim two."},
        {"qid": "5", "query": "Claim five."},
    ]
    assert sorted(map(tuple, b.qrels.values)) == [("0", "31715818", 1), ("2", "13734012", 1),
                                                  ("2", "7", 1)]
    assert sorted(b.corpus["docid"]) == ["13734012", "31715818", "7"]


def test_scifact_validation_split_and_unknown_split(tmp_path):
    folder = _scifact_folder(tmp_path / "scifact")
    b = read_benchmark("scifact", folder, "validation")
    assert b.queries["query"].iloc[1] == "Validation claim two."
    with pytest.raises(ValueError, match="split"):
        read_benchmark("scifact", folder, "test")


def test_scifact_claim_with_two_texts_or_bad_ids_fails_with_line(tmp_path):
    twice = _CLAIMS + "5,Another text.,,,[],[]\n"
    with pytest.raises(FormatError, match=r"claims_train.csv:6: claim 5 has two"):
        read_benchmark("scifact", _scifact_folder(tmp_path / "a", twice))
    bad = _CLAIMS.replace("[31715818]", "31715818")
    with pytest.raises(FormatError, match=r"claims_train.csv:2: cited_doc_ids"):
        read_benchmark("scifact", _scifact_folder(tmp_path / "b", bad))


def _cacm_folder(root):
    _jsonl(root / "cacm.jsonl", [{"id": "CACM-0115", "contents": "Algol compilers\n"},
                                 {"id": "CACM-1410", "contents": "time sharing"}])
    _write(root / "topics.cacm.txt",
           "<DOC>\n<DOCNO> 1 </DOCNO>\n\n\n What articles deal with\nTSS?\n\n</DOC>\n"
           "<DOC>\n<DOCNO> 2 </DOCNO>\n Compilers\n</DOC>\n")
    _write(root / "qrels.cacm.txt", "1 Q0 CACM-1410 1\n2 Q0 CACM-115 1\n")
    _write(root / "cacm.tar.gz", "not read")
    return root


def test_cacm_topics_corpus_and_unpadded_qrels_ids(tmp_path):
    b = read_benchmark("cacm", _cacm_folder(tmp_path / "cacm"))
    assert b.queries.to_dict("records") == [{"qid": "1", "query": "What articles deal with TSS?"},
                                            {"qid": "2", "query": "Compilers"}]
    assert b.corpus.to_dict("records") == [{"docid": "CACM-0115", "text": "Algol compilers"},
                                           {"docid": "CACM-1410", "text": "time sharing"}]
    assert sorted(map(tuple, b.qrels.values)) == [("1", "CACM-1410", 1), ("2", "CACM-0115", 1)]


def test_scifact_train_real_counts(shared_data):
    b = read_benchmark("scifact", shared_data / "scifact", "train")
    # 809 train claims (SciFact paper), 919 BEIR train judgements, none among the test claims.
    assert (len(b.corpus), len(b.queries), len(b.qrels)) == (5183, 809, 919)
    assert set(b.qrels["docid"]) <= set(b.corpus["docid"])
    test_claims = read_trec_qrels(shared_data / "scifact" / "qrels.beir-v1.0.0-scifact.test.txt")
    assert not set(b.queries["qid"]) & set(test_claims["qid"])


def test_cacm_real_counts(shared_data):
    b = read_benchmark("cacm", shared_data / "cacm")
    assert (len(b.corpus), len(b.queries), len(b.qrels)) == (3204, 64, 796)
    assert b.qrels["qid"].nunique() == 52
    assert set(b.qrels["docid"]) <= set(b.corpus["docid"])


def test_the_ingest_flag_offers_exactly_the_registered_layouts():
    import typing

    from jobs.configs import IngestJob

    assert typing.get_args(typing.get_type_hints(IngestJob)["format"]) == formats.FORMATS

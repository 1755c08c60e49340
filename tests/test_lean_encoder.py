"""The plain-torch MiniLM (issue 18) against sentence-transformers on the shipped encoder: the same
token ids and, in fp32, the same normalised vectors to 1e-5; other directories fall back."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grouprank.encoding import SentenceTransformerEncoder, encode_texts
from grouprank.lean_encoder import LeanEncoder, lean_mismatch
from grouprank.retrieval import encoder_dir, load_encoder

WORDS = ("Energy MODEL bread Empire battery cell layer oven senate charge naïve café Zürich "
         "東京 北京大学 Ελληνικά русский مرحبا 🙂 [MASK] [SEP] don't e-mail U.S.A. 3.14 #hash "
         "@user http://x.org/a?b=c ÀÉÎÕÜ ßæøå").split()
EDGE = ["", " ", "a", "Hello, World!", "x" * 3000, " ".join(["word"] * 600),
        "\u00a0\u200b\u3000 odd spaces\t\n", "\x00\x01 control characters", "[CLS] literal"]


def _texts() -> list[str]:
    """300 varied texts: edge cases, then random mixes of scripts, cases and punctuation."""
    rng = random.Random(18)
    return EDGE + [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 90)))
                   for _ in range(291)]


@pytest.fixture(scope="module")
def lean():
    return load_encoder()


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers itself, loaded directly (not through the code under test)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(encoder_dir()), device="cpu")


def _reference_ids(reference, texts: list[str]) -> list[list[int]]:
    return reference.tokenizer(texts, truncation=True, max_length=reference.max_seq_length,
                               add_special_tokens=True)["input_ids"]


def test_the_shipped_encoder_takes_the_lean_path(lean):
    assert lean_mismatch(encoder_dir()) is None
    assert isinstance(lean, LeanEncoder)
    assert (lean.max_seq_length, lean.dimension, lean.normalize) == (256, 384, True)


def test_token_ids_match_sentence_transformers(lean, reference):
    texts = _texts()
    assert lean.token_ids(texts) == _reference_ids(reference, texts)
    assert max(len(i) for i in lean.token_ids(texts)) == 256  # the long texts are cut
    lean.max_seq_length = reference.max_seq_length = 32  # what --max-doc-tokens sets
    try:
        assert lean.token_ids(texts) == _reference_ids(reference, texts)
    finally:
        lean.max_seq_length = reference.max_seq_length = 256


def test_fp32_vectors_match_sentence_transformers(lean, reference):
    texts = _texts()
    expected = reference.encode(texts, batch_size=32, convert_to_tensor=True,
                                normalize_embeddings=True)
    got = encode_texts(lean, texts, "fp32", batch_size=32)
    assert got.shape == expected.shape == (300, 384)
    assert (got - expected).abs().max().item() <= 1e-5


def test_a_directory_it_cannot_reproduce_falls_back(tmp_path, reference):
    folder = tmp_path / "cls-pooled"
    shutil.copytree(encoder_dir(), folder, copy_function=os.symlink)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text()) | {"pooling_mode_cls_token": True,
                                                 "pooling_mode_mean_tokens": False}
    pooling.unlink()
    pooling.write_text(json.dumps(config))
    assert "pooling" in lean_mismatch(folder)
    encoder = load_encoder(model_dir=str(folder))
    assert isinstance(encoder, SentenceTransformerEncoder)
    texts = ["solar panels on roofs", "baking sourdough bread"]
    cls = reference.encode(texts, output_value="token_embeddings")
    expected = torch.nn.functional.normalize(torch.stack([t[0] for t in cls]), dim=-1)
    assert torch.allclose(encode_texts(encoder, texts, "fp32"), expected, atol=1e-5)


@pytest.mark.parametrize("file, edit, reason", [
    ("config.json", {"model_type": "roberta"}, "model_type"),
    ("config.json", {"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ("config.json", {"hidden_act": "relu"}, "hidden_act"),
    ("sentence_bert_config.json", {"do_lower_case": True}, "sentence_bert_config"),
    ("1_Pooling/config.json", {"pooling_mode_max_tokens": True}, "pooling"),
    ("modules.json", None, "modules"),
])
def test_lean_mismatch_names_what_it_cannot_reproduce(tmp_path, file, edit, reason):
    shutil.copytree(encoder_dir(), tmp_path / "m", copy_function=os.symlink)
    target = tmp_path / "m" / file
    data = json.loads(target.read_text())
    if edit is None:  # a Dense layer after pooling
        data.append({"idx": 3, "name": "3", "path": "3_Dense",
                     "type": "sentence_transformers.models.Dense"})
    else:
        data |= edit
    target.unlink()
    target.write_text(json.dumps(data))
    assert reason in lean_mismatch(tmp_path / "m")
    with pytest.raises(ValueError, match="not a directory LeanEncoder reproduces"):
        LeanEncoder.load(tmp_path / "m")


def test_a_fresh_worker_encodes_without_importing_transformers():
    # Nor torch's compiler stack: random init on the meta device imported ~900 modules of it
    # (torch._dynamo and the Python reference kernels), ~5 s of a fresh worker's start. The
    # init functions skipped while the skeleton is built are back afterwards.
    code = ("import sys, torch; inits = dict(vars(torch.nn.init)); "
            "from grouprank.backends.group_encoder import load_sentence_encoder; "
            "from grouprank.encoding import encode_texts; "
            "v = encode_texts(load_sentence_encoder('minilm'), ['a', 'b c'], 'auto'); "
            "print(tuple(v.shape), sorted({'sentence_transformers', 'transformers', 'sklearn', "
            "'torch._dynamo'} & set(sys.modules)), vars(torch.nn.init) == inits)")
    assert _fresh_process(code) == "(2, 384) [] True"


def test_the_jobs_driver_resolves_the_default_without_importing_torch():
    # The driver only plans: importing torch there cost every job ~3 s before its JVM started.
    code = ("import sys; import jobs.stages.rerank; from grouprank.models import model_ref; "
            "from grouprank.encoding import resolve_precision; r = model_ref('default'); "
            "print(r.kind, r.fusion_rule.describe()['rule'], resolve_precision('auto') in "
            "('bf16', 'fp32'), 'torch' in sys.modules)")
    assert _fresh_process(code) == "group-encoder logistic True False"


def _fresh_process(code: str) -> str:
    """What ``code`` prints in a new Python process that imports the project from this tree."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    return out.stdout.strip()


def test_only_meta_tensors_skip_their_init_while_the_skeleton_is_built():
    from grouprank.lean_encoder import _skeleton

    with _skeleton():
        real = torch.nn.init.normal_(torch.zeros(64, device="cpu"))
        meta = torch.nn.init.normal_(torch.empty(64))
    assert meta.is_meta and not real.is_meta and real.abs().sum() > 0


def test_maxsim_reads_the_same_token_states_as_sentence_transformers(lean, reference):
    from grouprank.late_interaction import maxsim_scores

    query, texts = "solar panels on roofs", ["roof solar cells", "", "x" * 3000, *_texts()[20:40]]
    states = reference.encode([query, *texts], output_value="token_embeddings",
                              convert_to_numpy=False)

    def inner(t: torch.Tensor) -> torch.Tensor:  # special tokens out, unless that is all
        return torch.nn.functional.normalize((t[1:-1] if len(t) > 2 else t).float(), dim=-1)

    q = inner(states[0])
    expected = [float((q @ inner(d).T).max(dim=1).values.mean()) for d in states[1:]]
    assert maxsim_scores(lean, query, texts, "fp32") == pytest.approx(expected, abs=1e-5)
    # The document that shares the query's words scores above one that shares none.
    got = maxsim_scores(lean, query, ["solar panels on a roof", "baking sourdough bread"])
    assert got[0] > got[1] + 0.2


def test_windows_read_a_long_text_whole_and_keep_its_first_window(reference):
    """``late_windows``: a text past the token limit is cut into windows of the limit, each with
    [CLS] and [SEP]; the pooled vector and the first window's token states are exactly those of
    one window; MaxSim then finds query words only the later windows hold; sentence-transformers
    reads the same windows (its ``embed_ids``) to 1e-5."""
    from grouprank.late_interaction import encode_with_tokens, maxsim_scores, text_windows

    lean = LeanEncoder.load(encoder_dir())
    lean.max_seq_length = 16  # 14 tokens of text a window
    long = " ".join(["bread oven flour"] * 10) + " solar panels on the roof"  # 35 tokens
    texts = ["solar", long, " ".join(["word"] * 600), "x" * 3000, ""]  # x's: one [UNK]
    cut = text_windows(lean, texts, 4)
    full = lean.token_ids(texts, limit=10_000)
    cls, sep = full[0][0], full[0][-1]
    for ids, windows in zip(full, cut, strict=True):
        assert windows[0] == lean.token_ids([texts[full.index(ids)]])[0]
        assert all(len(w) <= 16 and w[0] == cls and w[-1] == sep for w in windows)
        assert [t for w in windows for t in w[1:-1]] == ids[1:-1][: 14 * 4]
    assert [len(w) for w in cut] == [1, 3, 4, 1, 1]
    one, tokens_one = encode_with_tokens(lean, texts, "fp32")
    many, tokens_many = encode_with_tokens(lean, texts, "fp32", windows=4)
    assert torch.equal(one, many)
    assert torch.equal(tokens_many[1][:14], tokens_one[1]) and len(tokens_many[1]) == 35
    query = "solar panels on the roof"
    near, far = maxsim_scores(lean, query, [long], "fp32"), maxsim_scores(
        lean, query, [long], "fp32", windows=4)
    assert far[0] > near[0] + 0.2
    limit = reference.max_seq_length
    reference.max_seq_length = 16
    try:
        st = SentenceTransformerEncoder(reference)
        assert text_windows(st, texts, 4) == cut
        st_pooled, st_tokens = encode_with_tokens(st, texts, "fp32", windows=4)
    finally:
        reference.max_seq_length = limit
    assert torch.allclose(st_pooled, many, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(st_tokens, tokens_many, strict=True))

#!/usr/bin/python3
"""Writes the tokenizer test corpus and SentencePiece goldens for tests/test_tokenizer.cpp.

Oracle: Debian's python3-sentencepiece (apt-get install python3-sentencepiece python3-protobuf),
reading the SentencePiece .model files in ../shared/models/. The test loads the same vocabularies
from llama2.c's tokenizer.bin and must reproduce these ids exactly.

Run from the repository root:  /usr/bin/python3 tools/golden/tokenizer_goldens.py
Then run tools/golden/gpt2_goldens.js (node) for the GPT-2 goldens on the same corpus.
"""
import json
import os
import sys

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "..", "shared", "models")
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")


def corpus():
    s = [
        # prose
        "Once upon a time, there was a little girl named Lily.",
        "She loved to play outside in the park. One day, she saw a big, red ball.",
        "The quick brown fox jumps over the lazy dog.",
        "Hello world",
        "hello",
        "Hello",
        "HELLO WORLD",
        "a",
        "I",
        "The cat sat on the mat and the dog sat on the log.",
        "It was the best of times, it was the worst of times.",
        "To be, or not to be, that is the question:",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
        "Tom and Sue went to the store to buy some apples, bananas and milk.",
        "\"Look!\" said Tim. \"A rainbow!\"",
        "Why? Because I said so!",
        "She said: 'yes'.",
        "(parenthesised) [bracketed] {braced} <angled>",
        "The end.",
        "supercalifragilisticexpialidocious",
        "antidisestablishmentarianism",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "One day, Ben and his mom went to the beach. They built a sand castle together.",
        "The little bird could not fly, so it hopped around the garden looking for seeds.",
        # contractions (GPT-2 pre-tokenizer special cases)
        "don't", "Don't do that, you're wrong, I'm sure, we've seen it, he'll go, she'd know.",
        "it's Tom's dog's bone", "I'LL SHOUT, YOU'RE LOUD", "'s 't 're 've 'm 'll 'd",
        "''s", "rock'n'roll", "O'Neil's", "'tis the season", "can't won't shan't",
        "quotes \u2019s not ascii\u2019re", "'", "''", "' '", "x'", "'x",
        # whitespace runs
        " ", "  ", "   ", "    ", "\t", "\n", "\r\n", "\n\n", " \n ", "\t\t\t",
        " leading space", "  two leading spaces", "   three leading spaces",
        "trailing space ", "trailing spaces   ", "multiple   spaces   inside",
        "tab\tseparated\tvalues", "line one\nline two\nline three", "para one\n\npara two",
        "  both sides  ", "\tindented with tab", "\n\nleading newlines", "trailing newline\n",
        "mixed \t \n whitespace", "a  b", "a   b", "a    b", "a \n b", "a\n\n\nb", "a \t b",
        "  \t  ", " a", "a ", " a ", "  a  ", "    code:\n        return x\n",
        "def f(x):\n    return x * 2\n", "windows\r\nline\r\nendings\r\n", "\u00a0nbsp\u00a0",
        "ideographic\u3000space", "em\u2003space", "line\u2028separator", "vertical\x0btab",
        "form\x0cfeed", "zero\u200bwidth space", "ends with tab\t", "\t\tstarts", " \t",
        # digits
        "0", "1", "42", "123", "1234", "12345", "123456789", "3.14159", "2023-10-05",
        "+1 (555) 123-4567", "1,000,000", "99 bottles of beer", "0x1F 0b1010 1e-5",
        "version 1.2.3", "The year 1999 and 2000.", "2+2=4", "10%", "$100.00",
        " 7", "007", "3rd 4th 21st", "\u0663\u0664\u0665 arabic-indic digits", "\u00b2\u00b3 \u00bd \u2167",
        "\uff11\uff12\uff13 fullwidth digits",
        # punctuation and symbols
        "!", "?", "...", "!!!", "?!", "--", "---", "@user #hashtag", "a-b_c.d/e\\f",
        "foo@example.com", "https://example.com/path?q=1&r=2#frag", "C:\\Windows\\System32",
        "x = y + z; // comment", "if (a && b) { return; }", "<html><body>hi</body></html>",
        "~`!@#$%^&*()_+-={}[]|\\:;\"'<>,.?/", "\u00a9 2024 \u00ae \u2122", "\u201cquoted\u201d \u2018single\u2019",
        "\u00bfQu\u00e9? \u00a1S\u00ed!", "em\u2014dash en\u2013dash", "\u2026 ellipsis", "\u00ab guillemets \u00bb",
        "bullet \u2022 point", "\u2192 \u2190 \u2191 \u2193", "\u221e \u2211 \u222b \u221a", "\u20ac5 \u00a33 \u00a51",
        "<s>", "</s>", "<unk>", "<|endoftext|>", "<0x41>", "\u2581", "\u2581\u2581 lower one eighth block",
        # emoji
        "\U0001F600", "\U0001F600\U0001F601\U0001F602", "I love \U0001F355 and \U0001F363!",
        "\U0001F44D\U0001F3FD thumbs up with skin tone", "\U0001F468\u200d\U0001F469\u200d\U0001F467 family",
        "\U0001F1FA\U0001F1F8 flag", "\u2764\ufe0f heart", "\U0001F680 launch \U0001F525\U0001F525", "singing outloud!! you!!!",
        "thethe hehe the he",
        "emoji\U0001F600between", " \U0001F600 ", "\u263a", "\U0001FAE0 melting face",
        # Korean
        "\uc548\ub155\ud558\uc138\uc694", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
        "\uc800\ub294 \ud559\uc0dd\uc785\ub2c8\ub2e4", "\uc11c\uc6b8\uc740 \ud55c\uad6d\uc758 \uc218\ub3c4\uc785\ub2c8\ub2e4.",
        "\uac00\ub098\ub2e4\ub77c\ub9c8\ubc14\uc0ac", "\u1100\u1161 jamo", "\u3131\u314f compatibility jamo",
        # Chinese / Japanese
        "\u4f60\u597d", "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8",
        "\u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002",
        "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c", "\u30ab\u30bf\u30ab\u30ca \u3072\u3089\u304c\u306a",
        "\u6771\u4eac\u90fd", "\U00020000 ext-b ideograph", "\u9f98",
        # other scripts
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
        "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0", "\u0532\u0561\u0580\u0565\u0582",
        "\u12e0\u12f0\u12cd", "\u1019\u1004\u103a\u1039\u1002\u101c\u102c\u1015\u102b",
        "caf\u00e9 na\u00efve r\u00e9sum\u00e9", "cafe\u0301 combining accent", "Stra\u00dfe", "\u00c5ngstr\u00f6m",
        "\u0130stanbul \u0131", "\ufb01 ligature", "\uff21\uff22\uff23 fullwidth", "\u2460\u2461\u2462 circled",
        "\U0001D400\U0001D401 math bold", "\u00e6\u00f8\u00e5 \u00c6\u00d8\u00c5",
        "Z\u0351\u036b\u0343a\u0352\u0310l\u0300\u0308g\u0307o\u0350", "\u1e9e capital sharp s",
        # mixed scripts
        "Hello \uc548\ub155 \u4f60\u597d \u041f\u0440\u0438\u0432\u0435\u0442 \U0001F44B",
        "English\u4e2d\u6587\ud55c\uad6d\uc5b4\u65e5\u672c\u8a9e", "abc123\u4e2d\u6587456",
        "price: 100\u5143 (about $14)", "\ud55c\uad6d 2024\ub144 10\uc6d4", "Tokyo \u6771\u4eac 2020",
        "x\u00b2 + y\u00b2 = z\u00b2", "\u03b1\u03b2\u03b3 alpha beta gamma", "\u00a0\u3000 mixed spaces \u2003",
        "MiXeD CaSe WoRdS", "camelCaseIdentifier snake_case_identifier kebab-case-identifier",
        "e.g. i.e. etc.", "Mr. Smith went to Washington.", "U.S.A.", "A.I. and M.L.",
        "ALLCAPS lowercase Titlecase", "a1b2c3", "1a2b3c", "\u00bc cup of sugar",
        "tab\t\u4e2d\u6587\ttab", "newline\n\ud55c\uad6d\uc5b4\nnewline", " \U0001F600\t\u4e2d ",
    ]
    # Systematic whitespace around words, digits and punctuation.
    for ws in [" ", "  ", "\t", "\n", " \n", "\n ", "   "]:
        for w in ["word", "42", "!", "\u4e2d", "\U0001F600"]:
            s.append(ws + w + ws + w + ws)
    return s


def model_info(path):
    m = model_pb2.ModelProto()
    with open(path, "rb") as f:
        m.ParseFromString(f.read())
    n = m.normalizer_spec
    return {
        "normalizer": n.name,
        "add_dummy_prefix": n.add_dummy_prefix,
        "remove_extra_whitespaces": n.remove_extra_whitespaces,
        "byte_fallback": m.trainer_spec.byte_fallback,
    }


# Byte strings that are not UTF-8: the oracle replaces each bad byte with U+FFFD.
BAD_UTF8 = [b"ab\xffcd", b"\xe2\x82a", b"\xed\xa0\x80a", b"\xc0\xaf", b"\xf4\x90\x80\x80",
            b"\xf0\x9f\x98", b"\x80\x80a", b"a\x00b", b"\xfe\xff", b"ok \xe4\xb8 bad"]


# Variants of tok512.model that exercise what the stock models do not: unused pieces (split
# back after merging), user-defined pieces (matched whole), and other normalizer settings. The
# test builds them from vectors, as GGUF's tokenizer.ggml.* arrays would give them.
VARIANTS = {
    "tok512_types": {"unused": ["he", "\u2581the"], "user_defined": ["ing", "ou", "!!"],
                     "add_dummy_prefix": True, "remove_extra_whitespaces": False},
    "tok512_no_prefix": {"unused": [], "user_defined": [],
                         "add_dummy_prefix": False, "remove_extra_whitespaces": True},
}


def variant_goldens(base_path, strings, spec, tmp_path):
    m = model_pb2.ModelProto()
    with open(base_path, "rb") as f:
        m.ParseFromString(f.read())
    for p in m.pieces:
        if p.piece in spec["unused"]:
            p.type = model_pb2.ModelProto.SentencePiece.UNUSED
        if p.piece in spec["user_defined"]:
            p.type = model_pb2.ModelProto.SentencePiece.USER_DEFINED
    for piece in spec["user_defined"]:
        if not any(p.piece == piece for p in m.pieces):
            m.pieces.add(piece=piece, score=0.0, type=model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    m.normalizer_spec.add_dummy_prefix = spec["add_dummy_prefix"]
    m.normalizer_spec.remove_extra_whitespaces = spec["remove_extra_whitespaces"]
    with open(tmp_path, "wb") as f:
        f.write(m.SerializeToString())
    sp = spm.SentencePieceProcessor(model_file=tmp_path)
    os.remove(tmp_path)
    ids = [sp.encode(x) for x in strings]
    return {
        "add_dummy_prefix": spec["add_dummy_prefix"],
        "remove_extra_whitespaces": spec["remove_extra_whitespaces"],
        "pieces": [p.piece for p in m.pieces],
        "scores": [p.score for p in m.pieces],
        "types": [int(p.type) for p in m.pieces],  # the proto's values are GGUF's
        "ids": ids,
        "decoded": [sp.decode(i) for i in ids],
    }


def main():
    strings = corpus()
    assert len(strings) >= 200, len(strings)
    assert len(set(strings)) == len(strings), "duplicate corpus strings"
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(strings, f, ensure_ascii=False, indent=0)
        f.write("\n")
    goldens = {}
    for name, rel in [("tok512", "stories260K/tok512.model"),
                      ("llama2", "llama2-tokenizer/tokenizer.model")]:
        path = os.path.join(MODELS, rel)
        sp = spm.SentencePieceProcessor(model_file=path)
        info = model_info(path)
        ids = [sp.encode(x) for x in strings]
        info["ids"] = ids
        info["decoded"] = [sp.decode(i) for i in ids]
        info["bad_utf8"] = [{"hex": b.hex(), "ids": sp.encode(b)} for b in BAD_UTF8]
        info["bos_id"], info["eos_id"], info["unk_id"] = sp.bos_id(), sp.eos_id(), sp.unk_id()
        goldens[name] = info
        print(name, info["normalizer"], "dummy_prefix", info["add_dummy_prefix"],
              "remove_extra_ws", info["remove_extra_whitespaces"],
              "tokens", sum(len(i) for i in ids), file=sys.stderr)
    for name, spec in VARIANTS.items():
        goldens[name] = variant_goldens(os.path.join(MODELS, "stories260K/tok512.model"), strings,
                                        spec, os.path.join(OUT, name + ".model.tmp"))
    with open(os.path.join(OUT, "sentencepiece_goldens.json"), "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(len(strings), "strings", file=sys.stderr)


if __name__ == "__main__":
    main()

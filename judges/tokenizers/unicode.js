// Probes the Unicode tables that Hugging Face tokenizers uses, for
// tokenizer/gen_unicode.go: the regex classes of Split patterns (Oniguruma)
// and the normalization data of its NFD/NFKD (unicode-normalization).
// Prints JSON: {"classes": {"L": [[lo, hi], ...], ...},
//               "nfd": {cp: "..."}, "nfkd": {cp: "..."}, "reorders": [cp, ...],
//               "lower": {cp: "..."}}
// where nfd/nfkd list the code points that do not map to themselves and
// reorders those c for which NFD(c U+0334) is not c U+0334 with c's own NFD,
// i.e. whose combining class is above 1.
'use strict';
const t = require('tokenizers');

function splitter(cls) {
  const json = {
    version: '1.0', added_tokens: [], normalizer: null, post_processor: null, decoder: null,
    pre_tokenizer: { type: 'Split', pattern: { Regex: `\\p{${cls}}` }, behavior: 'Removed', invert: false },
    model: { type: 'WordLevel', vocab: { a: 0 }, unk_token: 'a' },
  };
  return t.Tokenizer.fromString(JSON.stringify(json)).getPreTokenizer();
}

const classes = {};
for (const cls of ['L', 'N', 'M', 'P', 'S', 'Nd']) {
  const pt = splitter(cls);
  const ranges = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const c = String.fromCodePoint(cp);
    const pieces = pt.preTokenizeString('\u0000' + c + '\u0000');
    const hit = pieces.length === 2; // c removed, the two NULs left
    if (!hit) continue;
    const last = ranges[ranges.length - 1];
    if (last && last[1] === cp - 1) last[1] = cp;
    else ranges.push([cp, cp]);
  }
  classes[cls] = ranges;
}

const nfdN = t.nfdNormalizer(), nfkdN = t.nfkdNormalizer(), lowerN = t.lowercase();
const nfd = {}, nfkd = {}, reorders = [], lower = {};
for (let cp = 0x80; cp <= 0x10ffff; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  const c = String.fromCodePoint(cp);
  const d = nfdN.normalizeString(c);
  if (d !== c) nfd[cp] = d;
  const k = nfkdN.normalizeString(c);
  if (k !== c) nfkd[cp] = k;
  if (nfdN.normalizeString(c + '\u0334') !== d + '\u0334') reorders.push(cp);
  const l = lowerN.normalizeString(c);
  if (l !== c) lower[cp] = l;
}
process.stdout.write(JSON.stringify({ classes, nfd, nfkd, reorders, lower }) + '\n');

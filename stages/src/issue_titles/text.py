"""Text <-> ids: one standardisation for bodies and titles, vocabularies as plain token lists, copy ids.

Tokens are lower-cased words; dots, slashes, dashes and underscores inside a word are kept
(`helm.v4.chart`, `yaml/v2`, `skip_await`) so that identifiers survive as one token the copy mechanism can
reuse; other punctuation separates words. Vocabularies are lists whose index is the id: 0 is padding (""),
1 is the out-of-vocabulary token ("[UNK]"); title vocabularies also hold the start/end markers.

Bodies are cleaned first (`clean_body`): pull-request templates put the same headings ("## Summary", "## Which
issue does this PR close?", "**Description:**") and checkboxes at the start of thousands of bodies, and links,
images and HTML add nothing a title reuses. Removing them lets both the model and the lead baselines start at the
text the author wrote.

"Copy" ids put body tokens into the title's id space: a body token that is in the title vocabulary keeps its
title id; one that is not gets `title_vocab_size + p`, where p is the position of its first occurrence in the
(truncated) body. A title token gets the same treatment, so a title word missing from the vocabulary can still
be produced by pointing at the body.
"""

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PAD, UNK = "", "[UNK]"
START, END = "_start_", "_end_"  # standardize() strips edge underscores, so no real word can collide
STANDARDIZATION = "issue_titles.text.standardize/v2"  # v2: bodies go through clean_body first
MAX_CHARS = 20_000  # bodies are cut here before tokenising: only the first few dozen tokens are ever used


# Template headings seen across the data set's repositories; matched right after a Markdown heading or bold marker.
TEMPLATE_HEADINGS = (
    "what changes are included in this pr", "which issue does this pr close", "rationale for this change",
    "are there any user-facing changes", "are these changes tested", "release notes summary",
    "what our users need to know", "tasks after submitting", "user-facing changes", "describe your changes",
    "github issue link", "link to tracking issue", "motivation and context", "how was this tested",
    "how did you test it", "how has this been tested", "what this pr does", "what does this pr do",
    "proposed changes", "changes proposed", "changes made", "test plan", "testing plan", "testing done",
    "related issues", "related issue", "issue link", "potential risks", "is hotfix candidate", "screenshots",
    "summary", "description", "motivation", "overview", "changes", "change", "context", "background", "problem",
    "solution", "rationale", "details", "notes", "note", "purpose", "tl;dr", "tldr", "testing", "tests",
    "checklist", "documentation", "what changed", "why", "fixes", "closes",
)  # fmt: skip
_HEADING_MARK = r"(?:#{1,6}|\*\*)[ \t]*"
_CLEANERS = (
    (re.compile(r"<!--.*?(?:-->|$)", re.S), " "),  # HTML comments (template instructions), unclosed ones too
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), " "),  # images
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # links keep their text
    (re.compile(r"</?[a-zA-Z][^>]{0,200}>"), " "),  # HTML tags
    (re.compile(r"https?://\S+"), " "),  # bare URLs
    (
        re.compile(
            r"(?:^|\s)"
            + _HEADING_MARK
            + r"(?:"
            + "|".join(re.escape(h) for h in TEMPLATE_HEADINGS)
            + r")(?:\s*\(if applicable\))?\s*[?:]?(?:\*\*)?(?=\s|$)",
            re.I,
        ),
        " ",
    ),
    (re.compile(r"(?:^|\s)" + _HEADING_MARK + r"[^#*?:\n]{1,60}?[?:](?:\*\*)?(?=\s|$)"), " "),  # "## Why?", "**Risk:**"
    (re.compile(r"(?:^|\s)(?:#{1,6}|\*\*|[-*] \[[ xX]\]|\[[ xX]\])(?=\s|$)"), " "),  # leftover marks, checkboxes
)


def clean_body(text: str) -> str:
    """A body without template headings, checkboxes, links' targets, images, HTML and URLs; words kept in order.

    Pure and cheap (a few regular expressions), applied to training bodies, served bodies and the baselines alike.
    """
    text = text[:MAX_CHARS]
    for pattern, replacement in _CLEANERS:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


@dataclass(frozen=True)
class TextConfig:
    """The sizes pre_process used; recorded in preprocess.json and needed to encode new text the same way."""

    # Small vocabularies generalise: with 20,000 body words the encoder learns the training repositories' own
    # identifiers as words while an unseen repository's are [UNK], and a large title vocabulary lets the decoder write
    # their words from memory instead of copying the body's. 4,000 / 3,000 scored best on unseen repositories of the
    # sizes tried (20,000 / 8,000 / 4,000 / 2,500 body words; stages/README.md, variants table).
    body_vocab_size: int = 4000
    body_length: int = 60  # tokens after clean_body; the title's words are nearly always among the first 60
    title_vocab_size: int = 3000
    title_length: int = 12
    standardization: str = STANDARDIZATION
    # With trigrams_per_token > 0 each body token also enters the encoder as its spelling: the hashed character
    # trigrams of "<token>" (the first `trigrams_per_token` of them, into ids 1 .. trigram_buckets - 1; fastText-style),
    # so an identifier the body vocabulary lacks is more than [UNK], and `kvcache` and `kv_cache` look alike. Off by
    # default: with 10 per token it gained on the training repositories but not on unseen ones (stages/README.md,
    # variants table). A preprocess.json written before the option existed reads as 0.
    trigrams_per_token: int = 0
    trigram_buckets: int = 30_000

    def as_dict(self) -> dict:
        return asdict(self)


def trigram_settings(fields: dict) -> tuple[int, int]:
    """(trigrams_per_token, trigram_buckets) as a preprocess.json records them: both 0 for one written before the
    option existed, buckets 0 whenever there are no trigrams. ValueError for anything else than whole numbers >= 0
    with at least 2 buckets when there are trigrams."""
    per_token, buckets = fields.get("trigrams_per_token", 0), fields.get("trigram_buckets", 0)
    if not all(type(value) is int and value >= 0 for value in (per_token, buckets)) or (per_token and buckets < 2):
        raise ValueError(f"trigrams_per_token {per_token!r} / trigram_buckets {buckets!r}: expected whole numbers, "
                         "and at least 2 buckets when there are trigrams")  # fmt: skip
    return per_token, buckets if per_token else 0


def token_trigrams(tokens, per_token: int, buckets: int):  # tf.Tensor[string] (B, L) -> tf.Tensor[int32] (B, L, K)
    """Hashed character trigrams of "<token>", the first `per_token` of them, as ids 1 .. buckets - 1 (TensorFlow's
    stable FarmHash, so ids are the same on every machine); 0 pads short tokens, and a padding token is all zeros."""
    import tensorflow as tf

    if per_token == 0:  # trigrams off: an empty last axis keeps every caller's shapes the same
        return tf.zeros(tf.concat([tf.shape(tokens), [0]], axis=0), tf.int32)
    marked = tf.strings.join(["<", tokens, ">"])
    grams = tf.strings.ngrams(tf.strings.unicode_split(marked, "UTF-8"), 3, separator="", preserve_short_sequences=True)
    dense = grams.to_tensor(default_value="", shape=tf.concat([tf.shape(tokens), [per_token]], axis=0))
    ids = tf.cast(tf.strings.to_hash_bucket_fast(dense, buckets - 1) + 1, tf.int32)
    return tf.where(tf.logical_and(dense != "", (tokens != PAD)[..., None]), ids, 0)


def standardize(texts):  # tf.Tensor[string] -> tf.Tensor[string]
    """Lower-case, keep letters/digits and in-word `._/-`, turn everything else into single spaces."""
    import tensorflow as tf

    texts = tf.strings.substr(texts, 0, MAX_CHARS, unit="UTF8_CHAR")
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, r"['\x{2019}`]", "")
    texts = tf.strings.regex_replace(texts, r"[^\p{L}\p{N}._/\-]+", " ")
    texts = tf.strings.regex_replace(texts, r"(^|\s)[._/\-]+", " ")
    texts = tf.strings.regex_replace(texts, r"[._/\-]+(\s|$)", " ")
    return tf.strings.strip(texts)


def fit_vocabulary(standardized: Sequence[str], max_tokens: int) -> list[str]:
    """Most frequent tokens first, with "" and "[UNK]" at ids 0 and 1 (keras TextVectorization.adapt)."""
    import keras
    import tensorflow as tf

    if max_tokens < 3:
        raise ValueError(f"a vocabulary needs room for padding, [UNK] and one word; got max_tokens={max_tokens}")
    layer = keras.layers.TextVectorization(max_tokens=max_tokens, standardize=None, split="whitespace")
    layer.adapt(tf.data.Dataset.from_tensor_slices(list(standardized)).batch(2048))
    vocabulary = [str(token) for token in layer.get_vocabulary()]
    if vocabulary[:2] != [PAD, UNK]:
        raise AssertionError(f"unexpected reserved tokens {vocabulary[:2]}")
    return vocabulary


def title_with_markers(standardized_titles, title_length: int):  # tf.Tensor[string] -> tf.Tensor[string]
    """`_start_ w1 .. wk _end_` with k <= title_length - 2, so the end marker always fits."""
    import tensorflow as tf

    words = tf.strings.split(standardized_titles)[:, : title_length - 2]
    return tf.strings.join([START, tf.strings.reduce_join(words, axis=1, separator=" "), END], separator=" ")


class TextEncoder:
    """Encodes bodies and titles with fixed vocabularies; decodes model output ids back to words."""

    def __init__(self, body_vocab: list[str], title_vocab: list[str], config: TextConfig) -> None:
        import keras
        import tensorflow as tf

        for name, vocab in (("body", body_vocab), ("title", title_vocab)):
            if vocab[:2] != [PAD, UNK]:
                raise ValueError(f"{name} vocabulary must start with '' and '[UNK]', got {vocab[:2]}")
        if START not in title_vocab or END not in title_vocab:
            raise ValueError("title vocabulary lacks the start/end markers")
        self.body_vocab = body_vocab
        self.title_vocab = title_vocab
        self.config = config
        self.start_id = title_vocab.index(START)
        self.end_id = title_vocab.index(END)

        def vectorizer(vocab: list[str], length: int):
            return keras.layers.TextVectorization(
                standardize=None, split="whitespace", vocabulary=vocab[2:], output_sequence_length=length
            )

        self._body_ids = vectorizer(body_vocab, config.body_length)
        self._body_title_ids = vectorizer(title_vocab, config.body_length)
        self._title_ids = vectorizer(title_vocab, config.title_length)
        self._title_array = np.array(title_vocab, dtype=object)
        # Eager, the ~20 string ops below cost ~3 ms of Python dispatch per call whatever the batch size: a third
        # of serving one body. Compiled once (any batch size), one body encodes in ~0.4 ms, to the same ids.
        self._encode_compiled = tf.function(self._encode_tensors, input_signature=[tf.TensorSpec([None], tf.string)])

    @property
    def title_vocab_size(self) -> int:
        return len(self.title_vocab)

    def body_tokens(self, standardized_bodies):  # -> tf.Tensor[string] (B, body_length), "" padded
        import tensorflow as tf

        tokens = tf.strings.split(standardized_bodies)[:, : self.config.body_length]
        return tokens.to_tensor(default_value=PAD, shape=[None, self.config.body_length])

    def encode_bodies(self, bodies: Sequence[str]) -> dict[str, np.ndarray]:
        """`body` (body-vocab ids), `body_copy` (copy ids), `body_grams` (each token's trigram ids, (B, L, K); K is 0
        without trigrams) and `body_tokens` (the words, for decoding)."""
        import tensorflow as tf

        cleaned = [clean_body(body) for body in bodies]
        body, copy, grams, tokens = self._encode_compiled(tf.constant(cleaned, dtype=tf.string))
        return {
            "body": body.numpy(),
            "body_copy": copy.numpy(),
            "body_grams": grams.numpy(),
            "body_tokens": tokens.numpy().astype(object),
        }

    def _encode_tensors(self, bodies):  # tf.Tensor[string] (B,) -> (body ids, copy ids, trigram ids, tokens)
        import tensorflow as tf

        standardized = standardize(bodies)
        tokens = self.body_tokens(standardized)
        body = self._body_ids(standardized)
        in_title_vocab = self._body_title_ids(standardized)
        same = tf.equal(tokens[:, :, None], tokens[:, None, :])
        first = tf.argmax(tf.cast(same, tf.int32), axis=2, output_type=tf.int32)
        copy = tf.where(in_title_vocab == 1, self.title_vocab_size + first, tf.cast(in_title_vocab, tf.int32))
        copy = tf.where(tokens == PAD, 0, copy)
        grams = token_trigrams(tokens, self.config.trigrams_per_token, self.config.trigram_buckets)
        return tf.cast(body, tf.int32), tf.cast(copy, tf.int32), grams, tokens

    def encode_titles(self, titles: Sequence[str], body_tokens: np.ndarray) -> dict[str, np.ndarray]:
        """`title` (title-vocab ids with markers) and `title_copy` (unknown words that the body holds -> copy ids)."""
        import tensorflow as tf

        marked = title_with_markers(standardize(tf.constant(list(titles), dtype=tf.string)), self.config.title_length)
        ids = tf.cast(self._title_ids(marked), tf.int32)
        words = tf.strings.split(marked).to_tensor(default_value=PAD, shape=[None, self.config.title_length])
        body_tokens = tf.constant(body_tokens)  # an object array of bytes: no fixed-width copy of long tokens
        match = tf.logical_and(tf.equal(words[:, :, None], body_tokens[:, None, :]), body_tokens[:, None, :] != PAD)
        first = tf.argmax(tf.cast(match, tf.int32), axis=2, output_type=tf.int32)
        copy = tf.where(tf.logical_and(ids == 1, tf.reduce_any(match, axis=2)), self.title_vocab_size + first, ids)
        return {"title": ids.numpy(), "title_copy": copy.numpy().astype(np.int32)}

    def decode(self, ids: np.ndarray, body_tokens: np.ndarray) -> list[str]:
        """Ids (title vocab or copy ids) -> titles; stops at the end marker, drops padding and markers."""
        titles = []
        vocab_size = self.title_vocab_size
        for row, tokens in zip(np.asarray(ids), body_tokens, strict=True):
            words = []
            for token_id in row:
                token_id = int(token_id)
                if token_id == self.end_id:
                    break
                if token_id >= vocab_size:
                    word = tokens[token_id - vocab_size]
                    word = word.decode("utf-8", errors="replace") if isinstance(word, bytes) else str(word)
                else:
                    word = self.title_vocab[token_id]
                if word in (PAD, UNK, START, END):
                    continue
                words.append(word)
            titles.append(" ".join(words))
        return titles

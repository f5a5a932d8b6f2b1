"""The two seq2seq architectures, rebuilt in code from model.json (weights alone come from the .h5 file).

`tutorial`: the original tutorial's model, layer for layer — embeddings and GRUs of 300, batch-norm, a softmax
over the title vocabulary, the encoder's last state as the decoder's first state.

`pointer_generator` (the default): a bidirectional GRU encoder, a GRU decoder with Luong attention over the
encoder states and a copy switch (See et al., 2017): each output word is either generated from the title
vocabulary or copied from a body position, so titles can reuse body words even when they are rare identifiers.

Both expose the same three calls the decoders use: `encode` (once per body), `step` (one token for a batch, over
the whole output space), and `call` (teacher-forced training output). Bodies come as word ids, copy ids and each
token's character-trigram ids (`text.token_trigrams`); the pointer-generator adds the mean of a token's trigram
embeddings to its word embedding, the tutorial's model reads the word ids only.
"""

import keras
from keras import layers, ops

from issue_titles.model_config import (  # defined without TensorFlow there; importable from here too
    ARCHITECTURE_ALIASES,
    DEFAULT_ARCHITECTURE,
    POINTER_GENERATOR,
    TUTORIAL,
    ModelConfig,
    resolve_architecture,
)

__all__ = [
    "ARCHITECTURE_ALIASES",
    "DEFAULT_ARCHITECTURE",
    "POINTER_GENERATOR",
    "TUTORIAL",
    "ModelConfig",
    "PointerGenerator",
    "Seq2SeqModel",
    "TutorialSeq2Seq",
    "build_model",
    "resolve_architecture",
]

NEG_INF = -1e9


def build_model(
    config: ModelConfig, unroll: bool = False, label_smoothing: float = 0.0, word_dropout: float = 0.0
) -> "Seq2SeqModel":
    """A built (weights created) model for `config`; call `load_weights` on it to restore a trained one.

    `unroll` (pointer_generator only) unrolls its GRUs over the fixed body and title lengths: with XLA a long
    training runs ~15% faster on a CPU, but compiling the unrolled graph takes minutes, so only large trainings
    ask for it. `label_smoothing` (pointer_generator only) is a training setting: the model's training output
    then carries the term its `training_loss` needs. So is `word_dropout` (pointer_generator only): in training a
    body word enters the encoder as [UNK] with that probability, its trigrams and copy id kept. The weights are the
    same either way."""
    architecture = resolve_architecture(config.architecture)
    if architecture == POINTER_GENERATOR:
        model = PointerGenerator(config, unroll=unroll, label_smoothing=label_smoothing, word_dropout=word_dropout)
    elif label_smoothing or word_dropout:
        raise ValueError("label smoothing and word dropout are implemented for the pointer_generator architecture only")
    else:
        model = TutorialSeq2Seq(config)
    model.build_weights()
    return model


class Seq2SeqModel(keras.Model):
    """Common interface of both architectures."""

    def __init__(self, config: ModelConfig, **kwargs) -> None:
        super().__init__(name=config.architecture, **kwargs)
        self.config = config

    def build_weights(self) -> None:
        """Create every weight by running one small batch through training and decoding paths: two body tokens and
        two title tokens, since no weight's shape depends on the lengths (the transformer's position table is sized
        from the config), and this eager pass runs for every model built or loaded. (Two, not one: Keras warns about
        a softmax over an axis of size one.)"""
        body = ops.ones((1, min(2, self.config.body_length)), dtype="int32")
        title = ops.ones((1, min(2, self.config.title_length - 1)), dtype="int32")
        inputs = {
            "body": body,
            "body_copy": body,
            "body_grams": ops.ones((*body.shape, self.config.trigrams_per_token), dtype="int32"),
            "decoder_input": title,
            "target": title,
        }
        self(inputs, training=False)

    def encode(self, body, body_copy, body_grams=None, training: bool = False):
        """(B, L) word ids, (B, L) copy ids, (B, L, K) trigram ids -> (memory for attention/copying, first state)."""
        raise NotImplementedError

    def step(self, tokens, memory, state, copy_bias: float = 1.0):
        """(B,) previous tokens -> ((B, output_size) scores, next state); greedy decoding takes the argmax.
        `copy_bias` (pointer_generator only) multiplies the odds of copying over generating (see PointerGenerator):
        a float, or a float32 scalar tensor when a compiled decoder passes it as its input."""
        raise NotImplementedError

    def training_loss(self):
        """The loss `fit` minimises on this model's training output."""
        raise NotImplementedError


class TutorialSeq2Seq(Seq2SeqModel):
    """Tutorial model: y_t = softmax(BN(GRU_dec(BN(emb(y_<t)); h0 = GRU_enc(BN(emb(body)))))."""

    def __init__(self, config: ModelConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        size = config.hidden_dim
        self.body_embedding = layers.Embedding(config.body_vocab_size, config.embedding_dim, name="body_embedding")
        self.encoder_bn = layers.BatchNormalization(name="encoder_bn")
        self.encoder_gru = layers.GRU(size, return_state=True, name="encoder_gru")
        self.title_embedding = layers.Embedding(config.title_vocab_size, config.embedding_dim, name="title_embedding")
        self.decoder_bn = layers.BatchNormalization(name="decoder_bn")
        self.decoder_gru = layers.GRU(size, return_sequences=True, return_state=True, name="decoder_gru")
        self.output_bn = layers.BatchNormalization(name="output_bn")
        self.output_dense = layers.Dense(config.title_vocab_size, activation="softmax", name="output_dense")

    def encode(self, body, body_copy=None, body_grams=None, training: bool = False):
        embedded = self.encoder_bn(self.body_embedding(body), training=training)
        _, state = self.encoder_gru(embedded, training=training)
        return {}, state

    def _decode(self, tokens, state, training: bool):
        embedded = self.decoder_bn(self.title_embedding(tokens), training=training)
        sequence, state = self.decoder_gru(embedded, initial_state=state, training=training)
        return self.output_dense(self.output_bn(sequence, training=training)), state

    def call(self, inputs, training: bool = False):
        _, state = self.encode(inputs["body"], training=training)
        probabilities, _ = self._decode(inputs["decoder_input"], state, training)
        return probabilities

    def step(self, tokens, memory, state, copy_bias: float = 1.0):
        # A compiled decoder hands every model its copy bias as a tensor (1.0 here: the predictor refuses others).
        if not ops.is_tensor(copy_bias) and copy_bias != 1.0:
            raise ValueError(
                "copy_bias applies to the pointer_generator architecture only: the tutorial's model does not copy"
            )
        probabilities, state = self._decode(ops.expand_dims(tokens, 1), state, training=False)
        return probabilities[:, 0, :], state

    def training_loss(self):
        # As in the tutorial: plain cross-entropy over every position, padding included.
        return keras.losses.SparseCategoricalCrossentropy()


class PointerGenerator(Seq2SeqModel):
    """Attention seq2seq with a copy switch; trained on P(target) = g·P_vocab + (1-g)·Σ attention on copies."""

    def __init__(
        self,
        config: ModelConfig,
        unroll: bool = False,
        label_smoothing: float = 0.0,
        word_dropout: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(config, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        self.word_dropout = float(word_dropout)
        self._word_dropout_seed = keras.random.SeedGenerator() if word_dropout else None
        # With smoothing, `call` returns [P(target), spread] per position instead of P(target): see training_loss.
        self.label_smoothing = float(label_smoothing)
        size = config.hidden_dim
        self.body_embedding = layers.Embedding(config.body_vocab_size, config.embedding_dim, name="body_embedding")
        self.trigram_embedding = None
        if config.trigrams_per_token:
            self.trigram_embedding = layers.Embedding(
                config.trigram_buckets, config.embedding_dim, name="trigram_embedding"
            )
        if config.encoder == "bigru":
            self.encoder = layers.Bidirectional(
                layers.GRU(size // 2, return_sequences=True, return_state=True, unroll=unroll), name="encoder_bigru"
            )
        elif config.encoder == "transformer":
            self.encoder = TransformerEncoder(config, name="encoder_transformer")
        else:
            raise ValueError(f"unknown encoder '{config.encoder}' (choose from bigru, transformer)")
        self.bridge = layers.Dense(size, activation="tanh", name="bridge")
        self.attention_keys = layers.Dense(size, use_bias=False, name="attention_keys")
        self.title_embedding = layers.Embedding(config.title_vocab_size, config.embedding_dim, name="title_embedding")
        self.decoder_gru = layers.GRU(size, return_sequences=True, return_state=True, unroll=unroll, name="decoder_gru")
        self.attentional = layers.Dense(size, activation="tanh", name="attentional")
        self.dropout = layers.Dropout(config.dropout, name="dropout")
        # The output distribution, the copy gate and the attention are computed in float32 even under a mixed
        # float16 policy (GPU training): the loss mixes and logs small probabilities, and -1e9 masks overflow float16.
        self.vocab_logits = layers.Dense(config.title_vocab_size, dtype="float32", name="vocab_logits")
        self.generate_gate = layers.Dense(1, activation="sigmoid", dtype="float32", name="generate_gate")

    def encode(self, body, body_copy, body_grams=None, training: bool = False):
        body = ops.cast(body, "int32")
        mask = ops.not_equal(body, 0)
        if training and self.word_dropout:
            dropped = keras.random.uniform(ops.shape(body), seed=self._word_dropout_seed) < self.word_dropout
            body = ops.where(ops.logical_and(dropped, body > 1), 1, body)  # a word becomes [UNK]; padding stays
        embedded = self.body_embedding(body)
        if self.trigram_embedding is not None:  # + the mean of the token's trigram embeddings (padding: none)
            body_grams = ops.cast(body_grams, "int32")  # pre_process stores them as int16
            present = ops.cast(ops.not_equal(body_grams, 0), embedded.dtype)[..., None]
            spelled = ops.sum(self.trigram_embedding(body_grams) * present, axis=2)
            embedded = embedded + spelled / ops.maximum(ops.sum(present, axis=2), 1.0)
        embedded = self.dropout(embedded, training=training)
        if self.config.encoder == "transformer":
            states = self.encoder(embedded, mask, training=training)
            weights = ops.cast(mask, states.dtype)[:, :, None]
            summary = ops.sum(states * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        else:
            states, forward, backward = self.encoder(embedded, mask=mask, training=training)
            summary = ops.concatenate([forward, backward], axis=-1)
        memory = {
            "states": states,
            "keys": self.attention_keys(states),
            "bias": ops.cast(ops.where(mask, 0.0, NEG_INF), "float32"),
            "body_copy": ops.cast(body_copy, "int32"),
        }
        return memory, self.bridge(summary)

    def _decode(self, tokens, memory, state, training: bool):
        embedded = self.dropout(self.title_embedding(tokens), training=training)
        sequence, state = self.decoder_gru(embedded, initial_state=state, training=training)
        scores = ops.cast(ops.einsum("btd,bld->btl", sequence, memory["keys"]), "float32") + memory["bias"][:, None, :]
        attention = ops.softmax(scores, axis=-1)
        context = ops.einsum("btl,bld->btd", ops.cast(attention, sequence.dtype), memory["states"])
        hidden = self.attentional(ops.concatenate([sequence, context], axis=-1))
        hidden = self.dropout(hidden, training=training)
        vocab = ops.softmax(self.vocab_logits(hidden), axis=-1)
        generate = self.generate_gate(ops.concatenate([hidden, context, embedded], axis=-1))
        return vocab, attention, generate, state

    def call(self, inputs, training: bool = False):
        memory, state = self.encode(inputs["body"], inputs["body_copy"], inputs.get("body_grams"), training=training)
        vocab, attention, generate, _ = self._decode(inputs["decoder_input"], memory, state, training)
        target = ops.cast(inputs["target"], "int32")
        size = self.config.title_vocab_size
        in_vocab = ops.cast(target < size, vocab.dtype)
        vocab_target = ops.take_along_axis(vocab, ops.expand_dims(ops.minimum(target, size - 1), -1), axis=-1)
        vocab_target = vocab_target[..., 0] * in_vocab
        hits = ops.cast(ops.equal(memory["body_copy"][:, None, :], target[:, :, None]), attention.dtype)
        copy_target = ops.sum(attention * hits, axis=-1)
        generate = generate[..., 0]
        probability = generate * vocab_target + (1.0 - generate) * copy_target
        if not self.label_smoothing:
            return probability
        # Label smoothing (Szegedy et al., 2016): the loss also pays for the mean -log P over the title vocabulary,
        # which keeps the generator from staking everything on the frequent words of the training repositories.
        spread = -ops.mean(ops.log(ops.clip(generate[..., None] * vocab, 1e-9, 1.0)), axis=-1)
        return ops.stack([probability, spread], axis=-1)

    def step(self, tokens, memory, state, copy_bias: float = 1.0):
        """One decoding step. With `copy_bias` F != 1 the copy switch's odds are multiplied by F,
        g' = g / (g + F (1 - g)): F > 1 copies body words more often than the switch learned to on the training
        repositories, which suits bodies whose words the title vocabulary lacks (stages/README.md, "Decoding")."""
        vocab, attention, generate, state = self._decode(ops.expand_dims(tokens, 1), memory, state, training=False)
        generate = generate[:, 0, :]
        if ops.is_tensor(copy_bias):  # a compiled decoder's input: a bias of 1 keeps the switch's g exactly
            bias = ops.cast(copy_bias, generate.dtype)
            generate = ops.where(ops.equal(bias, 1.0), generate, generate / (generate + bias * (1.0 - generate)))
        elif copy_bias != 1.0:  # a Python branch: the default graph stays exactly the unbiased one
            generate = generate / (generate + copy_bias * (1.0 - generate))
        return self.output_scores(vocab[:, 0, :], attention[:, 0, :], generate, memory), state

    def output_scores(self, vocab, attention, generate, memory):
        """(B, output_size) probabilities of one step: generate·P_vocab on the title ids, (1-generate)·attention
        summed onto each body position's copy id."""
        import tensorflow as tf  # the scatter of copy probabilities onto ids is done with a TF segment sum

        batch = tf.shape(vocab)[0]
        width = self.config.output_size
        generated = tf.pad(generate * vocab, [[0, 0], [0, self.config.body_length]])
        slots = memory["body_copy"] + tf.range(batch, dtype=tf.int32)[:, None] * width
        copied = tf.math.unsorted_segment_sum(
            tf.reshape((1.0 - generate) * attention, [-1]), tf.reshape(slots, [-1]), batch * width
        )
        return generated + tf.reshape(copied, [batch, width])

    def training_loss(self):
        label_smoothing = self.label_smoothing
        if not label_smoothing:
            return masked_negative_log_likelihood

        def smoothed_negative_log_likelihood(target, outputs):
            """(1 - e) * -log P(target) + e * mean -log P(word) over the title vocabulary, on real tokens."""
            mask = ops.cast(ops.not_equal(target, 0), outputs.dtype)
            nll = -ops.log(ops.clip(outputs[..., 0], 1e-9, 1.0))
            loss = (1.0 - label_smoothing) * nll + label_smoothing * outputs[..., 1]
            return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)

        return smoothed_negative_log_likelihood


class TransformerEncoder(layers.Layer):
    """Pre-norm Transformer encoder (Vaswani et al., 2017) over the body: learned positions, `encoder_layers` blocks
    of multi-head self-attention and a ReLU feed-forward. Every position is computed at once, so on a CPU it trains
    several times faster than a recurrent encoder over the same 70 tokens."""

    def __init__(self, config: ModelConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        size = config.hidden_dim
        self.project = layers.Dense(size, name="project")
        self.positions = layers.Embedding(config.body_length, size, name="positions")
        self.blocks = []
        for index in range(config.encoder_layers):
            self.blocks.append(
                (
                    layers.LayerNormalization(name=f"attention_norm_{index}"),
                    layers.MultiHeadAttention(
                        config.attention_heads,
                        size // config.attention_heads,
                        dropout=config.dropout / 2,
                        name=f"attention_{index}",
                    ),
                    layers.LayerNormalization(name=f"feed_forward_norm_{index}"),
                    layers.Dense(2 * size, activation="relu", name=f"feed_forward_in_{index}"),
                    layers.Dense(size, name=f"feed_forward_out_{index}"),
                )
            )
        self.final_norm = layers.LayerNormalization(name="final_norm")
        self.dropout = layers.Dropout(config.dropout / 2)

    def call(self, embedded, mask, training: bool = False):
        length = ops.shape(embedded)[1]
        hidden = self.project(embedded) + self.positions(ops.arange(length))[None, :, :]
        attention_mask = ops.logical_and(mask[:, :, None], mask[:, None, :])
        for attention_norm, attention, feed_forward_norm, feed_in, feed_out in self.blocks:
            normed = attention_norm(hidden)
            hidden = hidden + self.dropout(
                attention(normed, normed, attention_mask=attention_mask, training=training), training=training
            )
            hidden = hidden + self.dropout(feed_out(feed_in(feed_forward_norm(hidden))), training=training)
        return self.final_norm(hidden)


def masked_negative_log_likelihood(target, probability_of_target):
    """Mean -log P(target) over the real (non-padding) title tokens."""
    mask = ops.cast(ops.not_equal(target, 0), probability_of_target.dtype)
    nll = -ops.log(ops.clip(probability_of_target, 1e-9, 1.0))
    return ops.sum(nll * mask) / ops.maximum(ops.sum(mask), 1.0)

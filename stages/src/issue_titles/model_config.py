"""What model.json says about a network (`ModelConfig`) and the architecture names, without TensorFlow.

`issue_titles.models` builds the networks from it; reading and checking a bundle (`model_loading.check_bundle`, which
`stages serve` runs before it starts) needs only this, so a refused bundle is refused before TensorFlow is imported.
"""

from dataclasses import asdict, dataclass, fields

TUTORIAL = "tutorial"
POINTER_GENERATOR = "pointer_generator"
DEFAULT_ARCHITECTURE = POINTER_GENERATOR
ARCHITECTURE_ALIASES = {"default": DEFAULT_ARCHITECTURE, TUTORIAL: TUTORIAL, POINTER_GENERATOR: POINTER_GENERATOR}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (stored in model.json)."""

    architecture: str
    body_vocab_size: int
    title_vocab_size: int
    body_length: int
    title_length: int
    embedding_dim: int
    hidden_dim: int
    dropout: float = 0.0
    encoder: str = "bigru"  # pointer_generator only: "bigru" (recurrent) or "transformer" (self-attention layers)
    encoder_layers: int = 2  # transformer encoder only
    attention_heads: int = 4  # transformer encoder only
    trigrams_per_token: int = 0  # the body input's trigram ids per token (text.TextConfig); 0: none
    trigram_buckets: int = 0  # size of the trigram embedding (pointer_generator); 0 when there are no trigrams

    OPTIONAL = ("dropout", "encoder", "encoder_layers", "attention_heads", "trigrams_per_token", "trigram_buckets")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {field.name for field in fields(cls)}
        missing = sorted(known - set(data) - set(cls.OPTIONAL))
        if missing:
            raise ValueError(f"model config lacks {', '.join(missing)}")
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def output_size(self) -> int:
        """Width of a decoding step's scores: the title vocabulary, plus one copy slot per body position."""
        if self.architecture == POINTER_GENERATOR:
            return self.title_vocab_size + self.body_length
        return self.title_vocab_size


def resolve_architecture(name: str) -> str:
    try:
        return ARCHITECTURE_ALIASES[name]
    except KeyError:
        raise ValueError(f"unknown architecture '{name}' (choose from {', '.join(ARCHITECTURE_ALIASES)})") from None

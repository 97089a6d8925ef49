"""Stage 1: LaVIT's dynamic visual tokenizer (selector, merger, quantizer, decoder, loss)."""
from lavit_pl.models.tokenizer.decoder import FeatureDecoder, FeatureDecoderConfig
from lavit_pl.models.tokenizer.losses import TokenizerLoss, TokenizerLossConfig, tokenizer_loss
from lavit_pl.models.tokenizer.merger import TokenMerger, TokenMergerConfig
from lavit_pl.models.tokenizer.quantizer import QuantizerOutput, VectorQuantizer, VectorQuantizerConfig
from lavit_pl.models.tokenizer.selector import SelectorOutput, TokenSelector, TokenSelectorConfig
from lavit_pl.models.tokenizer.tokenizer import (
    DynamicVisualTokenizer,
    DynamicVisualTokenizerConfig,
    TokenizerOutput,
)

__all__ = [
    "DynamicVisualTokenizer", "DynamicVisualTokenizerConfig", "FeatureDecoder", "FeatureDecoderConfig",
    "QuantizerOutput", "SelectorOutput", "TokenMerger", "TokenMergerConfig", "TokenSelector",
    "TokenSelectorConfig", "TokenizerLoss", "TokenizerLossConfig", "TokenizerOutput", "VectorQuantizer",
    "VectorQuantizerConfig", "tokenizer_loss",
]

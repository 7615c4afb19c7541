"""A tiny random-weight Llama with a real byte-level BPE tokenizer and a ChatML chat template.

Built in about a second, no downloads: unit tests of rendering, training and scoring use it.
Every judge label (A, B, tie, yes, no, 1-5) is a single token, as in SmolLM2.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LABEL_WORDS = ["A", "B", "tie", "yes", "no", "1", "2", "3", "4", "5"]


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "The quick brown fox jumps over the lazy dog. Response A is better. Response B is better.",
        "Answer with exactly one label: A, B, tie. yes no 1 2 3 4 5 Instruction Input Summary",
        "You are a careful, impartial judge of AI assistant responses. Judge which response follows.",
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([w for w in LABEL_WORDS if tok.token_to_id(w) is None])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    return fast


def tiny_llama(tokenizer, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    """Write the tiny model and tokenizer as a plain checkpoint directory (loadable by vLLM too)."""
    tok = tiny_tokenizer()
    model = tiny_llama(tok, seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_base_tokenizer():
    """Like Gemma-3-270M's (a base model's) tokenizer: no chat template, ``<bos>``/``<eos>``/``<pad>``, adds no BOS
    by itself; each label after a space (" yes", how ``prompt_format: plain`` answers) is one token."""
    from tokenizers import AddedToken

    fast = tiny_tokenizer()
    fast.chat_template = None
    fast.add_special_tokens({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"})
    fast.add_tokens([AddedToken(" " + w, normalized=False) for w in LABEL_WORDS])
    return fast

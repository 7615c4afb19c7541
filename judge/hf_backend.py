"""The in-process backend: transformers (optionally with a PEFT adapter) on CPU or GPU.

Prompts are padded on the right in length-sorted batches; the output layer is applied only at
each prompt's last real position (the first answer token), which matches full logits and saves
a large share of the pass on small models. Distributions are the softmax over the labels'
first tokens, which is what vLLM's guided choice returns too.
"""

from __future__ import annotations

from collections.abc import Sequence

from data.errors import ModelError
from data.render import Rendered, encode, label_text
from data.spec import JudgeSpec


def label_token_ids(tokenizer, labels: Sequence[str], prompt_format: str = "chat") -> list[int]:
    """The first token of each label as the model would emit it after the prompt (``data.render.label_text``:
    in plain format, after a space); must be distinct."""
    ids = [encode(tokenizer, label_text(lab, prompt_format))[0] for lab in labels]
    if len(set(ids)) != len(ids):
        raise ModelError(f"labels {list(labels)} share a first token in this tokenizer", field="labels")
    return ids


class HFBackend:
    def __init__(self, model, tokenizer, *, batch_tokens: int = 8192, dtype=None, logit_budget: int = 2**26):
        import torch  # deferred: torch takes seconds to import; only this path needs it

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_tokens = batch_tokens
        self.logit_budget = logit_budget  # logits a chunk may compute (2**26 floats: 256 MiB in float32)
        self.autocast_dtype = dtype if dtype in (torch.bfloat16, torch.float16) else None
        self.device = next(model.parameters()).device

    @classmethod
    def load(
        cls,
        model_path: str,
        adapter_path: str | None = None,
        *,
        dtype: str = "float32",
        device: str | None = None,
        batch_tokens: int = 8192,
    ) -> HFBackend:
        import torch  # deferred: torch takes seconds to import; only this path needs it
        from transformers import (  # deferred: transformers takes seconds to import; only this path needs it
            AutoModelForCausalLM,
            AutoTokenizer,
        )

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        try:
            tokenizer = AutoTokenizer.from_pretrained(adapter_path or model_path)
        except (OSError, ValueError):
            tokenizer = AutoTokenizer.from_pretrained(model_path)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                model_path, dtype=torch.float32 if device == "cpu" else torch_dtype
            )
        except OSError as exc:
            raise ModelError(f"cannot load model: {exc}", path=model_path) from None
        if adapter_path:
            from peft import PeftModel  # deferred: PEFT takes seconds to import; only this path needs it

            model = PeftModel.from_pretrained(model, adapter_path)
        model.to(device)
        return cls(model, tokenizer, batch_tokens=batch_tokens, dtype=torch_dtype)

    def _answer_logits(self, input_ids, attention_mask, last):
        """Logits at each row's ``last`` position, through the model's own forward (so that FSDP's hooks gather
        the sharded parameters) with the output layer run only at the batch's distinct last positions."""
        import torch  # deferred: torch takes seconds to import; only this path needs it

        keep = torch.unique(last)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False)
        return out.logits[torch.arange(len(last), device=last.device), torch.searchsorted(keep, last)]

    def label_probs(self, prompts: Sequence[Rendered], spec: JudgeSpec) -> list[dict[str, float]]:
        import torch  # deferred: torch takes seconds to import; only this path needs it

        label_ids = torch.tensor(label_token_ids(self.tokenizer, spec.labels, spec.prompt_format), device=self.device)
        order = sorted(range(len(prompts)), key=lambda i: prompts[i].n_tokens)
        results: list[dict[str, float] | None] = [None] * len(prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        start = 0
        vocab = int(getattr(self.model.config, "vocab_size", 0) or 32000)
        while start < len(order):
            longest = prompts[order[start]].n_tokens
            end, distinct = start + 1, 1
            while end < len(order):
                n = prompts[order[end]].n_tokens
                more = distinct + (n != prompts[order[end - 1]].n_tokens)
                # the chunk's tokens, and its logits (rows x distinct answer positions x vocabulary), stay bounded
                if (
                    n * (end - start + 1) > max(self.batch_tokens, longest)
                    or (end - start + 1) * more * vocab > self.logit_budget
                ):
                    break
                end, distinct = end + 1, more
            chunk = order[start:end]
            width = max(prompts[i].n_tokens for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                n = prompts[i].n_tokens
                ids[row, :n] = torch.tensor(prompts[i].token_ids)
                mask[row, :n] = 1
            last = mask.sum(1) - 1
            with (
                torch.inference_mode(),
                torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None),
            ):
                logits = self._answer_logits(ids.to(self.device), mask.to(self.device), last.to(self.device)).float()
            probs = torch.softmax(logits[:, label_ids], dim=-1).cpu().tolist()
            for row, i in enumerate(chunk):
                results[i] = dict(zip(spec.labels, probs[row]))
            start = end
        return results  # type: ignore[return-value]

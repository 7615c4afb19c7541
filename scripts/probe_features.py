"""Is there a content signal in the frozen SmolLM2-135M features that a judge could learn, beyond length?

Linear probes (logistic regression, antisymmetric: f(a)-f(b), both orders) on mean-pooled hidden states
of each response (instruction + input as the user turn, the response as the assistant turn), fitted on
the demo's PandaLM train split (optionally + llmeval2), evaluated on the demo's test split: overall, on
items where humans preferred the shorter response, and on the longer-preferred ones.

The evidence behind the CPU recipe's `pairwise_mode: separate` (configs/train/smollm2-cpu.yaml): the frozen
model's per-response features carry a signal of quality beyond length that a linear head can read.
    python scripts/probe_features.py [--llmeval2]     # ~6 min on 2 cores; writes runs/probe/results.json
Caveat: the "length only" row truncates responses at 160 tokens, so two long responses tie on length and the
probe then says B; it is not the pick-the-longer rule (0.676 on the same items).
"""

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.preprocessing import StandardScaler
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data.dataset_registry import load_items  # noqa: E402
from data.embedded_model import resolve_model  # noqa: E402

torch.set_num_threads(2)
DATA = REPO / "runs" / "demo" / "data"  # the demo split (`make demo` writes it)
OUT = REPO / "runs" / "probe"
OUT.mkdir(parents=True, exist_ok=True)
LAYERS = [8, 15, 22, 30]
MAX_TOKENS = 320


def items(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def extra_items():
    return [i.model_dump() for i in load_items("llmeval2") if i.kind == "pairwise"]


def main():
    use_extra = "--llmeval2" in sys.argv
    train, test = items(DATA / "train.jsonl") + items(DATA / "dev.jsonl"), items(DATA / "test.jsonl")
    if use_extra:
        extra = extra_items()
        print("llmeval2 items", len(extra))
        train = train + extra
    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16).eval()
    cache_file = OUT / "features.npz"
    cache = dict(np.load(cache_file)) if cache_file.exists() else {}

    def key(it, r):
        return hashlib.sha256(json.dumps([it["instruction"], it.get("input") or "", r]).encode()).hexdigest()[:16]

    todo = {}
    for it in train + test:
        for r in (it["response_a"], it["response_b"]):
            k = key(it, r)
            if k not in cache:
                todo[k] = (it, r)
    print(f"{len(todo)} responses to embed ({len(cache)} cached)")
    texts = []
    for k, (it, r) in todo.items():
        user = it["instruction"] + ("\n\n" + it["input"] if it.get("input") else "")
        prefix = tok.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        texts.append((k, prefix, r))
    texts.sort(key=lambda t: len(t[1]) + len(t[2]))
    start = time.time()
    for b in range(0, len(texts), 16):
        batch = texts[b : b + 16]
        enc_p = [tok(p, add_special_tokens=False)["input_ids"] for _, p, _ in batch]
        enc_r = [tok(r + "<|im_end|>", add_special_tokens=False)["input_ids"] for _, _, r in batch]
        seqs, masks = [], []
        for p, r in zip(enc_p, enc_r):
            r = r[: MAX_TOKENS // 2] if len(r) > MAX_TOKENS // 2 else r
            p = p[-(MAX_TOKENS - len(r)) :]
            seqs.append(p + r)
            masks.append([0] * len(p) + [1] * len(r))
        n = max(map(len, seqs))
        ids = torch.tensor([s + [tok.pad_token_id or 0] * (n - len(s)) for s in seqs])
        att = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs])
        rmask = torch.tensor([m + [0] * (n - len(m)) for m in masks], dtype=torch.float32)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=att, output_hidden_states=True)
        feats = []
        for layer in LAYERS:
            h = out.hidden_states[layer].float()
            feats.append((h * rmask[..., None]).sum(1) / rmask.sum(1, keepdim=True))
        last = torch.stack([out.hidden_states[-1][i, len(s) - 1].float() for i, s in enumerate(seqs)])
        f = torch.cat(feats + [last], dim=1).numpy()
        for (k, _, r), row, ln in zip(batch, f, enc_r):
            cache[k] = np.concatenate([row, [np.log1p(len(ln))]])
        if b % 160 == 0:
            print(f"  {b + len(batch)}/{len(texts)} in {time.time() - start:.0f} s", flush=True)
    np.savez(cache_file, **cache)

    def xy(its):
        X, y, shorter = [], [], []
        for it in its:
            if it["label"] not in ("A", "B"):
                continue
            fa, fb = cache[key(it, it["response_a"])], cache[key(it, it["response_b"])]
            X.append(fa - fb)
            y.append(1 if it["label"] == "A" else 0)
            la, lb = len(it["response_a"]), len(it["response_b"])
            shorter.append((la < lb) == (it["label"] == "A") if la != lb else None)
        return np.array(X), np.array(y), shorter

    Xtr, ytr, s_tr = xy(train)
    Xte, yte, s_te = xy(test)
    dim = Xtr.shape[1] - 1
    width = (dim - 576) // len(LAYERS)
    results = {}
    feature_sets = {"length only": [dim]}
    for i, layer in enumerate(LAYERS):
        feature_sets[f"layer {layer} mean"] = list(range(i * width, (i + 1) * width))
    feature_sets["last token"] = list(range(len(LAYERS) * width, dim))
    feature_sets["all layers"] = list(range(dim))
    feature_sets["all layers + length"] = list(range(dim + 1))
    for balanced in (False, True):
        idx = np.arange(len(ytr))
        if balanced:  # as many shorter-preferred as longer-preferred in training
            sh = [i for i in idx if s_tr[i] is True]
            lo = [i for i in idx if s_tr[i] is False]
            rng = np.random.default_rng(0)
            lo = list(rng.choice(lo, size=min(len(lo), len(sh)), replace=False))
            idx = np.array(sorted(sh + lo))
        for name, cols in feature_sets.items():
            X = np.concatenate([Xtr[idx][:, cols], -Xtr[idx][:, cols]])
            y = np.concatenate([ytr[idx], 1 - ytr[idx]])
            scaler = StandardScaler(with_mean=False).fit(X)
            clf = LogisticRegressionCV(Cs=[1e-4, 1e-3, 1e-2, 1e-1, 1], cv=5, fit_intercept=False, max_iter=2000)
            clf.fit(scaler.transform(X), y)
            p = clf.predict_proba(scaler.transform(Xte[:, cols]))[:, 1]
            pred = (p > 0.5).astype(int)
            acc = float((pred == yte).mean())
            sh = [i for i, s in enumerate(s_te) if s is True]
            lo = [i for i, s in enumerate(s_te) if s is False]
            r = {
                "acc": round(acc, 3),
                "acc_shorter_preferred": round(float((pred[sh] == yte[sh]).mean()), 3),
                "acc_longer_preferred": round(float((pred[lo] == yte[lo]).mean()), 3),
                "C": float(clf.C_[0]),
                "n_train_pairs": int(len(idx)),
                "n_test": int(len(yte)),
                "n_shorter": len(sh),
            }
            results[f"{'balanced' if balanced else 'all'} / {name}"] = r
            print(f"{'balanced' if balanced else 'all':9s} {name:22s} {r}", flush=True)
    (OUT / f"results{'-llmeval2' if use_extra else ''}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

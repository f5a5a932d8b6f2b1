"""A PyTorch port of the default pointer-generator (issue_titles.models.PointerGenerator), to screen variants on a GPU.

    python bench/gpu_screen_port.py --data DIR --output DIR [--only base,ng_wd25] [--deadline 420]

Runs every variant in VARIANTS (or those named) as its own process on the one GPU, side by side, and writes
`OUTPUT/NAME.npz`: greedy title ids for the test and held-out bodies and the training history. DIR is what
`python -m bench.gpu_screen export` wrote; `python -m bench.gpu_screen score` reads the results. Needs PyTorch and
NumPy only (what the GPU machines carry); nothing in `stages` or the tests imports it.

What is ported: the same layers and sizes (body embedding, BiGRU encoder over the real tokens, tanh bridge, dot
attention on projected keys, GRU decoder, attentional layer, dropout, vocabulary softmax and copy gate), the same
loss (P = g·P_vocab + (1-g)·attention on copies, label smoothing 0.1 over g·P_vocab), Nadam with the warm-up + cosine
schedule, per-weight clipping at norm 5, batch 128, the last 12% of rows for validation (Keras' validation_split),
the best epoch kept, and greedy decoding with the predictor's rules (no padding, [UNK] or start marker, no end
before the first word, no repeated id). Not ported: beam search, XLA. Initialisation and Nadam's momentum schedule
differ from Keras', so the port's baseline scores a little below the Keras model's greedy titles; compare variants
with the port's own baseline.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

BASE = {"E": 128, "H": 256, "drop": 0.3, "ls": 0.1, "epochs": 3, "bs": 128, "lr": 0.002, "seed": 42}
VARIANTS = {
    "base": {},
    "base_seed43": {"seed": 43},
    "word_dropout_0.1": {"wd": 0.1},
    "word_dropout_0.25": {"wd": 0.25},
    "body_vocab_8000": {"bv": 8000},
    "trigrams": {"ng": True},
    "trigrams_word_dropout_0.25": {"ng": True, "wd": 0.25},
    "input_feeding": {"input_feed": True},
    "encoder_2_layers": {"enc_layers": 2},
    "hidden_384": {"E": 192, "H": 384},
    "epochs_5": {"epochs": 5},
    "epochs_8": {"epochs": 8},
    "dropout_0.45": {"drop": 0.45},
    "batch_64": {"bs": 64},
    "large": {"E": 256, "H": 512, "enc_layers": 2, "input_feed": True, "epochs": 10},
    "large_trigrams_word_dropout": {"E": 256, "H": 512, "enc_layers": 2, "input_feed": True, "epochs": 10,
                                    "ng": True, "wd": 0.25},
}


def train_one(name: str, config: dict, data_dir: str, output: str) -> None:
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = dict(np.load(f"{data_dir}/data.npz")) | dict(np.load(f"{data_dir}/ngrams.npz"))
    title_vocab, start, end, body_vocab = (int(x) for x in data["meta"])
    body_length, title_length = data["train_body"].shape[1], data["train_title"].shape[1]
    gram_buckets = int(data["gram_buckets"])
    limit = int(os.environ.get("SCREEN_ROWS", "0"))  # a smoke run on the first rows
    torch.manual_seed(config["seed"])

    def tensor(key):
        array = data[key][:limit] if limit else data[key]
        return torch.from_numpy(array.astype(np.int64)).to(device)

    class PointerGenerator(nn.Module):
        def __init__(self, c):
            super().__init__()
            E, H = c["E"], c["H"]
            self.c, self.H = c, H
            self.body_vocab = c.get("bv", body_vocab)
            self.body_embedding = nn.Embedding(self.body_vocab, E)
            if c.get("ng"):
                self.gram_embedding = nn.Embedding(gram_buckets, E, padding_idx=0)
                self.gram_table = torch.from_numpy(data["gram_table"].astype(np.int64)).to(device)
            layers = c.get("enc_layers", 1)
            self.encoder = nn.GRU(E, H // 2, num_layers=layers, batch_first=True, bidirectional=True,
                                  dropout=c["drop"] if layers > 1 else 0.0)
            self.bridge = nn.Linear(H, H)
            self.keys = nn.Linear(H, H, bias=False)
            self.title_embedding = nn.Embedding(title_vocab, E)
            self.feed = c.get("input_feed", False)
            self.decoder = nn.GRU(E + (H if self.feed else 0), H, batch_first=True)
            self.attentional = nn.Linear(2 * H, H)
            self.vocab_logits = nn.Linear(H, title_vocab)
            self.gate = nn.Linear(2 * H + E, 1)
            self.dropout = nn.Dropout(c["drop"])

        def encode(self, body, body_copy, token_ids):
            if self.body_vocab < body_vocab:
                body = torch.where(body >= self.body_vocab, torch.ones_like(body), body)
            if self.training and self.c.get("wd", 0) > 0:  # word dropout: a body word becomes [UNK] (id 1)
                dropped = (torch.rand(body.shape, device=body.device) < self.c["wd"]) & (body > 1)
                body = torch.where(dropped, torch.ones_like(body), body)
            mask = body != 0
            embedded = self.body_embedding(body)
            if self.c.get("ng"):  # + the mean of the token's trigram embeddings (kept when the word is dropped)
                grams = self.gram_table[token_ids]
                present = (grams != 0).float()
                embedded = embedded + (self.gram_embedding(grams) * present[..., None]).sum(2) / present.sum(
                    2, keepdim=True).clamp(min=1)
            lengths = mask.sum(1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(self.dropout(embedded), lengths, batch_first=True,
                                                       enforce_sorted=False)
            states, last = self.encoder(packed)
            states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=body_length)
            memory = {"states": states, "keys": self.keys(states), "copy": body_copy,
                      "bias": torch.where(mask, 0.0, -1e9)}
            return memory, torch.tanh(self.bridge(torch.cat([last[-2], last[-1]], -1)))[None]

        def attend(self, sequence, memory):
            scores = torch.einsum("btd,bld->btl", sequence, memory["keys"]) + memory["bias"][:, None, :]
            attention = torch.softmax(scores, -1)
            return attention, torch.einsum("btl,bld->btd", attention, memory["states"])

        def decode(self, tokens, memory, state, previous=None):
            embedded = self.dropout(self.title_embedding(tokens))
            if not self.feed:
                sequence, state = self.decoder(embedded, state)
                attention, context = self.attend(sequence, memory)
                hidden = self.dropout(torch.tanh(self.attentional(torch.cat([sequence, context], -1))))
            else:  # input feeding (Luong et al., 2015): the last attentional vector joins the next input
                if previous is None:
                    previous = torch.zeros(tokens.shape[0], self.H, device=tokens.device)
                hiddens, attentions, contexts = [], [], []
                for index in range(tokens.shape[1]):
                    step_input = torch.cat([embedded[:, index : index + 1], previous[:, None]], -1)
                    sequence, state = self.decoder(step_input, state)
                    attention, context = self.attend(sequence, memory)
                    hidden = self.dropout(torch.tanh(self.attentional(torch.cat([sequence, context], -1))))
                    previous = hidden[:, 0]
                    hiddens.append(hidden), attentions.append(attention), contexts.append(context)
                hidden, attention, context = torch.cat(hiddens, 1), torch.cat(attentions, 1), torch.cat(contexts, 1)
            vocab = torch.softmax(self.vocab_logits(hidden), -1)
            gate = torch.sigmoid(self.gate(torch.cat([hidden, context, embedded], -1)))
            return vocab, attention, gate[..., 0], state, hidden[:, -1]

        def loss(self, body, body_copy, token_ids, decoder_input, target):
            memory, state = self.encode(body, body_copy, token_ids)
            vocab, attention, gate, _, _ = self.decode(decoder_input, memory, state)
            in_vocab = (target < title_vocab).float()
            vocab_target = vocab.gather(-1, target.clamp(max=title_vocab - 1)[..., None])[..., 0] * in_vocab
            copy_target = (attention * (body_copy[:, None, :] == target[:, :, None]).float()).sum(-1)
            probability = gate * vocab_target + (1 - gate) * copy_target
            loss = -torch.log(probability.clamp(1e-9, 1.0))
            if self.c["ls"]:
                spread = -torch.log((gate[..., None] * vocab).clamp(1e-9, 1.0)).mean(-1)
                loss = (1 - self.c["ls"]) * loss + self.c["ls"] * spread
            mask = (target != 0).float()
            return (loss * mask).sum() / mask.sum().clamp(min=1)

        @torch.no_grad()
        def greedy(self, body, body_copy, token_ids):
            memory, state = self.encode(body, body_copy, token_ids)
            rows, width = body.shape[0], title_vocab + body_length
            token = torch.full((rows, 1), start, device=device)
            finished = torch.zeros(rows, dtype=torch.bool, device=device)
            used = torch.zeros(rows, width, dtype=torch.bool, device=device)
            banned = torch.zeros(width, dtype=torch.bool, device=device)
            banned[[0, 1, start]] = True
            output = torch.full((rows, title_length - 1), end, device=device)
            previous = None
            for step in range(title_length - 1):
                vocab, attention, gate, state, previous = self.decode(token, memory, state, previous)
                vocab, attention, gate = vocab[:, 0], attention[:, 0], gate[:, :1]
                scores = F.pad(gate * vocab, (0, body_length)).scatter_add(1, memory["copy"], (1 - gate) * attention)
                rules = banned.clone()
                rules[end] = step == 0
                chosen = scores.masked_fill(rules[None] | used, -1.0).argmax(-1)
                chosen = torch.where(finished, torch.full_like(chosen, end), chosen)
                output[:, step] = chosen
                used[torch.arange(rows), chosen] = True
                finished |= chosen == end
                token = torch.where(chosen >= title_vocab, torch.ones_like(chosen), chosen)[:, None]
                if finished.all():
                    break
            return output

    body, body_copy, token_ids = tensor("train_body"), tensor("train_body_copy"), tensor("train_gid")
    title, title_copy = tensor("train_title"), tensor("train_title_copy")
    rows = body.shape[0]
    training_rows = rows - int(rows * 0.12)
    model = PointerGenerator(config).to(device)
    batch, epochs, rate = config["bs"], config["epochs"], config["lr"]
    optimizer = torch.optim.NAdam(model.parameters(), lr=rate)
    steps = epochs * math.ceil(training_rows / batch)
    warmup = min(200, steps // 10)

    def rate_at(step):
        if step < warmup:
            return rate * step / warmup
        return rate * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    history, best, best_state, step, started = [], float("inf"), None, 0, time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(training_rows, device=device)
        total = 0.0
        for first in range(0, training_rows, batch):
            index = order[first : first + batch]
            for group in optimizer.param_groups:
                group["lr"] = rate_at(step)
            loss = model.loss(body[index], body_copy[index], token_ids[index], title[index, :-1],
                              title_copy[index, 1:])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for weight in model.parameters():  # Keras' clipnorm clips every weight's gradient on its own
                if weight.grad is not None:
                    torch.nn.utils.clip_grad_norm_([weight], 5.0)
            optimizer.step()
            total += loss.item() * len(index)
            step += 1
        model.eval()
        with torch.no_grad():
            parts = [slice(first, min(rows, first + 1024)) for first in range(training_rows, rows, 1024)]
            validation = sum(
                model.loss(body[p], body_copy[p], token_ids[p], title[p, :-1], title_copy[p, 1:]).item()
                * (p.stop - p.start) for p in parts
            ) / (rows - training_rows)
        history.append((epoch + 1, total / training_rows, validation, time.time() - started))
        print(name, history[-1], flush=True)
        if validation < best:
            best, best_state = validation, {key: value.clone() for key, value in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    titles = {}
    for split in ("test", "heldout"):
        b, c, g = tensor(f"{split}_body"), tensor(f"{split}_body_copy"), tensor(f"{split}_gid")
        titles[split] = torch.cat(
            [model.greedy(b[i : i + 2048], c[i : i + 2048], g[i : i + 2048]) for i in range(0, len(b), 2048)]
        ).cpu().numpy().astype(np.int16)
    info = {"config": config, "history": history, "params": sum(p.numel() for p in model.parameters()),
            "seconds": time.time() - started}
    np.savez(f"{output}/{name}.npz", **titles, info=np.array(json.dumps(info)))
    print(name, "done", round(info["seconds"], 1), "s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder `python -m bench.gpu_screen export` wrote")
    parser.add_argument("--output", required=True)
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--deadline", type=float, default=420, help="seconds before unfinished variants are stopped")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train_one(args.child, BASE | VARIANTS[args.child], args.data, args.output)
        return
    names = [name for name in args.only.split(",") if name] or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    os.makedirs(args.output, exist_ok=True)
    started = time.time()
    processes = {}
    for name in names:
        with open(f"{args.output}/{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
            processes[name] = subprocess.Popen(
                [sys.executable, __file__, "--data", args.data, "--output", args.output, "--child", name],
                stdout=log, stderr=subprocess.STDOUT,
            )
    while time.time() - started < args.deadline and any(p.poll() is None for p in processes.values()):
        time.sleep(5)
    for name, process in processes.items():
        if process.poll() is None:
            process.kill()
            print(name, "stopped at the deadline")
        with open(f"{args.output}/{name}.log") as log:
            print(log.read()[-300:])
    print("total", round(time.time() - started), "s")


if __name__ == "__main__":
    main()

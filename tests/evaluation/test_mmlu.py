"""MMLU k-shot evaluation: exact prompt text, answer tokens, log-likelihood choice on a tiny LLaMA."""
import csv
import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from evaluation.benchmarks.mmlu import load_mmlu
from evaluation.mmlu import answer_token_ids, choice_logprobs, evaluate_mmlu, few_shot_prompt, fit_prompt, main

DEV = {
    "abstract_algebra": [
        ["What is 2+2?", "3", "4", "5", "6", "B"],
        ['Which, if any, is a "group"?', "Z", "N", "the empty set", "none", "A"],
        ["Is 1 prime?", "yes", "no", "maybe", "unknown", "B"],
    ],
    "world_religions": [["Where is Mecca?", "Saudi Arabia", "Peru", "Chile", "Fiji", "A"]],
}
TEST = {
    "abstract_algebra": [["What is 3+3?", "5", "6", "7", "8", "B"], ["What is 1+1?", "2", "3", "4", "5", "A"]],
    "world_religions": [["Who wrote the Vedas?", "nobody", "sages", "kings", "monks", "C"]],
}


def _write_toy(root):
    for split, table in (("dev", DEV), ("test", TEST)):
        for subject, rows in table.items():
            path = root / "data" / split / f"{subject}_{split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as handle:
                csv.writer(handle).writerows(rows)
    return load_mmlu(root)


def _word_tokenizer(texts):
    """Word-level tokenizer (whitespace/punctuation split) over the words of ``texts``; BOS = <s>."""
    split = pre_tokenizers.Whitespace()
    words = sorted({w for t in texts for w, _ in split.pre_tokenize_str(t)})
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "<s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = split
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>")


@pytest.fixture()
def toy(tmp_path):
    data = _write_toy(tmp_path)
    texts = ["The following are multiple choice questions (with answers) about abstract algebra world religions.",
             "Answer: A B C D"] + [",".join(r) for t in (DEV, TEST) for rows in t.values() for r in rows]
    return data, _word_tokenizer(texts)


def _tiny_llama(vocab_size, seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    return LlamaForCausalLM(cfg).eval()


def test_prompt_text_two_subjects(toy):
    data, _ = toy
    expected_algebra = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\n"
        'Which, if any, is a "group"?\nA. Z\nB. N\nC. the empty set\nD. none\nAnswer: A\n\n'
        "What is 3+3?\nA. 5\nB. 6\nC. 7\nD. 8\nAnswer:"
    )
    expected_religions = (
        "The following are multiple choice questions (with answers) about world religions.\n\n"
        "Where is Mecca?\nA. Saudi Arabia\nB. Peru\nC. Chile\nD. Fiji\nAnswer: A\n\n"
        "Who wrote the Vedas?\nA. nobody\nB. sages\nC. kings\nD. monks\nAnswer:"
    )
    assert few_shot_prompt("abstract_algebra", data.dev["abstract_algebra"][:2], data.test["abstract_algebra"][0]) == expected_algebra
    assert few_shot_prompt("world_religions", data.dev["world_religions"][:5], data.test["world_religions"][0]) == expected_religions


def test_answer_tokens_follow_the_tokenizer():
    word = _word_tokenizer(["Answer: A B C D"])
    assert word.convert_ids_to_tokens(answer_token_ids(word)) == ["A", "B", "C", "D"]
    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator([f"Answer: {x}" for x in "ABCD"] * 20,
                                trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe = PreTrainedTokenizerFast(tokenizer_object=backend)
    assert bpe.convert_ids_to_tokens(answer_token_ids(bpe)) == ["ĠA", "ĠB", "ĠC", "ĠD"]  # " A" as one token
    bare = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}, merges=[]))
    bare.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    with pytest.raises(ValueError, match="expected the tokens of 'Answer:' plus one answer token"):
        answer_token_ids(PreTrainedTokenizerFast(tokenizer_object=bare))


def _force(model, tok, letter):
    """Make each layer the identity on the residual stream and let the final ':' of 'Answer:' drive
    one letter's logit: at that position logits are 5/sqrt(1/32 + eps) for ``letter`` and 0 elsewhere.
    'Answer' (one position earlier) drives 'A' and [PAD] drives 'D', so reading the wrong position
    or a pad gives a different letter."""
    ids = {w: tok.convert_tokens_to_ids(w) for w in (":", "Answer", "[PAD]", "A", "D", letter)}
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb[:, :3] = 0
        for word, dim in ((":", 0), ("Answer", 1), ("[PAD]", 2)):
            emb[ids[word]] = 0
            emb[ids[word], dim] = 1
        model.lm_head.weight.zero_()
        model.lm_head.weight[ids[letter], 0] = 5
        model.lm_head.weight[ids["A"], 1] = 5
        model.lm_head.weight[ids["D"], 2] = 5


@pytest.mark.parametrize("letter", ["B", "C"])
def test_choice_is_the_letter_with_the_highest_next_token_loglik(toy, letter):
    data, tok = toy
    model = _tiny_llama(len(tok))
    model.config.tie_word_embeddings = False
    _force(model, tok, letter)
    summary, records = evaluate_mmlu(model, tok, data, ntrain=5, batch_size=3)  # one padded batch
    assert [r["prediction"] for r in records] == [letter] * 3
    # hand computation: z_letter = 5 / sqrt(1/32 + 1e-6), every other vocabulary logit is 0
    z = 5 / (1 / 32 + 1e-6) ** 0.5
    lse = torch.logsumexp(torch.tensor([z] + [0.0] * (len(tok) - 1), dtype=torch.float64), 0).item()
    expected = [(z if x == letter else 0.0) - lse for x in "ABCD"]
    for r in records:
        assert r["logprobs"] == pytest.approx(expected, abs=1e-4)  # fp32 forward, rounded to 1e-6
    answers = [row[5] for t in TEST.values() for row in t]  # B, A, C
    right = sum(a == letter for a in answers)
    assert summary["average"] == pytest.approx(100 * right / 3)
    assert summary["subjects"]["world_religions"]["accuracy"] == (100.0 if letter == "C" else 0.0)
    assert summary["categories"]["humanities"]["num_questions"] == 1
    assert summary["answer_tokens"] == {"A": "A", "B": "B", "C": "C", "D": "D"}
    assert summary["prompts"] == {"max_length": 512, "fewer_shots": 0, "left_truncated": 0}
    assert [r["shots"] for r in records] == [3, 3, 1]


def test_batched_left_padding_matches_one_by_one(toy):
    data, tok = toy
    model = _tiny_llama(len(tok), seed=1)  # fully random: attention and MLPs matter
    prompts = [fit_prompt(tok, s, data.dev[s], q, k, 512).input_ids
               for s in data.subjects for q in data.test[s] for k in (0, 2)]
    letters = answer_token_ids(tok)
    batched = choice_logprobs(model, prompts, letters)
    for row, ids in enumerate(prompts):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        # fp32 on a 32-wide model: padding changes only summation order
        torch.testing.assert_close(batched[row], torch.log_softmax(logits, -1)[letters], atol=1e-5, rtol=0)


def test_shots_are_dropped_then_the_prompt_is_cut_from_the_left(toy):
    data, tok = toy
    s, q = "abstract_algebra", data.test["abstract_algebra"][0]
    lengths = [len(tok(few_shot_prompt(s, data.dev[s][:k], q)).input_ids) for k in range(4)]
    assert lengths == sorted(lengths) and len(set(lengths)) == 4
    fitted = fit_prompt(tok, s, data.dev[s], q, ntrain=5, max_length=lengths[2] + 1)
    assert (fitted.shots, fitted.left_truncated) == (2, False)
    assert fitted.input_ids == tok(few_shot_prompt(s, data.dev[s][:2], q)).input_ids
    fitted = fit_prompt(tok, s, data.dev[s], q, ntrain=5, max_length=6)
    assert (fitted.shots, fitted.left_truncated, len(fitted.input_ids)) == (0, True, 6)
    assert tok.convert_ids_to_tokens(fitted.input_ids)[-2:] == ["Answer", ":"]


def test_cli_prints_one_json_object_and_writes_out(toy, tmp_path, capsys):
    data, tok = toy
    model_dir = tmp_path / "model"
    _tiny_llama(len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = tmp_path / "res" / "mmlu.json"
    assert main(["--model", str(model_dir), "--data", str(data.root), "--ntrain", "1", "--out", str(out),
                 "--predictions", str(tmp_path / "pred.jsonl"), "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["ntrain"] == 1 and printed["num_questions"] == 3
    assert set(printed["categories"]) == {"STEM", "humanities"}
    assert len((tmp_path / "pred.jsonl").read_text().splitlines()) == 3

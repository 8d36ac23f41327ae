"""Task contract: disjoint deterministic splits, fixed prompt, strict verification, extraction rules."""

from __future__ import annotations

import pytest

from harness.core.registry import TASKS
from harness.engine.cell import disjoint_splits
from tasks.common.answer import canonical_number, extract_answer, last_number_after_equals
from tasks.countdown import safe_expression

ALL_TASKS = ["math", "countdown", "knights_knaves", "hanoi", "zebra", "mathgap", "matchstick", "function_calling"]


@pytest.fixture(scope="module")
def tasks():
    return {name: TASKS.get(name)() for name in ALL_TASKS}


def test_registry_lists_every_task():
    assert set(ALL_TASKS) <= set(TASKS.names())


@pytest.mark.parametrize("name", ALL_TASKS)
def test_splits_are_disjoint_deterministic_and_exclude_demos(tasks, name):
    task = tasks[name]
    train, test = disjoint_splits(task, 10, 30, seed=0, test_seed=0)  # hanoi has 54 distinct problems
    assert len(train) == 10 and len(test) == 30
    ids = [p.id for p in train + test]
    assert len(set(ids)) == len(ids)
    demo_ids = {d.id for d in task.demos()}
    assert not demo_ids & set(ids)
    again, _ = disjoint_splits(TASKS.get(name)(), 10, 30, seed=0, test_seed=0)
    assert [p.id for p in again] == [p.id for p in train]
    other, _ = disjoint_splits(task, 10, 30, seed=1, test_seed=0)
    assert [p.id for p in other] != [p.id for p in train]


def test_train_pool_excludes_test_even_when_the_problem_space_is_small(tasks):
    # math easy has ~200 distinct problems: a 150-problem test set forces collisions to be removed
    train, test = disjoint_splits(tasks["math"], 20, 150, seed=0, test_seed=0)
    assert not {p.id for p in train} & {p.id for p in test}


@pytest.mark.parametrize("name", ALL_TASKS)
def test_prompt_is_system_demos_question_and_correct_answer_passes(tasks, name):
    task = tasks[name]
    p = task.problems("test", 1, 0)[0]
    msgs = task.prompt(p)
    assert msgs[0]["role"] == "system" and "Answer:" in msgs[0]["content"]
    assert msgs[-1] == {"role": "user", "content": p.question}
    assert len(msgs) == 2 + 2 * task.few_shot
    guided = task.prompt(p, guidance="INSIGHT-XYZ")
    assert "INSIGHT-XYZ" in guided[0]["content"] and guided[1:] == msgs[1:]
    assert task.prompt(p, instruction="NEW")[0]["content"] == "NEW"
    sep = "\n" if task.multiline_answer else " "
    v = task.verify(p, f"Some working.\nAnswer:{sep}{p.answer}")
    assert v.passed and v.reward == 1.0 and v.feedback == "Correct."
    bad = task.verify(p, "Answer: definitely not it")
    assert not bad.passed and bad.reward == 0.0


@pytest.mark.parametrize("name", ALL_TASKS)
def test_demo_replies_verify_as_correct(tasks, name):
    task = tasks[name]
    for d in task.demos():
        assert task.verify(d, task.demo_reply(d)).passed


def test_partial_credit_never_passes():
    kk = TASKS.get("knights_knaves")(partial_credit=True)
    p = kk.problems("test", 1, 0)[0]
    terms = p.meta["entry"]["metadata"]["knight_knave_terms"]
    first, second = p.answer.rstrip(".").split(", and ")
    role = second.rsplit(" ", 1)[1]
    other = terms["knave"] if role == terms["knight"] else terms["knight"]
    half = f"Answer: {first}, and {second.rsplit(' ', 1)[0]} {other}"  # second person's role flipped
    right = kk.verify(p, f"Answer: {p.answer}")
    v = kk.verify(p, half)
    assert right.passed
    assert 0.0 < v.reward < 1.0 and not v.passed  # reasoning-gym's partial credit, kept as reward only
    strict = TASKS.get("knights_knaves")().verify(p, half)
    assert strict.reward == 0.0 and not strict.passed


def test_feedback_modes(tasks):
    p = tasks["math"].problems("test", 1, 0)[0]
    assert tasks["math"].verify(p, "Answer: 999").feedback == "Incorrect."
    rich = TASKS.get("math")(feedback="rich").verify(p, "Answer: 999")
    assert p.answer in rich.feedback and "999" in rich.feedback
    with pytest.raises(ValueError, match="binary, rich"):
        TASKS.get("math")(feedback="verbose")


def test_extraction_rules():
    assert extract_answer("x = 3\nAnswer: 7") == "7"
    assert extract_answer("Answer: 3\nWait.\nanswer: **7**.") == "7"  # last marker wins, bold and period stripped
    assert extract_answer("ANSWER:  `12` ") == "12"
    assert extract_answer("Answer:\n\n  5") == "5"
    assert extract_answer("no marker here") is None
    assert extract_answer("Answer:\nMove disk 1 from Peg 1 to Peg 3\n\nMove disk 2 from Peg 1 to Peg 2\n",
                          multiline=True) == "Move disk 1 from Peg 1 to Peg 3\nMove disk 2 from Peg 1 to Peg 2"
    assert last_number_after_equals("4 + 3 = 7 and more\nAnswer") == "7"
    assert last_number_after_equals("the result is 12") == "12"
    assert last_number_after_equals("\n\n nothing") is None


def test_math_fallback_and_canonical_numbers(tasks):
    math = tasks["math"]
    p = next(q for q in math.problems("test", 50, 0) if q.answer.lstrip("-").isdigit())
    assert math.verify(p, f"x = {p.answer}").passed  # no Answer line: last number after '=' on line 1
    assert math.verify(p, f"Answer: {p.answer}.0").passed
    assert not math.verify(p, f"Answer: {p.answer}1").passed
    assert canonical_number("+7") == "7" and canonical_number("7.50") == "7.5"
    assert canonical_number("1e9") is None and canonical_number("7/2") is None


def test_countdown_whitelist():
    assert safe_expression("19 + 3 - 9")
    assert safe_expression("(4 * (5 - 2)) / 3")
    for bad in ["9**9**9", "__import__('os')", "1 // 2", "(" * 11 + "1" + ")" * 11, "1)+(2", "2" * 201, "x"]:
        assert not safe_expression(bad), bad


def test_countdown_requires_every_number_once(tasks):
    cd = tasks["countdown"]
    p = cd.problems("test", 1, 0)[0]
    assert cd.verify(p, f"Answer: {p.answer}").passed
    nums = p.meta["entry"]["metadata"]["numbers"]
    assert not cd.verify(p, f"Answer: {p.meta['entry']['metadata']['target']}").passed
    assert not cd.verify(p, "Answer: " + " + ".join(map(str, nums + [0]))).passed


def test_knights_knaves_prompt_has_no_slash_template(tasks):
    """reasoning-gym's 'Format your answer like: "A is a saint/sinner, ..."' hint was copied verbatim
    (slash included) by the default model; the prompt shows the format through demos instead."""
    kk = tasks["knights_knaves"]
    test = kk.problems("test", 30, 0)
    assert not any("/" in p.question or "Format your answer" in p.question for p in test)
    demo = kk.prompt(test[0])[2]["content"]
    assert "/" not in demo and kk.verify(test[0], f"Answer: {test[0].answer}").passed


def test_countdown_operators_knob(tasks):
    answers = [p.answer for p in tasks["countdown"].problems("test", 30, 0)]  # default: 2 numbers, + and -
    assert all(set(a) <= set("0123456789 +-") and len(a.replace("-", "+").split("+")) == 2 for a in answers)
    assert any("*" in p.answer for p in TASKS.get("countdown")(operators="*").problems("test", 5, 0))
    with pytest.raises(ValueError, match="operators='%'; valid"):
        TASKS.get("countdown")(operators="%")


def test_chance_baselines(tasks):
    test = tasks["knights_knaves"].problems("test", 50, 0)
    base = tasks["knights_knaves"].chance_baseline(test)
    assert base["random_guess"] == 0.25 and 0 < base["majority_answer"] <= 1
    m = tasks["math"].problems("test", 40, 0)
    top = max(sum(q.answer == a.answer for q in m) for a in m) / len(m)
    assert tasks["math"].chance_baseline(m)["majority_answer"] == pytest.approx(top)
    assert tasks["zebra"].chance_baseline(tasks["zebra"].problems("test", 5, 0))["random_guess"] == pytest.approx(1 / 3)
    # a pass needs the arguments too: 1/n_tools (1.0 with the default single tool) is no chance rate
    assert tasks["function_calling"].chance_baseline(tasks["function_calling"].problems("test", 5, 0)) == {}


def test_unknown_difficulty_names_valid_choices():
    with pytest.raises(ValueError, match="easy, medium, hard"):
        TASKS.get("math")(difficulty="insane")


def test_run_seeds_give_unrelated_training_sets(tasks):
    # reasoning-gym seeds item i with seed + i: adjacent seeds must not yield shifted copies
    a = tasks["math"].problems("train", 20, 0)
    b = tasks["math"].problems("train", 20, 1)
    assert [p.id for p in a[1:]] != [p.id for p in b[:-1]]
    assert len({p.id for p in a} & {p.id for p in b}) <= 6  # ~200 distinct easy problems: chance overlap only

"""Pure task logic without an LLM: prompts, the NER output grammar, parsing messy outputs, imported labels, metrics."""

from __future__ import annotations

import json
import math
import re
from importlib.resources import files
from pathlib import Path

import pytest

from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings, parse_verbalizers
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.formats import read_examples
from llmaaa_local.llm import Cost, GenerateResponse, ScoreRequest, ScoreResponse
from llmaaa_local.metrics import accuracy, macro_f1, micro_f1_without
from llmaaa_local.records import Example, Mention, Span
from llmaaa_local.spans import align
from llmaaa_local.tasks import clip, task_for
from llmaaa_local.tasks.classify import Classification
from llmaaa_local.tasks.ner import MAX_ENTITIES, MAX_SPAN_TOKENS, EntityRecognition
from llmaaa_local.tasks.relation import RelationClassification
from llmaaa_local.tasks.scoring import LabelScoring

DEMO_DATA = Path(str(files("llmaaa_local").joinpath("demo_data")))
COST = Cost(10, 10, 0, 0.01)


def sentence(tokens: list[str], example_id: str = "s1", text: str | None = None) -> Example:
    """An NER example from tokens; the text is the tokens joined by single spaces unless given."""
    text = " ".join(tokens) if text is None else text
    return Example(example_id, text, tuple(tokens), tuple(align(tokens, text)))


def classify_task(**prompt: object) -> Classification:
    labels = (LabelInfo("positive", "the writer likes it"), LabelInfo("negative", "the writer dislikes it"),
              LabelInfo("mixed"))
    task = task_for(ProjectSettings("classify", labels, prompt=PromptSettings(**prompt)))  # type: ignore[arg-type]
    assert isinstance(task, Classification)
    return task


def ner_task(types: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")) -> EntityRecognition:
    task = task_for(ProjectSettings("ner", tuple(LabelInfo(name) for name in types)))
    assert isinstance(task, EntityRecognition)
    return task


def re_task() -> RelationClassification:
    labels = tuple(LabelInfo(name) for name in ("works_for", "born_in", "no_relation"))
    task = task_for(ProjectSettings("re", labels, no_relation="no_relation"))
    assert isinstance(task, RelationClassification)
    return task


def generated(text: str, logprobs: tuple[float, ...] = (-0.1, -0.3)) -> GenerateResponse:
    return GenerateResponse(text, logprobs, COST)


# --- clip --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("short text", 100, "short text"),
    ("one two three four", 18, "one two three four"),
    ("one two three four", 9, "one two …"),
    ("one two three four", 12, "one two …"),
    ("x" * 20, 5, "xxxxx …"),
    ("Café naïve résumé déjà", 12, "Café naïve …"),
])
def test_clip_cuts_at_a_word_boundary_and_marks_the_cut(text: str, limit: int, expected: str) -> None:
    assert clip(text, limit) == expected


def test_clip_keeps_a_word_that_ends_exactly_at_the_limit() -> None:
    assert clip("hello world foo", 11) == "hello world …"


# --- classification and relation prompts --------------------------------------------------------------------------


def test_classification_prompt_lists_labels_demos_in_order_text_and_reminder() -> None:
    task = classify_task()
    demos = [Example("d1", "Broke after a day.", label="negative"),
             Example("d2", "Good value, slow delivery.", label="mixed"),
             Example("d3", "Lovely soft scarf.", label="positive")]
    request = task.request(Example("x", "The scarf is lovely and warm."), demos, max_chars=4000)
    assert isinstance(request, ScoreRequest)
    prompt = request.prompt
    assert prompt.system.splitlines() == [
        "Classify each text into exactly one of these labels:",
        "- positive: the writer likes it",
        "- negative: the writer dislikes it",
        "- mixed",
        "Answer with the label only.",
    ]
    assert prompt.user == (
        "Text: Broke after a day.\nAnswer: negative\n\n"
        "Text: Good value, slow delivery.\nAnswer: mixed\n\n"
        "Text: Lovely soft scarf.\nAnswer: positive\n\n"
        "Text: The scarf is lovely and warm.\nAnswer with one of: positive, negative, mixed."
    )
    assert prompt.answer_prefix == "Answer:"
    assert request.candidates == ("positive", "negative", "mixed") == task.labels
    # the order given is kept: DemoPool puts the most similar demonstration last, right before the input
    reversed_request = task.request(Example("x", "The scarf is lovely and warm."), demos[::-1], 4000)
    positions = [reversed_request.prompt.user.index(demo.text) for demo in demos[::-1]]
    assert positions == sorted(positions)


def test_classification_prompt_with_custom_instruction_and_no_demos() -> None:
    task = classify_task(instruction="Is this review happy? Labels: positive, negative, mixed.")
    request = task.request(Example("x", "Fine."), [], max_chars=4000)
    assert request.prompt.system == "Is this review happy? Labels: positive, negative, mixed."
    assert request.prompt.user == "Text: Fine.\nAnswer with one of: positive, negative, mixed."


def test_long_texts_are_clipped_in_the_prompt_and_demos_shorter() -> None:
    task = classify_task(max_chars=100, demo_max_chars=50, clip="head")
    words = [f"word{i:03d}" for i in range(200)]
    long_text = " ".join(words)
    demo = Example("d1", " ".join(reversed(words)), label="mixed")
    user = task.request(Example("x", long_text), [demo], max_chars=100).prompt.user
    final = user.split("\n\n")[-1].splitlines()[0].removeprefix("Text: ")
    assert final.endswith(" …")
    shown = final.removesuffix(" …")
    assert len(shown) <= 100 and long_text.startswith(shown) and long_text[len(shown)] == " "
    assert shown == " ".join(words[:12])  # 12 words of 7 characters and 11 spaces: 95 characters
    demo_shown = user.split("\n")[0].removeprefix("Text: ")
    assert demo_shown == " ".join(list(reversed(words))[:6]) + " …"


def test_head_and_tail_clipping_keeps_the_start_and_the_end_at_word_boundaries() -> None:
    words = [f"word{i:03d}" for i in range(200)]  # 7 characters each
    text = " ".join(words)
    shown = clip(text, 100)  # the default of the function: the start only
    assert shown == " ".join(words[:12]) + " …"
    head, _, tail = clip(text, 100, "head+tail").partition(" … ")
    assert head == " ".join(words[:3])  # a quarter of 100 characters: 3 words (23 characters)
    assert tail == " ".join(words[-9:])  # the rest of the budget, 77 characters: 9 whole words from the end
    assert len(head) + len(tail) <= 100
    assert clip("short text", 100, "head+tail") == "short text"
    task = classify_task(max_chars=100, demo_max_chars=50)  # head+tail is the default of new projects
    demo = Example("d1", text, label="mixed")
    user = task.request(Example("x", text), [demo], max_chars=100).prompt.user
    assert user.splitlines()[0] == "Text: " + clip(text, 50, "head+tail")
    assert f"Text: {head} … {tail}" in user


def test_verbalizers_are_scored_and_shown_in_place_of_the_label_names() -> None:
    task = classify_task(verbalizers=(("positive", "great"), ("negative", "terrible")))
    demo = Example("d1", "Loved it.", label="positive")
    request = task.request(Example("x", "Hated it."), [demo], max_chars=4000)
    assert request.candidates == ("great", "terrible", "mixed")  # label order; unset words stay the label name
    assert "- great: the writer likes it\n- terrible: the writer dislikes it\n- mixed" in request.prompt.system
    assert "Text: Loved it.\nAnswer: great\n\n" in request.prompt.user
    assert request.prompt.user.endswith("Answer with one of: great, terrible, mixed.")
    parsed = task.parse(Example("x", "Hated it."), ScoreResponse((-3.0, -0.1, -5.0), Cost(1, 1, 0, 0.0)))
    assert parsed.label == "negative" and parsed.scores == {"positive": -3.0, "negative": -0.1, "mixed": -5.0}
    short = classify_task(instruction_style="short").request(Example("x", "Hated it."), [demo], 4000)
    assert short.prompt.user.endswith("Text: Hated it.") and "Answer with one of" not in short.prompt.user


@pytest.mark.parametrize(("items", "problem"), [
    (["positive=great", "negative"], "write LABEL=WORD"),
    (["happy=great"], "is not in the label set"),
    (["positive=great", "negative=great"], "the same word"),
    (["positive= great "], None),
])
def test_verbalizer_options_are_checked(items: list[str], problem: str | None) -> None:
    if problem is None:
        assert parse_verbalizers(items, ["positive", "negative"]) == (("positive", "great"),)
        return
    with pytest.raises(LlmaaaError, match=problem):
        PromptSettings(verbalizers=parse_verbalizers(items, ["positive", "negative"]))


def test_relation_prompt_names_head_and_tail() -> None:
    examples = list(read_examples(DEMO_DATA / "re_demo.jsonl", "re"))
    demo, target = examples[0], examples[1]
    assert isinstance(demo.head, Mention) and isinstance(target.tail, Mention)
    task = re_task()
    request = task.request(target, [demo], max_chars=4000)
    prompt = request.prompt
    assert "- works_for\n- born_in\n- no_relation: none of the other relations holds between them" in prompt.system
    assert "e1 is the head" not in prompt.system  # the labels carry no direction
    assert prompt.user == (
        f"Sentence: {demo.text}\nHead: {demo.head.name}\nTail: {demo.tail.name}\nAnswer: {demo.label}\n\n"
        f"Sentence: {target.text}\nHead: {target.head.name}\nTail: {target.tail.name}\n"
        "Answer with one of the relation labels."
    )
    assert target.head.name == "Mila Horvat" and target.tail.name == "Wren Analytics"
    assert request.candidates == ("works_for", "born_in", "no_relation")


def test_the_probe_reads_a_relations_mentions_and_the_words_between_them() -> None:
    tokens = ["Yesterday", ",", "the", "violin", "was", "made", "by", "a", "maker", "in", "Vienna", "."]
    example = Example("r1", " ".join(tokens), tuple(tokens), head=Mention("violin", 3, 4),
                      tail=Mention("a maker", 7, 9))
    assert re_task().probe_view == "mentions"
    assert re_task().probe_text(example) == "violin was made by a maker"
    swapped = Example("r2", example.text, example.tokens, head=example.tail, tail=example.head)
    assert re_task().probe_text(swapped) == "violin was made by a maker"  # in the sentence's order either way
    assert classify_task().probe_view == "" and classify_task().probe_text(example) == example.text
    assert ner_task().probe_view == ""


def test_relation_prompt_explains_directed_labels() -> None:
    labels = tuple(LabelInfo(name) for name in ("Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other"))
    task = task_for(ProjectSettings("re", labels, no_relation="Other"))
    assert isinstance(task, RelationClassification)
    assert "In the labels, e1 is the head and e2 the tail." in task.instruction()


# --- label scoring -----------------------------------------------------------------------------------------------


def test_label_scoring_parse_picks_argmax_with_softmax_confidence() -> None:
    task = classify_task()
    response = ScoreResponse((-2.5, -0.5, -1.5), COST)
    parsed = task.parse(Example("x", "t"), response)
    assert parsed.status == "ok" and parsed.label == "negative"
    expected = math.exp(-0.5) / (math.exp(-2.5) + math.exp(-0.5) + math.exp(-1.5))
    assert parsed.confidence == pytest.approx(expected, rel=1e-12)
    assert parsed.scores == {"positive": -2.5, "negative": -0.5, "mixed": -1.5}


def test_label_scoring_confidence_ignores_a_shared_offset() -> None:
    task = classify_task()
    low = task.parse(Example("x", "t"), ScoreResponse((-12.0, -13.0, -14.0), COST))
    high = task.parse(Example("x", "t"), ScoreResponse((0.0, -1.0, -2.0), COST))
    assert low.label == high.label == "positive"
    assert low.confidence == pytest.approx(high.confidence, rel=1e-12)


@pytest.mark.parametrize("response", [
    ScoreResponse((-1.0, -2.0), COST),
    ScoreResponse((-1.0, -2.0, -3.0, -4.0), COST),
    ScoreResponse((), COST),
    GenerateResponse("positive", (-0.1,), COST),
], ids=["too-few", "too-many", "none", "generated-text"])
def test_label_scoring_parse_error_on_wrong_answers(response: ScoreResponse | GenerateResponse) -> None:
    parsed = classify_task().parse(Example("x", "t"), response)
    assert (parsed.status, parsed.label, parsed.confidence, parsed.scores) == ("parse_error", None, None, None)
    assert parsed.error == "expected one score per label"


# --- NER grammar --------------------------------------------------------------------------------------------------


_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
_GBNF_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n", "\\r": "\r", "\\t": "\t"}


def rule_strings(grammar: str, rule: str) -> list[str]:
    """The strings a `rule ::= "a" | "b"` line of the grammar offers, GBNF-unescaped (still JSON-escaped)."""
    line = next(line for line in grammar.splitlines() if line.startswith(f"{rule} ::= "))
    body = line.removeprefix(f"{rule} ::= ")
    literals = _LITERAL.findall(body)
    assert " | ".join(f'"{literal}"' for literal in literals) == body  # nothing but alternatives of literals
    return [re.sub(r"\\.", lambda m: _GBNF_ESCAPES[m.group(0)], literal) for literal in literals]


def ngrams(tokens: list[str], limit: int) -> set[str]:
    return {" ".join(tokens[s:e]) for s in range(len(tokens)) for e in range(s + 1, min(s + limit, len(tokens)) + 1)}


def test_ner_grammar_offers_exactly_the_token_ngrams_and_types() -> None:
    example = next(iter(read_examples(DEMO_DATA / "ner_corpus.jsonl", "ner")))
    tokens = list(example.tokens or ())
    assert len(tokens) > MAX_SPAN_TOKENS and example.text == " ".join(tokens)
    grammar = ner_task().grammar(example)
    offered = [json.loads(f'"{item}"') for item in rule_strings(grammar, "span")]
    assert len(offered) == len(set(offered))
    assert set(offered) == ngrams(tokens, MAX_SPAN_TOKENS)
    assert " ".join(tokens[:MAX_SPAN_TOKENS]) in offered
    assert " ".join(tokens[: MAX_SPAN_TOKENS + 1]) not in offered
    assert rule_strings(grammar, "type") == ["PER", "LOC", "ORG", "MISC"]
    assert f"{{0,{MAX_ENTITIES - 1}}}" in grammar.splitlines()[0]


def test_ner_grammar_escapes_quotes_and_backslashes() -> None:
    tokens = ["He", "typed", '"', "C:\\temp", '"', "and", "\\n", "O'Neil", "😀"]
    example = sentence(tokens)
    grammar = ner_task(("PER",)).grammar(example)
    json_escaped = rule_strings(grammar, "span")
    # the model writes JSON, so the grammar offers each span JSON-escaped, as in a JSON string
    assert '\\" C:\\\\temp \\"' in json_escaped
    assert "\\\\n" in json_escaped and "O'Neil 😀" in json_escaped
    assert {json.loads(f'"{item}"') for item in json_escaped} == ngrams(tokens, MAX_SPAN_TOKENS)
    # and what the grammar lets the model write parses back to the text's own spans
    parsed = ner_task(("PER",)).parse(example, generated('[{"span": "\\" C:\\\\temp \\"", "type": "PER"}]'))
    assert parsed.label == (Span(2, 5, "PER"),)


def test_ner_grammar_is_built_on_the_clipped_text() -> None:
    tokens = [f"w{i}" for i in range(60)]
    request = ner_task().request(sentence(tokens), [], max_chars=100)
    offered = {json.loads(f'"{item}"') for item in rule_strings(request.grammar, "span")}
    # w0..w9 end at character 29, then each token adds 4: w26 ends at 97, w27 at 101
    assert offered == ngrams(tokens[:27], MAX_SPAN_TOKENS)
    assert request.prompt.user == "Text: " + " ".join(tokens[:27])


def test_ner_prompt_shows_demonstrations_as_json() -> None:
    demo = next(iter(read_examples(DEMO_DATA / "ner_demo.jsonl", "ner")))
    task = ner_task()
    request = task.request(sentence(["Ana", "lives", "in", "Oslo", "."]), [demo], max_chars=4000)
    assert request.prompt.user == (
        'Text: Ella Fontaine opened a flower shop in Montreal last spring .\n'
        'Entities: [{"span": "Ella Fontaine", "type": "PER"}, {"span": "Montreal", "type": "LOC"}]\n\n'
        "Text: Ana lives in Oslo ."
    )
    assert "- PER: names of people" in request.prompt.system


# --- NER parser: a table of messy literal outputs ----------------------------------------------------------------

# Maria(0) Olsen(1) met(2) Maria(3) in(4) São(5) Paulo(6) and(7) New(8) York(9) 😀(10) New(11) York(12) .(13)
NER_TOKENS = ["Maria", "Olsen", "met", "Maria", "in", "São", "Paulo", "and", "New", "York", "😀", "New", "York", "."]

NER_OUTPUTS = [
    ("empty", "[]", (), "ok", 0),
    ("leading-space", ' [{"span": "São Paulo", "type": "LOC"}]', ((5, 7, "LOC"),), "ok", 0),
    ("surrounding-whitespace", '\n\n  [{"span": "Olsen", "type": "PER"}]  \n', ((1, 2, "PER"),), "ok", 0),
    ("pretty-printed", '[\n  {\n    "span": "Olsen",\n    "type": "PER"\n  }\n]', ((1, 2, "PER"),), "ok", 0),
    ("truncated", '[{"span": "Sã', None, "parse_error", 0),
    # cut off at the token limit (the grammar makes every output a valid prefix): the complete items are kept
    ("truncated-after-item", '[{"span": "Olsen", "type": "PER"}, ', ((1, 2, "PER"),), "ok", 0),
    ("truncated-inside-item", '[{"span": "Olsen", "type": "PER"}, {"span": "Ma', ((1, 2, "PER"),), "ok", 0),
    ("truncated-at-start", '[', (), "ok", 0),
    ("dict-not-list", '{"span": "São Paulo", "type": "LOC"}', None, "parse_error", 0),
    ("missing-type", '[{"span": "Maria"}]', None, "parse_error", 0),
    ("missing-type-in-one-item", '[{"span": "Olsen", "type": "PER"}, {"span": "Maria"}]', None, "parse_error", 0),
    ("span-not-string", '[{"span": 5, "type": "LOC"}]', None, "parse_error", 0),
    ("list-of-strings", '["Maria", "PER"]', None, "parse_error", 0),
    ("prose", "nonsense", None, "parse_error", 0),
    ("empty-output", "", None, "parse_error", 0),
    ("trailing-junk", '[{"span": "Olsen", "type": "PER"}] and more', ((1, 2, "PER"),), "ok", 0),
    ("markdown-fence", '```json\n[{"span": "Olsen", "type": "PER"}]\n```', None, "parse_error", 0),
    ("span-not-in-text", '[{"span": "Berlin", "type": "LOC"}]', (), "ok", 1),
    ("unknown-type", '[{"span": "Olsen", "type": "DATE"}]', (), "ok", 1),
    ("lowercase-type", '[{"span": "Olsen", "type": "per"}]', (), "ok", 1),
    ("part-of-a-token", '[{"span": "Pau", "type": "LOC"}]', (), "ok", 1),
    ("wrong-case", '[{"span": "SÃO PAULO", "type": "LOC"}]', (), "ok", 1),
    ("double-inner-space", '[{"span": "São  Paulo", "type": "LOC"}]', (), "ok", 1),
    ("empty-span", '[{"span": "", "type": "LOC"}]', (), "ok", 1),
    ("kept-and-dropped", '[{"span": "Berlin", "type": "LOC"}, {"span": "Olsen", "type": "PER"}, '
     '{"span": "Olsen", "type": "DATE"}]', ((1, 2, "PER"),), "ok", 2),
    ("repeated-string", '[{"span": "Maria", "type": "PER"}]', ((0, 1, "PER"), (3, 4, "PER")), "ok", 0),
    ("longer-item-first", '[{"span": "Maria Olsen", "type": "PER"}, {"span": "Maria", "type": "PER"}]',
     ((0, 2, "PER"), (3, 4, "PER")), "ok", 0),
    ("earlier-item-wins-overlap", '[{"span": "Maria", "type": "LOC"}, {"span": "Maria Olsen", "type": "PER"}]',
     ((0, 1, "LOC"), (3, 4, "LOC")), "ok", 0),
    ("overlap-everywhere", '[{"span": "New York", "type": "LOC"}, {"span": "York", "type": "ORG"}]',
     ((8, 10, "LOC"), (11, 13, "LOC")), "ok", 0),
    ("duplicate-items", '[{"span": "New York", "type": "LOC"}, {"span": "New York", "type": "MISC"}]',
     ((8, 10, "LOC"), (11, 13, "LOC")), "ok", 0),
    ("emoji", '[{"span": "😀", "type": "MISC"}]', ((10, 11, "MISC"),), "ok", 0),
    ("json-unicode-escape", '[{"span": "S\\u00e3o Paulo", "type": "LOC"}]', ((5, 7, "LOC"),), "ok", 0),
    ("span-with-spaces", '[{"span": "  São Paulo ", "type": "LOC"}]', ((5, 7, "LOC"),), "ok", 0),
    ("extra-keys", '[{"span": "Olsen", "type": "PER", "score": 0.9}]', ((1, 2, "PER"),), "ok", 0),
    ("across-emoji", '[{"span": "York 😀 New", "type": "MISC"}]', ((9, 12, "MISC"),), "ok", 0),
]


@pytest.mark.parametrize(("output", "spans", "status", "dropped"), [row[1:] for row in NER_OUTPUTS],
                         ids=[row[0] for row in NER_OUTPUTS])
def test_ner_parse_messy_outputs(output: str, spans: tuple[tuple[int, int, str], ...] | None, status: str,
                                 dropped: int) -> None:
    parsed = ner_task().parse(sentence(NER_TOKENS), generated(output))
    assert parsed.status == status
    assert parsed.dropped == dropped
    assert parsed.scores is None
    if spans is None:
        assert (parsed.label, parsed.confidence) == (None, None)
        assert parsed.error
    else:
        assert parsed.label == tuple(Span(*span) for span in spans)
        recovered = not output.strip().endswith("]")  or output.endswith("more")
        assert parsed.error.startswith("output stopped at the token limit") == recovered


def test_ner_parse_confidence_is_the_mean_token_probability() -> None:
    parsed = ner_task().parse(sentence(NER_TOKENS), generated("[]", (-0.2, -0.4, -0.6)))
    assert parsed.confidence == pytest.approx(math.exp(-0.4), rel=1e-12)
    assert ner_task().parse(sentence(NER_TOKENS), generated("[]", ())).confidence is None


def test_ner_parse_rejects_a_score_response() -> None:
    parsed = ner_task().parse(sentence(NER_TOKENS), ScoreResponse((-1.0,), COST))
    assert (parsed.status, parsed.label) == ("parse_error", None)


def test_ner_parse_anchors_to_the_original_text_between_tokens() -> None:
    # the text keeps its own spacing; a span is the text between its first and last token
    text = "Dr. Ana  Lima visited New\tYork."
    tokens = ["Dr.", "Ana", "Lima", "visited", "New", "York", "."]
    example = sentence(tokens, text=text)
    task = ner_task()
    assert task.parse(example, generated('[{"span": "Ana  Lima", "type": "PER"}]')).label == (Span(1, 3, "PER"),)
    assert task.parse(example, generated('[{"span": "New\\tYork", "type": "LOC"}]')).label == (Span(4, 6, "LOC"),)
    assert task.parse(example, generated('[{"span": "Ana Lima", "type": "PER"}]')).dropped == 1


# --- labels from imported files ----------------------------------------------------------------------------------


def test_classification_and_relation_label_from_value() -> None:
    example = Example("x", "t")
    assert classify_task().label_from_value(example, "mixed") == "mixed"
    assert re_task().label_from_value(example, "born_in") == "born_in"


@pytest.mark.parametrize(("task", "value", "message"), [
    (classify_task(), "Positive", "label 'Positive' is not in the project's label set"),
    (classify_task(), "neutral", "not in the project's label set ['positive', 'negative', 'mixed']"),
    (classify_task(), 1, "the label must be a string, found int"),
    (classify_task(), None, "the label must be a string, found NoneType"),
    (classify_task(), ["positive"], "the label must be a string, found list"),
    (re_task(), "born_on", "label 'born_on' is not in the project's label set"),
], ids=["case", "outside-set", "int", "null", "list", "relation-outside-set"])
def test_label_from_value_rejects(task: LabelScoring, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        task.label_from_value(Example("x", "t"), value)


def test_ner_label_from_tags_and_char_spans() -> None:
    example = sentence(["Ana", "Lima", "moved", "to", "São", "Paulo", "."])
    task = ner_task()
    assert task.label_from_value(example, ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]) == (
        Span(0, 2, "PER"), Span(4, 6, "LOC"))
    assert task.label_from_value(example, ["O"] * 7) == ()
    spans = [{"start": 18, "end": 27, "type": "LOC"}, {"start": 0, "end": 8, "type": "PER"}]
    assert example.text[18:27] == "São Paulo"
    assert task.label_from_value(example, spans) == (Span(0, 2, "PER"), Span(4, 6, "LOC"))


@pytest.mark.parametrize(("value", "message"), [
    (["O", "O"], "2 tags for 7 tokens"),
    (["I-PER", "I-PER", "O", "O", "O", "O", "O"], "an I- tag must continue an entity of its type"),
    (["B-PER", "I-LOC", "O", "O", "O", "O", "O"], "an I- tag must continue an entity of its type"),
    (["B-PER", "I-PER", "X", "O", "O", "O", "O"], "'X' is not a BIO tag"),
    (["B-DATE", "O", "O", "O", "O", "O", "O"], "entity type 'DATE' is not in the project's types"),
    ([{"start": 1, "end": 8, "type": "PER"}], "span [1, 8) does not fall on token boundaries"),
    ([{"start": 0, "end": 6, "type": "PER"}], "span [0, 6) does not fall on token boundaries"),
    ([{"start": 0, "end": 8, "type": "DATE"}], "entity type 'DATE' is not in the project's types"),
    ([{"start": 0, "end": 8, "type": "PER"}, {"start": 4, "end": 8, "type": "PER"}], "overlaps"),
    ([{"start": "0", "end": 8, "type": "PER"}], "needs integer start and end and a string type"),
    ([{"start": 0, "end": 8}], "needs integer start and end and a string type"),
    ("B-PER", "give NER labels as a list of tags or a list of {start, end, type} spans"),
    ([["B-PER"]], "give NER labels as a list of tags or a list of {start, end, type} spans"),
], ids=["tags-too-few", "i-without-b", "i-other-type", "not-bio", "tag-unknown-type", "span-starts-in-token",
        "span-ends-in-token", "span-unknown-type", "spans-overlap", "start-not-int", "no-type", "string",
        "nested-list"])
def test_ner_label_from_value_rejects(value: object, message: str) -> None:
    example = sentence(["Ana", "Lima", "moved", "to", "São", "Paulo", "."])
    with pytest.raises(ValueError, match=re.escape(message)):
        ner_task().label_from_value(example, value)


def test_ner_label_from_an_empty_span_list_means_no_entities() -> None:
    example = sentence(["Ana", "Lima", "moved", "to", "São", "Paulo", "."])
    assert ner_task().label_from_value(example, []) == ()


# --- metrics -----------------------------------------------------------------------------------------------------


def test_accuracy_and_macro_f1_hand_computed() -> None:
    gold = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", "a"]
    assert accuracy(gold, predicted) == pytest.approx(3 / 5)
    # a: P 1/2 R 1/2 F 1/2; b: P 2/3 R 1 F 4/5; c: F 0
    assert macro_f1(gold, predicted, ["a", "b", "c"]) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # a label absent from gold and predictions counts as 0
    assert macro_f1(gold, predicted, ["a", "b", "c", "d"]) == pytest.approx((0.5 + 0.8) / 4)
    assert accuracy([], []) == 0.0


def test_classification_metrics_through_the_task() -> None:
    task = task_for(ProjectSettings("classify", tuple(LabelInfo(n) for n in "abc")))
    gold = dict(zip("12345", ["a", "a", "b", "b", "c"], strict=True))
    predicted = dict(zip("12345", ["a", "b", "b", "b", "a"], strict=True))
    assert task.metrics(gold, predicted, {}) == pytest.approx({"accuracy": 0.6, "macro_f1": 1.3 / 3})


def test_relation_micro_f1_excludes_no_relation() -> None:
    gold = ["born_in", "born_in", "no_relation", "works_for", "no_relation", "works_for"]
    predicted = ["born_in", "works_for", "born_in", "no_relation", "no_relation", "works_for"]
    # true positives: items 1 and 6; predicted relations: 1,2,3,6 (4); gold relations: 1,2,4,6 (4)
    assert micro_f1_without(gold, predicted, "no_relation") == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5})
    ids = [str(i) for i in range(6)]
    scores = re_task().metrics(dict(zip(ids, gold, strict=True)), dict(zip(ids, predicted, strict=True)), {})
    assert scores["f1"] == pytest.approx(0.5)
    assert scores["accuracy"] == pytest.approx(3 / 6)  # the agreeing no_relation counts for accuracy only
    # born_in: P 1/2 R 1/2; works_for: P 1/2 R 1/2; no_relation: P 1/2 R 1/2 -> every F1 is 1/2
    assert scores["macro_f1"] == pytest.approx(0.5)


def test_relation_micro_f1_when_everything_is_no_relation() -> None:
    assert micro_f1_without(["NA", "NA"], ["NA", "NA"], "NA") == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_entity_f1_hand_computed() -> None:
    examples = {"1": sentence(["Ana", "Lima", "in", "Oslo", "."], "1"),
                "2": sentence(["the", "Acme", "shop"], "2")}
    gold = {"1": (Span(0, 2, "PER"), Span(3, 4, "LOC")), "2": (Span(1, 2, "ORG"),)}
    predicted = {"1": (Span(0, 1, "PER"), Span(3, 4, "LOC")), "2": (Span(1, 2, "ORG"), Span(0, 1, "MISC"))}
    # right: Oslo LOC, Acme ORG; "Ana" alone is a boundary error; "the" MISC is spurious
    # precision 2/4, recall 2/3, F1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = 4/7
    scores = ner_task().metrics(gold, predicted, examples)
    assert scores == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7})
    assert ner_task().metrics(gold, gold, examples) == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0})

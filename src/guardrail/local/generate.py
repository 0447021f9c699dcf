"""One generation: chat template, constraint, sampling, stop, cancel, stream.

guardrail runs the decoding loop itself (transformers only computes the forward pass), because
the loop is where constrained generation on a CPU wins or loses its time:

- Tokens the constraint forces (an object's next key, ``": "``, a closing ``"}``) are not
  sampled one by one: the matcher names them (llguidance's fast-forward tokens) and one forward
  pass reads them all, like a tiny prompt. In JSON answers about half the tokens are forced, and
  on a CPU a forward pass over a few tokens costs about as much as over one.
- Where the constraint allows few tokens, only their rows of the output layer are computed (the
  output layer is a fifth of a 135M model's weights).
- The mask is applied with plain tensor indexing: llguidance's own helper goes through
  ``torch.compile``, whose first call cost the first constrained request seconds to minutes.

Each token is streamed as it is decided, and a cancelled request stops before the next forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .model import LoadedModel

if TYPE_CHECKING:
    from .engine import Job

# Below this share of the vocabulary allowed, only the allowed rows of the output layer are used.
SUBSET_SHARE = 0.25


class Matcher(Protocol):
    """One generation's view of a constraint (a fresh one per generation)."""

    def allowed(self) -> Any:
        """A bool tensor over the tokenizer's vocabulary of the tokens allowed next, or None
        when the constraint works on full logits instead (``apply``)."""

    def apply(self, history: list[int], logits: Any) -> Any:
        """Logits (1 x vocabulary) with disallowed tokens at -inf."""

    def advance(self, token: int) -> list[int]:
        """Consume the sampled ``token``; the tokens the constraint forces after it (consumed)."""


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt the model's own chat template makes; a plain transcript for a base model
    whose GGUF carries no template."""
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return text
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


class _Stream:
    """Posts new text as tokens arrive.

    Text is released only when it cannot be the start of a stop string (nor half a UTF-8
    character), so a stop string never reaches the client; ``done`` says a stop string was hit.
    """

    def __init__(self, job: Job, tokenizer: Any, stop: tuple[str, ...]) -> None:
        self.job = job
        self.tokenizer = tokenizer
        self.stop = stop
        self.ids: list[int] = []
        self.sent = 0  # characters of the text already posted
        self.text = ""
        self.done = False

    def add(self, tokens: list[int]) -> None:
        self.ids.extend(tokens)
        self.job.tokens += len(tokens)
        self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for stop in self.stop:
            at = self.text.find(stop)
            if at >= 0:
                self.text = self.text[:at]
                self.done = True
        self._release(final=self.done)

    def end(self) -> None:
        self._release(final=True)

    def _release(self, *, final: bool) -> None:
        upto = len(self.text)
        if not final:
            if self.text.endswith("\ufffd"):  # an incomplete multi-byte character
                upto -= 1
            hold = max((len(s) - 1 for s in self.stop), default=0)
            upto = max(self.sent, upto - hold)
        if upto > self.sent:
            self.job.post(self.text[self.sent : upto])
            self.sent = upto


def _pick(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    """Sample one index from a 1-D logits tensor (greedy at temperature 0)."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        ordered, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(ordered, dim=-1) - ordered < top_p  # always keeps the first
        probs = torch.zeros_like(probs).scatter_(0, order[keep], ordered[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def _cache_argument(base: Any) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def eos_ids(model: LoadedModel) -> set[int]:
    """Every token id that ends a generation for this model."""
    eos = model.hf_model.generation_config.eos_token_id
    found = set(eos if isinstance(eos, list) else [eos]) | {model.tokenizer.eos_token_id}
    found.discard(None)
    return found


def generate(
    model: LoadedModel,
    job: Job,
    messages: list[dict[str, str]],
    *,
    matcher: Matcher | None,
    max_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    stop: tuple[str, ...],
) -> tuple[str, int, str]:
    """Run one generation, posting text deltas to ``job``: (text, prompt tokens, finish)."""
    import torch
    from transformers import DynamicCache

    tokenizer = model.tokenizer
    prompt = tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"]
    ends = eos_ids(model)
    stream = _Stream(job, tokenizer, stop)
    generator = torch.Generator().manual_seed(seed)
    base = model.hf_model.model  # the transformer without its output layer
    head = model.hf_model.lm_head.weight  # vocabulary x hidden
    history = list(prompt)
    # The key/value cache, filled in place by each forward pass (transformers 5 renamed the
    # argument from past_key_values to cache).
    cache = {_cache_argument(base): DynamicCache(config=model.hf_model.config)}
    feed = prompt
    finish = "length"
    with torch.inference_mode():
        while True:
            if job.cancelled.is_set():
                finish = "cancelled"
                break
            out = base(input_ids=torch.tensor([feed]), use_cache=True, **cache)
            hidden = out.last_hidden_state[0, -1]
            allowed = matcher.allowed() if matcher is not None else None
            if allowed is not None:
                ids = torch.nonzero(allowed[: head.shape[0]]).flatten()
                if len(ids) == 0:  # the constraint admits nothing more: the answer is complete
                    finish = "stop"
                    break
                if len(ids) < SUBSET_SHARE * head.shape[0]:
                    row = _pick(head[ids] @ hidden, temperature, top_p, generator)
                    token = int(ids[row])
                else:
                    logits = head @ hidden
                    logits[: len(allowed)][~allowed] = -torch.inf
                    logits[len(allowed) :] = -torch.inf
                    token = _pick(logits, temperature, top_p, generator)
            else:
                logits = head @ hidden
                if matcher is not None:
                    logits = matcher.apply(history, logits[None])[0]
                token = _pick(logits, temperature, top_p, generator)
            if token in ends:
                finish = "stop"
                break
            forced = matcher.advance(token) if matcher is not None else []
            feed = [token, *forced][: max_tokens - len(stream.ids)]
            ending = next((at for at, t in enumerate(feed) if t in ends), None)
            forced_end = ending is not None
            feed = feed[:ending]  # a forced end token ends the answer: nothing after it counts
            history.extend(feed)
            stream.add(feed)
            if stream.done or forced_end:
                finish = "stop"
                break
            if len(stream.ids) >= max_tokens:
                break
    stream.end()
    return stream.text, len(prompt), finish

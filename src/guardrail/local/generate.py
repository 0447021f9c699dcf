"""One generation with transformers: chat template, constraint, sampling, stop, cancel, stream.

outlines builds the constraint (a logits processor); the loop itself is transformers'
``generate`` so that each token can be streamed as it is sampled (outlines' own transformers
wrapper does not stream) and a cancelled request stops between two tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import LoadedModel

if TYPE_CHECKING:
    from .engine import Job


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
    """transformers' streamer interface: receives each sampled token, posts the new text.

    Text is released only when it cannot be the start of a stop string (nor half a UTF-8
    character), so a stop string never reaches the client; ``done`` says a stop string was hit.
    """

    def __init__(self, job: Job, tokenizer: Any, stop: tuple[str, ...], eos: set[int]) -> None:
        self.job = job
        self.tokenizer = tokenizer
        self.stop = stop
        self.eos = eos
        self.ids: list[int] = []
        self.sent = 0  # characters of the text already posted
        self.text = ""
        self.done = False
        self.saw_prompt = False

    def put(self, value: Any) -> None:
        if not self.saw_prompt:  # generate() hands the prompt over first
            self.saw_prompt = True
            return
        for token in value.reshape(-1).tolist():
            if token in self.eos:
                self.done = True
                continue
            self.ids.append(token)
            self.job.tokens += 1
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


class _Halt:
    """transformers stopping criterion: a cancelled job or a stop string ends generation."""

    def __init__(self, job: Job, stream: _Stream) -> None:
        self.job = job
        self.stream = stream

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        halt = self.job.cancelled.is_set() or self.stream.done
        return torch.full((input_ids.shape[0],), halt, dtype=torch.bool)


def generate(
    model: LoadedModel,
    job: Job,
    messages: list[dict[str, str]],
    *,
    processor: Any,
    max_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    stop: tuple[str, ...],
) -> tuple[str, int, str]:
    """Run one generation, posting text deltas to ``job``: (text, prompt tokens, finish)."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    tokenizer = model.tokenizer
    inputs = tokenizer(
        prompt_text(tokenizer, messages), return_tensors="pt", add_special_tokens=False
    )
    eos = model.hf_model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    eos_ids.discard(None)
    stream = _Stream(job, tokenizer, stop, eos_ids)
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    torch.manual_seed(seed)
    with torch.inference_mode():
        model.hf_model.generate(
            **inputs,
            max_new_tokens=max_tokens,
            logits_processor=LogitsProcessorList([processor] if processor is not None else []),
            stopping_criteria=StoppingCriteriaList([_Halt(job, stream)]),
            streamer=stream,
            pad_token_id=tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else next(iter(eos_ids)),
            **sampling,
        )
    if job.cancelled.is_set():
        finish = "cancelled"
    elif stream.done:
        finish = "stop"
    else:
        finish = "length"
    return stream.text, int(inputs["input_ids"].shape[1]), finish

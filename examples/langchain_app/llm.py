"""The LLM: an OpenAI-compatible endpoint when configured, else a local extractive answerer (a LangChain chat model)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import SecretStr

from .faults import Faults
from .text import terms

__all__ = ["ExtractiveChatModel", "LLMChoice", "choose_llm"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n{1,}")
_CONTINUATION = re.compile(r"\n(?!\n|\s*(?:[-*|#>]|\d+\.|```))")
_BLOCK = re.compile(r"^\[(\d+)\] \(([^)]*)\)\n", re.MULTILINE)


def _terms(text: str) -> set[str]:
    return set(terms(text))


def _prose(sentence: str) -> bool:
    """A sentence worth answering with: several words, mostly plain ones; not a table row or a code line."""
    words = sentence.replace("**", "").split()
    if len(words) < 6 or sentence.count("|") > 1 or sentence.rstrip().endswith((":", "{", "(")):
        return False
    plain = sum(1 for w in words if w.strip(".,;:!?()'\"`").isalpha())
    return plain / len(words) >= 0.6


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class ExtractiveChatModel(BaseChatModel):
    """A local, deterministic "LLM": answers with the context sentences that share the most terms with the question.

    It expects the RAG prompt of this example (numbered ``[n] (source)`` context blocks and a ``Question:`` line).
    It is labelled as what it is: ``model_name`` ``ragotel-extractive-v1``, provider ``local``.
    """

    model_name: str = "ragotel-extractive-v1"
    max_sentences: int = 3
    faults: Any = None

    @property
    def _llm_type(self) -> str:
        return "ragotel-extractive"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_sentences": self.max_sentences}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if isinstance(self.faults, Faults):
            self.faults.before_llm_call()
        prompt = "\n".join(str(m.content) for m in messages)
        answer = self._answer(prompt)
        message = AIMessage(
            content=answer,
            usage_metadata={
                "input_tokens": _approx_tokens(prompt),
                "output_tokens": _approx_tokens(answer),
                "total_tokens": _approx_tokens(prompt) + _approx_tokens(answer),
            },
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": self.model_name})

    def _answer(self, prompt: str) -> str:
        question = prompt.rsplit("Question:", 1)[-1].strip() if "Question:" in prompt else prompt
        wanted = _terms(question)
        context = prompt.split("Context:", 1)[-1].rsplit("Question:", 1)[0]
        marks = list(_BLOCK.finditer(context))
        scored: list[tuple[float, int, str, str]] = []
        for i, mark in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(context)
            source = mark.group(2)
            # Markdown wraps paragraphs: join continuation lines (not list items, tables, headings) before splitting.
            block = _CONTINUATION.sub(" ", context[mark.end() : end]).replace("`", "")
            for raw in _SENTENCE.split(block):
                sentence = raw.strip(" #*-|`>")
                terms = _terms(sentence)
                if not terms or not _prose(sentence):
                    continue
                overlap = len(wanted & terms)
                if overlap:
                    # Earlier (better-ranked) blocks win ties; long sentences are not favoured for their length.
                    scored.append((overlap / (len(terms) ** 0.5) - 0.01 * i, len(scored), sentence, source))
        if not scored:
            return "I could not find this in the documentation."
        best = sorted(scored, reverse=True)[: self.max_sentences]
        best.sort(key=lambda item: item[1])
        sources = sorted({s for *_, s in best})
        return " ".join(s for _, _, s, _ in best) + f" (sources: {', '.join(sources)})"

    def health(self) -> bool:
        """Healthy unless the llm-errors fault makes every call fail."""
        return not (isinstance(self.faults, Faults) and self.faults.value("llm-errors") >= 1.0)


@dataclass(frozen=True, slots=True)
class LLMChoice:
    """The chat model, what to tell the user about it, and the endpoint a health probe may call (None: local)."""

    model: BaseChatModel
    description: str
    health_url: str | None
    health_headers: dict[str, str] | None = None


def choose_llm(faults: Faults, env: Mapping[str, str] | None = None) -> LLMChoice:
    """ChatOpenAI when ``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` is set (OpenAI, vLLM, Ollama...), else extractive."""
    env = os.environ if env is None else env
    base_url = env.get("OPENAI_BASE_URL", "").strip()
    api_key = env.get("OPENAI_API_KEY", "").strip()
    if not (base_url or api_key):
        model = ExtractiveChatModel(faults=faults)
        return LLMChoice(model, "local extractive answerer (no OPENAI_BASE_URL/OPENAI_API_KEY set; not an LLM)", None)
    from langchain_openai import ChatOpenAI

    class FaultInjectingChatOpenAI(ChatOpenAI):
        """ChatOpenAI that honours the llm-errors switch before calling the endpoint."""

        def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
            faults.before_llm_call()
            return super()._generate(*args, **kwargs)

        async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
            faults.before_llm_call()
            return await super()._agenerate(*args, **kwargs)

    name = env.get("OPENAI_MODEL", "").strip() or "gpt-4o-mini"
    chat = FaultInjectingChatOpenAI(
        model=name,
        base_url=base_url or None,
        api_key=SecretStr(api_key or "unused"),  # local servers (vLLM, Ollama) accept any key
        temperature=0,
        max_retries=1,
        timeout=30,
    )
    endpoint = (base_url or "https://api.openai.com/v1").rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    return LLMChoice(chat, f"OpenAI-compatible endpoint {endpoint}, model {name}", f"{endpoint}/models", headers)

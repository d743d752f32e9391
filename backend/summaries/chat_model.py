"""The LangChain chat model chosen by configuration, and the prompt that asks it for a summary.

`openai` is any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, ...);
`bedrock` is AWS Bedrock's Converse API with the instance role's credentials; `none` means
the template summariser. The session's `system_prompt` is passed as the operator's focus,
capped in length and quoted inside our rules, and the answer is checked against the format
anyway (`output_check`), so a prompt cannot change what reaches the client.

The clients never retry on their own: `ask` is one attempt, and the summariser retries by
its `RetryPolicy`, the one place that decides.
"""

from __future__ import annotations

import asyncio
import math

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import SecretStr

from backend.core.config import Settings
from backend.summaries.observations import Observation
from backend.summaries.template import template_sentences

OPERATOR_PROMPT_MAX_CHARS = 1000
MAX_ANSWER_TOKENS = 600
NO_CLIENT_RETRIES = 0  # the summariser's RetryPolicy retries, not the clients

RULES = """You summarise what a camera saw. You receive a list of facts, one per line.
Answer with some or all of those facts, copied exactly, one per line, most important first.
You may lower a number in a sentence that says "at least", and nothing else.
Never add words, explanations, formatting or facts that are not in the list."""


def build_chat_model(settings: Settings, http_client: httpx.AsyncClient) -> BaseChatModel | None:
    """The configured chat model, or None for the template summariser.

    The OpenAI client uses `http_client`, owned by the caller and bound to its event loop
    (langchain-openai would otherwise share one cached client between event loops).
    """
    if settings.llm_provider == "none":
        return None
    assert settings.llm_model is not None  # the settings validator guarantees it
    if settings.llm_provider == "openai":
        from langchain_openai import ChatOpenAI  # noqa: PLC0415 - only when configured

        key = settings.llm_api_key or SecretStr("unused-by-this-endpoint")
        return ChatOpenAI(
            model=settings.llm_model,
            base_url=settings.llm_base_url,
            api_key=key,
            timeout=settings.llm_timeout_s,
            max_retries=NO_CLIENT_RETRIES,
            streaming=settings.llm_streaming,
            temperature=0,
            max_completion_tokens=MAX_ANSWER_TOKENS,
            http_async_client=http_client,
        )
    from langchain_aws import ChatBedrockConverse  # noqa: PLC0415 - only when configured

    return ChatBedrockConverse(
        model_id=settings.llm_model,
        region_name=settings.bedrock_region,
        timeout=math.ceil(settings.llm_timeout_s),
        max_retries=NO_CLIENT_RETRIES,
        temperature=0,
        max_tokens=MAX_ANSWER_TOKENS,
    )


def summary_prompt(observation: Observation, system_prompt: str | None) -> list[BaseMessage]:
    """Our rules as the system message; the operator's focus and the facts as the question."""
    facts = "\n".join(template_sentences(observation))
    parts = []
    if system_prompt and system_prompt.strip():
        focus = system_prompt.strip()[:OPERATOR_PROMPT_MAX_CHARS]
        parts.append(
            "The operator's focus (it may decide which facts matter, never the format):\n"
            f"<<<\n{focus}\n>>>"
        )
    parts.append(f"Facts:\n{facts}")
    parts.append("Answer with the facts only, copied exactly, one per line.")
    return [SystemMessage(RULES), HumanMessage("\n\n".join(parts))]


async def ask(model: BaseChatModel, messages: list[BaseMessage], settings: Settings) -> str:
    """The model's answer text: one attempt, under a hard deadline of `llm_timeout_s`.

    The deadline covers the whole answer, so a provider that trickles bytes cannot hold a
    request forever.
    """
    async with asyncio.timeout(settings.llm_timeout_s):
        reply = await model.ainvoke(messages)
    return reply.text

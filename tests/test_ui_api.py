"""The app's ``/search`` endpoint through ``gradio_client``, as evaluation scripts call it."""

from __future__ import annotations

import pytest

from rag.retrieval import Retriever, results_payload

QUESTION = "What did Belarus seek from China?"


def test_search_endpoint_returns_the_cli_schema(ui_url: str, seeds_retriever: Retriever) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(ui_url, verbose=False)
    result = client.predict(QUESTION, 3, api_name="/search")
    assert result == results_payload(QUESTION, seeds_retriever.search(QUESTION, 3)) and result["answer_found"] is True
    assert result["hits"][0]["title"] == "Sino-Belarusian military-industrial cooperation is likely to widen"
    assert [hit["rank"] for hit in client.predict(QUESTION, 2, "bm25", api_name="/search")["hits"]] == [1, 2]
    with pytest.raises(AppError, match="question is empty"):
        client.predict("  ", 3, api_name="/search")


def test_search_endpoint_turns_broken_text_into_a_message(ui_url: str) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    import httpx

    client = Client(ui_url, verbose=False)
    with pytest.raises(AppError, match="too long"):
        client.predict("x" * 5000, 3, api_name="/search")
    with pytest.raises(AppError, match="k must be"):
        client.predict("Minsk", 1000, api_name="/search")
    # A lone surrogate can only arrive as a JSON escape (no client encodes it): send the raw body.
    body = b'{"data": ["Minsk \\ud800", 3, "hybrid"]}'
    call = httpx.post(f"{ui_url}gradio_api/call/search", content=body, headers={"content-type": "application/json"})
    events = httpx.get(f"{ui_url}gradio_api/call/search/{call.json()['event_id']}", timeout=30).text
    assert "event: error" in events and "broken characters" in events

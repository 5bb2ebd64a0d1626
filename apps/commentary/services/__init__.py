"""Commentary writes: market reports (``reports``), trade explanations (``explanations``), what an approval decision
does to either (``decisions``), and the one way Claude is called and accounted for (``calls``).

Nothing here is on the order path: reports run from beat, explanations from their own task on the commentary queue
after an entry fill, and neither is published before a person approves it.
"""

from apps.commentary.services.calls import Answer, claude_call
from apps.commentary.services.explanations import (
    EXPLANATIONS_KEY,
    TradeNotFound,
    citation_problem,
    citations_parse,
    explanation_generate,
    explanation_template,
)
from apps.commentary.services.reports import (
    MAX_OUTPUT_TOKENS,
    PENDING_KEY,
    TEMPLATE_MODEL,
    TEMPLATE_NOTICE,
    parse_day,
    report_generate,
    report_template,
)

__all__ = [
    "EXPLANATIONS_KEY",
    "MAX_OUTPUT_TOKENS",
    "PENDING_KEY",
    "TEMPLATE_MODEL",
    "TEMPLATE_NOTICE",
    "Answer",
    "TradeNotFound",
    "citation_problem",
    "citations_parse",
    "claude_call",
    "explanation_generate",
    "explanation_template",
    "parse_day",
    "report_generate",
    "report_template",
]

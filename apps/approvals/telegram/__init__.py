"""The Telegram approvals and operator bot (``manage.py telegram_bot``): long polling with python-telegram-bot.

``messages`` renders requests and buttons, ``presses`` turns button presses and edit replies into decisions,
``commands`` runs the operator commands, ``outbox`` shows pending requests and closes decided ones, ``bot`` wires it
all into one PTB ``Application``.  ``presses`` and ``commands`` are synchronous (they use the ORM); ``bot`` and
``outbox`` call them through ``sync_to_async``, never the ORM from the event loop.  Runbook: docs/telegram.md.
"""

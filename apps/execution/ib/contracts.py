"""Contracts as IB knows them, built from and mapped back to the platform's identities (OCC symbols, tickers)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from ibapi.contract import Contract

from apps.core import occ

OPTION_MULTIPLIER = "100"


def option_contract(option_symbol: str) -> Contract:
    """An OPT contract on SMART in USD for an OCC symbol (``SPY261127C00600000``)."""
    parsed = occ.parse(option_symbol)
    contract = Contract()
    contract.symbol = parsed.root
    contract.secType = "OPT"
    contract.lastTradeDateOrContractMonth = f"{parsed.expiry:%Y%m%d}"
    contract.strike = float(parsed.strike)
    contract.right = parsed.right
    contract.multiplier = OPTION_MULTIPLIER
    contract.exchange = "SMART"
    contract.currency = "USD"
    return contract


def stock_contract(ticker: str) -> Contract:
    contract = Contract()
    contract.symbol = ticker.upper()
    contract.secType = "STK"
    contract.exchange = "SMART"
    contract.currency = "USD"
    return contract


def contract_for(key: str) -> Contract:
    """The contract of a platform key: an OCC symbol for an option, else a ticker."""
    try:
        return option_contract(key)
    except occ.InvalidOptionSymbol:
        return stock_contract(key)


def contract_key(contract: Contract) -> str:
    """The platform's key of an IB contract: the OCC symbol of an option, the ticker of anything else."""
    if contract.secType == "OPT":
        expiry_text = (contract.lastTradeDateOrContractMonth or "")[:8]
        expiry = date(int(expiry_text[:4]), int(expiry_text[4:6]), int(expiry_text[6:8]))
        strike = Decimal(str(contract.strike)).normalize()
        return occ.build(contract.symbol, expiry, contract.right, strike)
    return str(contract.symbol).upper()

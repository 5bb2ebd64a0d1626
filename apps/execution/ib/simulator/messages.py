"""Server -> client messages with the exact field lists the ``ibapi`` 9.81 decoder reads at server version 157.

Fixed-count messages (errors, ids, *_END, account summary) are dropped by the client when a field is extra; the
others raise out of the client's loop when a field is missing, so every builder here is checked field by field
against the real decoder in ``tests/execution/test_tws_sim.py``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from apps.execution.ib.simulator.instruments import Instrument
from apps.execution.ib.simulator.records import SimExecution, SimOrder
from apps.execution.ib.simulator.wire import UNSET_DOUBLE, fmt_bool, fmt_decimal

NEW_YORK = ZoneInfo("America/New_York")


class In:
    """Message ids the client sends (``ibapi.message.OUT``)."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_COMPLETED_ORDERS = 99


class Out:
    """Message ids the server sends (``ibapi.message.IN``)."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    NEXT_VALID_ID = 9
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    CURRENT_TIME = 49
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


Fields = list[str]


def connection_time(instant: datetime) -> str:
    """``20261120 09:15:02 EST``: New York time with its abbreviation, as TWS answers the handshake."""
    local = instant.astimezone(NEW_YORK)
    return f"{local:%Y%m%d %H:%M:%S} {local.tzname()}"


def execution_time(instant: datetime) -> str:
    """``20261120  09:15:02`` (two spaces), New York time: the execution time as TWS writes it."""
    return f"{instant.astimezone(NEW_YORK):%Y%m%d  %H:%M:%S}"


def error(req_id: int, code: int, message: str) -> Fields:
    return [str(Out.ERR_MSG), "2", str(req_id), str(code), message]


def next_valid_id(order_id: int) -> Fields:
    return [str(Out.NEXT_VALID_ID), "1", str(order_id)]


def managed_accounts(account: str) -> Fields:
    return [str(Out.MANAGED_ACCTS), "1", account]


def current_time(epoch_seconds: int) -> Fields:
    return [str(Out.CURRENT_TIME), "1", str(epoch_seconds)]


def open_order_end() -> Fields:
    return [str(Out.OPEN_ORDER_END), "1"]


def execution_data_end(req_id: int) -> Fields:
    return [str(Out.EXECUTION_DATA_END), "1", str(req_id)]


def contract_data_end(req_id: int) -> Fields:
    return [str(Out.CONTRACT_DATA_END), "1", str(req_id)]


def tick_snapshot_end(req_id: int) -> Fields:
    return [str(Out.TICK_SNAPSHOT_END), "1", str(req_id)]


def position_end() -> Fields:
    return [str(Out.POSITION_END), "1"]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> Fields:
    return [str(Out.ACCOUNT_SUMMARY), "1", str(req_id), account, tag, value, currency]


def account_summary_end(req_id: int) -> Fields:
    return [str(Out.ACCOUNT_SUMMARY_END), "1", str(req_id)]


def completed_orders_end() -> Fields:
    return [str(Out.COMPLETED_ORDERS_END)]


def tick_price(req_id: int, tick_type: int, price: Decimal | None, size: int, can_auto_execute: bool) -> Fields:
    # A side that went away is written as price -1, size 0, as TWS does.
    price_text = fmt_decimal(price) if price is not None else "-1"
    return [str(Out.TICK_PRICE), "6", str(req_id), str(tick_type), price_text, str(size), fmt_bool(can_auto_execute)]


def tick_size(req_id: int, tick_type: int, size: int) -> Fields:
    return [str(Out.TICK_SIZE), "6", str(req_id), str(tick_type), str(size)]


def order_status(order: SimOrder) -> Fields:
    return [
        str(Out.ORDER_STATUS),
        str(order.order_id),
        order.status,
        str(order.filled),
        str(order.remaining),
        fmt_decimal(order.avg_fill_price),
        str(order.perm_id),
        str(order.parent_id),
        fmt_decimal(order.last_fill_price),
        str(order.client_id),
        "",  # whyHeld
        "0",  # mktCapPrice
    ]


def _contract_fields(instrument: Instrument, exchange: str) -> Fields:
    """conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange, currency, localSymbol, class."""
    return [
        str(instrument.con_id),
        instrument.symbol,
        instrument.sec_type,
        instrument.expiry,
        instrument.strike_text,
        instrument.right,
        instrument.multiplier_text,
        exchange,
        "USD",
        instrument.local_symbol,
        instrument.trading_class,
    ]


def open_order(order: SimOrder, instrument: Instrument) -> Fields:
    """The 120 fields of a plain (non-combo, non-algo) order, positions as in docs/tws_simulator.md."""
    fields: Fields = [str(Out.OPEN_ORDER), str(order.order_id)]
    fields += _contract_fields(instrument, order.exchange)
    fields += [
        order.action,  # 13
        str(order.quantity),
        order.order_type,
        fmt_decimal(order.lmt_price),
        fmt_decimal(order.aux_price),
        order.tif,
        order.oca_group,
        order.account,  # 20
        "O",  # openClose
        "0",  # origin: customer
        order.order_ref,
        str(order.client_id),
        str(order.perm_id),  # 25
        "0",  # outsideRth
        "0",  # hidden
        "0",  # discretionaryAmt
        "",  # goodAfterTime
        "",  # sharesAllocation (deprecated) 30
        "",  # faGroup
        "",  # faMethod
        "",  # faPercentage
        "",  # faProfile
        "",  # modelCode 35
        "",  # goodTillDate
        "",  # rule80A
        "",  # percentOffset
        "",  # settlingFirm
        "0",  # shortSaleSlot 40
        "",  # designatedLocation
        "-1",  # exemptCode
        "0",  # auctionStrategy
        "",  # startingPrice
        "",  # stockRefPrice 45
        "",  # delta
        "",  # stockRangeLower
        "",  # stockRangeUpper
        "0",  # displaySize
        "0",  # blockOrder 50
        "0",  # sweepToFill
        "0",  # allOrNone
        "",  # minQty
        str(order.oca_type),
        "0",  # eTradeOnly 55
        "0",  # firmQuoteOnly
        "",  # nbboPriceCap
        str(order.parent_id),
        "0",  # triggerMethod
        "",  # volatility 60
        "0",  # volatilityType
        "",  # deltaNeutralOrderType (non-empty would add 8 fields)
        "",  # deltaNeutralAuxPrice
        "0",  # continuousUpdate
        "0",  # referencePriceType 65
        "",  # trailStopPrice
        "",  # trailingPercent
        "",  # basisPoints
        "",  # basisPointsType
        "",  # comboLegsDescrip 70
        "0",  # comboLegsCount
        "0",  # orderComboLegsCount
        "0",  # smartComboRoutingParamsCount
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize 75
        "",  # scalePriceIncrement
        "",  # hedgeType
        "0",  # optOutSmartRouting
        "",  # clearingAccount
        "",  # clearingIntent 80
        "0",  # notHeld
        "0",  # deltaNeutralContract present
        "",  # algoStrategy
        "0",  # solicited
        "0",  # whatIf 85
        order.status,
    ]
    fields += [""] * 6  # initMargin/maintMargin/equityWithLoan before and change 87-92
    fields += [""] * 3  # margin after 93-95
    fields += ["", "", ""]  # commission, min, max 96-98
    fields += ["", ""]  # commissionCurrency, warningText 99-100
    fields += ["0", "0"]  # randomizeSize, randomizePrice
    fields += ["0"]  # conditionsCount 103
    fields += [""]  # adjustedOrderType 104
    fields += [""] * 6  # triggerPrice, trailStopPrice, lmtPriceOffset, adjusted stop/stop-limit/trailing 105-110
    fields += ["0"]  # adjustableTrailingUnit 111
    fields += ["", "", ""]  # soft dollar tier 112-114
    fields += [""]  # cashQty 115
    fields += ["0", "0", "0", "0"]  # dontUseAutoPriceForHedge, isOmsContainer, discretionaryUpToLimit, priceMgmt
    return fields


def completed_order(order: SimOrder, instrument: Instrument) -> Fields:
    """The 92 fields of COMPLETED_ORDER (no orderId, no clientId: clients match on orderRef and permId)."""
    fields: Fields = [str(Out.COMPLETED_ORDER)]
    fields += _contract_fields(instrument, order.exchange)  # 1-11
    fields += [
        order.action,
        str(order.quantity),
        order.order_type,
        fmt_decimal(order.lmt_price),
        fmt_decimal(order.aux_price),
        order.tif,
        order.oca_group,
        order.account,
        "O",  # openClose
        "0",  # origin
        order.order_ref,
        str(order.perm_id),
        "0",  # outsideRth
        "0",  # hidden
        "0",  # discretionaryAmt
        "",  # goodAfterTime
        "",  # faGroup
        "",  # faMethod
        "",  # faPercentage
        "",  # faProfile
        "",  # modelCode
        "",  # goodTillDate
        "",  # rule80A
        "",  # percentOffset
        "",  # settlingFirm
        "0",  # shortSaleSlot
        "",  # designatedLocation
        "-1",  # exemptCode
        "",  # startingPrice
        "",  # stockRefPrice
        "",  # delta
        "",  # stockRangeLower
        "",  # stockRangeUpper
        "0",  # displaySize
        "0",  # sweepToFill
        "0",  # allOrNone
        "",  # minQty
        str(order.oca_type),
        "0",  # triggerMethod
        "",  # volatility
        "0",  # volatilityType
        "",  # deltaNeutralOrderType
        "",  # deltaNeutralAuxPrice
        "0",  # continuousUpdate
        "0",  # referencePriceType
        "",  # trailStopPrice
        "",  # trailingPercent
        "",  # comboLegsDescrip
        "0",  # comboLegsCount
        "0",  # orderComboLegsCount
        "0",  # smartComboRoutingParamsCount
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize
        "",  # scalePriceIncrement
        "",  # hedgeType
        "",  # clearingAccount
        "",  # clearingIntent
        "0",  # notHeld
        "0",  # deltaNeutralContract present
        "",  # algoStrategy
        "0",  # solicited
        order.status,
        "0",  # randomizeSize
        "0",  # randomizePrice
        "0",  # conditionsCount
        "",  # trailStopPrice
        "",  # lmtPriceOffset
        "",  # cashQty
        "0",  # dontUseAutoPriceForHedge
        "0",  # isOmsContainer
        "",  # autoCancelDate
        str(order.filled),  # filledQuantity
        "0",  # refFuturesConId
        "0",  # autoCancelParent
        "",  # shareholder
        "0",  # imbalanceOnly
        "0",  # routeMarketableToBbo
        "0",  # parentPermId
        connection_time(order.completed_at or order.created_at),  # completedTime
        order.completed_status or order.status,
    ]
    return fields


def execution_data(req_id: int, execution: SimExecution, instrument: Instrument, account: str) -> Fields:
    exchange = "CBOE" if instrument.sec_type == "OPT" else "ISLAND"
    fields: Fields = [str(Out.EXECUTION_DATA), str(req_id), str(execution.order_id)]
    fields += _contract_fields(instrument, exchange)
    fields += [
        execution.exec_id,
        execution_time(execution.time),
        account,
        exchange,
        execution.side,
        str(execution.shares),
        fmt_decimal(execution.price),
        str(execution.perm_id),
        str(execution.client_id),
        "0",  # liquidation
        str(execution.cum_qty),
        fmt_decimal(execution.avg_price),
        execution.order_ref,
        "",  # evRule
        "",  # evMultiplier
        "",  # modelCode
        "2",  # lastLiquidity: removed liquidity (a marketable order)
    ]
    return fields


def commission_report(execution: SimExecution) -> Fields:
    realized = fmt_decimal(execution.realized_pnl) if execution.realized_pnl is not None else UNSET_DOUBLE
    return [
        str(Out.COMMISSION_REPORT),
        "1",
        execution.exec_id,
        fmt_decimal(execution.commission),
        "USD",
        realized,
        UNSET_DOUBLE,  # yield
        "",  # yieldRedemptionDate
    ]


def position_data(account: str, instrument: Instrument, position: int, avg_cost: Decimal) -> Fields:
    fields: Fields = [str(Out.POSITION_DATA), "3", account]
    # TWS leaves the exchange of a position empty.
    fields += _contract_fields(instrument, "")
    fields += [str(position), fmt_decimal(avg_cost)]
    return fields

"""The synthetic session generator: format, determinism, market realism, noise and the make_session command."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.core import calendar, occ
from apps.ingestion.sessions import NOISE_KINDS, build_session, generate_session, session_lines
from apps.ingestion.sessions.chain import expiries_for

DAY = date(2026, 11, 20)  # a Friday: 0DTE today, 1DTE on Monday the 23rd
SEED = 7
SESSION = calendar.session_for(DAY)
OPEN_MS = int(SESSION.open.timestamp() * 1000)
CLOSE_MS = int(SESSION.close.timestamp() * 1000)
OPTIONS_CLOSE_MS = int(SESSION.options_close.timestamp() * 1000)
LEVELS = {"SPY": 660.0, "QQQ": 600.0, "IWM": 238.0}
CHANNELS = ("option_trades", "price", "gex", "gex_strike", "gex_strike_expiry")


def ny_ms(wall: time, day: date = DAY) -> int:
    return int(datetime.combine(day, wall, tzinfo=calendar.NEW_YORK).timestamp() * 1000)


@pytest.fixture(scope="module")
def day_records() -> list[dict]:
    """The clean full day of seed 7, built once for the module (a few seconds)."""
    return list(generate_session(DAY, SEED, noise=0.0))


def data_frames(records: list[dict], family: str) -> list[tuple[int, dict]]:
    return [
        (r["received_at"], r["frame"][1])
        for r in records
        if r["frame"][0].split(":", 1)[0] == family and "status" not in r["frame"][1]
    ]


def test_the_same_seed_gives_the_same_lines_and_another_seed_does_not():
    window = {"start": time(9, 25), "end": time(9, 45)}
    first = list(session_lines(DAY, SEED, **window))
    again = list(session_lines(DAY, SEED, **window))
    other = list(session_lines(DAY, SEED + 1, **window))
    assert first == again
    assert len(first) > 500
    assert first[17:] != other[17:]  # past the join acks, which are the same whatever the seed


def test_a_window_is_an_exact_slice_of_the_full_day(day_records):
    window = [r for r in generate_session(DAY, SEED, noise=0.0, start=time(11, 0), end=time(11, 20))]
    data = [r for r in window if "status" not in r["frame"][1]]
    low, high = ny_ms(time(11, 0)), ny_ms(time(11, 20))
    expected = [r for r in day_records if low <= r["received_at"] < high and "status" not in r["frame"][1]]
    assert data == expected


def test_every_line_is_a_json_record_of_a_socket_frame_in_received_order(day_records):
    texts = list(session_lines(DAY, SEED, noise=0.0, start=time(9, 20), end=time(9, 50)))
    for text in texts:
        record = json.loads(text)
        assert set(record) == {"received_at", "frame"}
        assert isinstance(record["received_at"], int)
        channel, payload = record["frame"]
        assert isinstance(channel, str) and isinstance(payload, dict)
    stamps = [r["received_at"] for r in day_records]
    assert stamps == sorted(stamps)


def test_the_full_day_fits_the_replay_budget(day_records):
    assert 20_000 <= len(day_records) <= 40_000


def test_the_session_opens_with_a_join_ack_for_every_channel_and_every_channel_carries_data(day_records):
    expected = {"flow-alerts", "news"} | {f"{name}:{t}" for name in CHANNELS for t in LEVELS}
    acks = [r["frame"] for r in day_records[: len(expected)]]
    assert {channel for channel, _ in acks} == expected
    assert all(payload == {"response": {}, "status": "ok"} for _, payload in acks)
    carrying = Counter(r["frame"][0] for r in day_records[len(expected) :])
    assert set(carrying) == expected
    assert 10 <= carrying["news"] <= 30


def test_underlying_prices_stay_plausible_and_tick_every_15_seconds(day_records):
    by_ticker = defaultdict(list)
    for received, payload in data_frames(day_records, "price"):
        assert 0 < received - payload["time"] < 1000
        by_ticker[payload["ticker"]].append((payload["time"], Decimal(payload["close"])))
    for ticker, ticks in by_ticker.items():
        level = Decimal(str(LEVELS[ticker]))
        assert all(level * Decimal("0.88") < close < level * Decimal("1.12") for _, close in ticks)
        session = [(ms, close) for ms, close in ticks if OPEN_MS <= ms <= OPTIONS_CLOSE_MS]
        assert all(b[0] - a[0] == 15_000 for a, b in zip(session, session[1:], strict=False))
        assert all(abs(b[1] / a[1] - 1) < Decimal("0.004") for a, b in zip(session, session[1:], strict=False))
        assert session[0][0] == OPEN_MS and session[-1][0] == OPTIONS_CLOSE_MS
        day_range = max(c for _, c in session) / min(c for _, c in session) - 1
        assert Decimal("0.001") < day_range < Decimal("0.06")


def test_option_trades_are_consistent_with_their_quote_symbol_and_side(day_records):
    expiries = set()
    side_tags = {"ask_vol": "ask_side", "bid_vol": "bid_side", "mid_vol": "mid_side", "no_side_vol": "no_side"}
    for received, trade in data_frames(day_records, "option_trades"):
        price, bid, ask = Decimal(trade["price"]), Decimal(trade["nbbo_bid"]), Decimal(trade["nbbo_ask"])
        assert Decimal("0.01") <= price and bid <= price <= ask
        assert Decimal(trade["premium"]) == price * trade["size"] * 100
        symbol = occ.parse(trade["option_symbol"])
        assert symbol.root == trade["underlying_symbol"]
        assert symbol.strike == Decimal(trade["strike"])
        assert symbol.expiry == date.fromisoformat(trade["expiry"])
        assert symbol.right == ("C" if trade["option_type"] == "call" else "P")
        assert abs(symbol.strike - Decimal(trade["underlying_price"])) <= 8
        sides = [name for name in side_tags if trade[name]]
        assert len(sides) == 1 and trade[sides[0]] == trade["size"]
        assert side_tags[sides[0]] == trade["tags"][0]
        assert trade["executed_at"] <= trade["created_at"] < received
        assert trade["volume"] >= trade["size"] and trade["open_interest"] > 0
        assert 0.03 < float(trade["implied_volatility"]) < 1.6
        delta = float(trade["delta"])
        assert (0 <= delta <= 1) if symbol.is_call else (-1 <= delta <= 0)
        expiries.add(symbol.expiry)
    assert expiries == {DAY, date(2026, 11, 23), date(2026, 12, 4)}


def test_a_contracts_volume_never_goes_down_and_counts_each_print(day_records):
    by_contract = defaultdict(list)
    for _, trade in data_frames(day_records, "option_trades"):
        by_contract[trade["option_symbol"]].append((trade["executed_at"], trade["volume"], trade["size"]))
    for prints in by_contract.values():
        prints.sort()
        for (t1, v1, _), (t2, v2, size2) in zip(prints, prints[1:], strict=False):
            assert v2 >= v1 + (size2 if t2 > t1 else 0)


def test_near_the_money_contracts_of_every_expiry_print_every_minute(day_records):
    closes = {
        (p["ticker"], p["time"]): float(p["close"])
        for _, p in data_frames(day_records, "price")
        if p["time"] % 60_000 == 0
    }
    printed = defaultdict(set)
    for _, trade in data_frames(day_records, "option_trades"):
        minute = trade["executed_at"] - trade["executed_at"] % 60_000
        printed[(trade["underlying_symbol"], minute, trade["expiry"], trade["option_type"])].add(float(trade["strike"]))
    expiries = ("2026-11-20", "2026-11-23", "2026-12-04")
    for minute in range(OPEN_MS, OPTIONS_CLOSE_MS, 60_000):
        for ticker in LEVELS:
            spot = closes[(ticker, minute)]
            for expiry in expiries:
                for right in ("call", "put"):
                    strikes = printed[(ticker, minute, expiry, right)]
                    assert any(abs(k - spot) <= 1 for k in strikes), (ticker, minute, expiry, right)


def test_an_alerted_contract_keeps_printing_every_minute_for_the_next_twenty_minutes(day_records):
    minutes_printed = defaultdict(set)
    for _, trade in data_frames(day_records, "option_trades"):
        minutes_printed[trade["option_symbol"]].add(trade["executed_at"] // 60_000)
    for _, alert in data_frames(day_records, "flow-alerts"):
        first = alert["executed_at"] // 60_000 + 1
        last = min(first + 19, (OPTIONS_CLOSE_MS - 1) // 60_000)
        assert set(range(first, last + 1)) <= minutes_printed[alert["option_chain"]], alert["option_chain"]


def test_flow_alerts_are_large_consistent_and_cover_every_bucket_and_the_closing_window(day_records):
    alerts = [payload for _, payload in data_frames(day_records, "flow-alerts")]
    assert 150 <= len(alerts) <= 400
    trades_by_id = {t["id"]: t for _, t in data_frames(day_records, "option_trades")}
    buckets = defaultdict(set)
    closing = Counter()
    for alert in alerts:
        symbol = occ.parse(alert["option_chain"])
        assert symbol.root == alert["ticker"]
        assert abs(float(symbol.strike) - alert["underlying_price"]) <= 8
        assert alert["total_premium"] == alert["total_ask_side_prem"] + alert["total_bid_side_prem"]
        assert alert["total_size"] == alert["ask_vol"] + alert["bid_vol"]
        assert Decimal(alert["bid"]) <= Decimal(str(alert["price"])) <= Decimal(alert["ask"])
        assert alert["start_time"] <= alert["end_time"] == alert["executed_at"]
        assert alert["volume"] >= alert["total_size"]
        fills = [trades_by_id[i] for i in alert["trade_ids"]]
        assert sum(Decimal(f["premium"]) for f in fills) == Decimal(str(alert["total_premium"]))
        assert all(f["option_symbol"] == alert["option_chain"] for f in fills)
        days_out = calendar.trading_days_between(DAY, symbol.expiry)
        buckets[alert["ticker"]].add("0dte" if days_out == 0 else "1dte" if days_out == 1 else "14d")
        if ny_ms(time(15, 30)) <= alert["executed_at"] < ny_ms(time(15, 50)):
            closing[alert["ticker"]] += 1
    assert all(buckets[t] == {"0dte", "1dte", "14d"} for t in LEVELS)
    assert all(closing[t] >= 2 for t in LEVELS)
    big = [a for a in alerts if a["ticker"] in ("SPY", "QQQ") and a["total_premium"] >= 150_000]
    assert len(big) > len(alerts) / 3


def test_flow_direction_is_followed_by_the_underlying_often_but_not_always(day_records):
    prices = defaultdict(dict)
    for _, tick in data_frames(day_records, "price"):
        prices[tick["ticker"]][tick["time"]] = float(tick["close"])
    outcomes = []
    for _, alert in data_frames(day_records, "flow-alerts"):
        if alert["ask_vol"] <= alert["bid_vol"] or alert["executed_at"] > CLOSE_MS - 30 * 60_000:
            continue
        direction = 1 if occ.parse(alert["option_chain"]).is_call else -1
        at = alert["executed_at"] - alert["executed_at"] % 15_000
        later = prices[alert["ticker"]][at + 20 * 60_000]
        outcomes.append(direction * (later - prices[alert["ticker"]][at]) > 0)
    share = sum(outcomes) / len(outcomes)
    assert 0.5 < share < 0.9


def test_gex_strike_profiles_flip_near_spot_with_a_call_wall_above_and_a_put_wall_below(day_records):
    snapshots = defaultdict(list)
    for _, row in data_frames(day_records, "gex_strike"):
        snapshots[(row["ticker"], row["timestamp"])].append(row)
    assert len(snapshots) == 3 * ((OPTIONS_CLOSE_MS - OPEN_MS) // 300_000 + 1)
    for rows in snapshots.values():
        assert len(rows) == 15
        rows.sort(key=lambda r: Decimal(r["strike"]))
        net = [Decimal(r["call_gamma_oi"]) + Decimal(r["put_gamma_oi"]) for r in rows]
        assert net[0] < 0 < net[-1]
        call_wall = max(rows, key=lambda r: Decimal(r["call_gamma_oi"]))
        put_wall = min(rows, key=lambda r: Decimal(r["put_gamma_oi"]))
        assert Decimal(put_wall["strike"]) < Decimal(call_wall["strike"])
    gex = data_frames(day_records, "gex")
    assert all(set(p) >= {"gamma_per_one_percent_move_oi", "vanna_per_one_percent_move_dir", "price"} for _, p in gex)
    assert len(data_frames(day_records, "gex_strike_expiry")) > 0


def test_noise_lines_match_the_requested_fraction_kind_by_kind():
    window = {"start": time(10, 0), "end": time(10, 30)}
    clean = build_session(DAY, SEED, noise=0.0, **window)
    noisy = build_session(DAY, SEED, noise=0.02, **window)
    wanted = round(0.02 * clean.stats.lines)
    assert sum(noisy.stats.noise.values()) == wanted == noisy.stats.lines - clean.stats.lines
    assert all(abs(noisy.stats.noise[kind] - wanted / 4) <= 1 for kind in NOISE_KINDS)
    clean_frames = {json.dumps(json.loads(line.text)["frame"], sort_keys=True) for line in clean.lines}
    seen = Counter()
    for line in noisy.lines:
        try:
            record = json.loads(line.text)
        except json.JSONDecodeError:
            seen["broken"] += 1
            continue
        channel, payload = record["frame"]
        family = channel.split(":", 1)[0]
        if family not in {"flow-alerts", "news", *CHANNELS}:
            seen["unknown_channel"] += 1
        elif json.dumps(record["frame"], sort_keys=True) not in clean_frames:
            seen["missing_field"] += 1
    assert seen == Counter({k: noisy.stats.noise[k] for k in ("broken", "unknown_channel", "missing_field")})
    stamps = [line.received_at for line in noisy.lines]
    assert stamps == sorted(stamps)


def test_the_ingestion_normalizer_accepts_every_clean_line_and_rejects_each_noise_line_for_its_kind():
    from apps.ingestion.uw.lines import parse_line
    from apps.ingestion.uw.normalize import NormalizationError, is_join_ack, normalize_frame

    session = build_session(DAY, SEED, noise=0.02, start=time(15, 25), end=time(15, 55))
    rejected, repeats, hashes = Counter(), 0, set()
    for line in session.lines:
        try:
            parsed = parse_line(line.text)
            if not is_join_ack(parsed.payload):
                normalize_frame(parsed.channel, parsed.payload)
        except NormalizationError as exc:
            assert line.noise, f"clean line rejected ({exc}): {line.text[:200]}"
            rejected[(str(exc.kind), line.noise)] += 1
            continue
        repeats += parsed.frame_hash in hashes
        hashes.add(parsed.frame_hash)
    noise = session.stats.noise
    assert repeats == noise["duplicate"]
    assert rejected == Counter(
        {
            ("broken_json", "broken"): noise["broken"],
            ("unknown_channel", "unknown_channel"): noise["unknown_channel"],
            ("missing_field", "missing_field"): noise["missing_field"],
        }
    )


def test_an_early_close_day_stops_at_its_own_options_close():
    early = date(2026, 11, 27)
    session = calendar.session_for(early)
    records = list(generate_session(early, SEED, noise=0.0, start=time(12, 40), end=time(14, 0)))
    last_tick = max(p["time"] for _, p in data_frames(records, "price"))
    assert last_tick == int(session.options_close.timestamp() * 1000)
    assert all(r["received_at"] < int(session.options_close.timestamp() * 1000) + 10_000 for r in records)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 20), (date(2026, 11, 20), date(2026, 11, 23), date(2026, 12, 4))),
        (date(2026, 11, 25), (date(2026, 11, 25), date(2026, 11, 27), date(2026, 12, 11))),  # over Thanksgiving
        (date(2026, 3, 20), (date(2026, 3, 20), date(2026, 3, 23), date(2026, 4, 10))),  # 2026-04-03 is Good Friday
    ],
)
def test_expiries_are_today_the_next_trading_day_and_a_trading_friday_two_to_four_weeks_out(day, expected):
    assert tuple(expiries_for(day).values()) == expected


def test_a_window_that_ends_before_it_starts_or_an_impossible_noise_share_is_refused():
    with pytest.raises(ValueError, match="window"):
        build_session(DAY, SEED, start=time(11, 0), end=time(10, 0))
    with pytest.raises(ValueError, match="noise"):
        build_session(DAY, SEED, noise=0.7)


def test_the_command_writes_gzip_into_a_new_directory_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "sessions" / "day.ndjson.gz"
    call_command(
        "make_session", "--date", "2026-11-20", "--seed", "7", "--out", str(out), "--start", "09:25", "--end", "09:40"
    )
    with gzip.open(out, "rt") as handle:
        lines = handle.read().splitlines()
    assert lines == list(session_lines(DAY, SEED, start=time(9, 25), end=time(9, 40)))
    first_bytes = out.read_bytes()
    call_command(
        "make_session", "--date", "2026-11-20", "--seed", "7", "--out", str(out), "--start", "09:25", "--end", "09:40"
    )
    assert out.read_bytes() == first_bytes  # no time stamp in the gzip header: the same session, the same bytes
    summary = capsys.readouterr().out
    assert f"{len(lines)} lines" in summary and "option_trades" in summary


def test_the_command_writes_plain_ndjson_without_noise_when_asked(tmp_path: Path):
    out = tmp_path / "day.ndjson"
    call_command(
        "make_session",
        "--date",
        "2026-11-20",
        "--seed",
        "3",
        "--out",
        str(out),
        "--start",
        "15:30",
        "--end",
        "15:35",
        "--noise",
        "0",
        "--tickers",
        "SPY",
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["frame"][0] for r in records} >= {"price:SPY", "option_trades:SPY"}
    assert not any(r["frame"][0].endswith(("QQQ", "IWM")) for r in records)


def test_the_command_refuses_a_holiday(tmp_path):
    with pytest.raises(CommandError, match="not a trading day"):
        call_command("make_session", "--date", "2026-11-26", "--seed", "7", "--out", str(tmp_path / "x.ndjson"))
    assert not (tmp_path / "x.ndjson").exists()


def test_the_command_refuses_a_date_that_does_not_exist(tmp_path):
    with pytest.raises(CommandError, match="not a date"):
        call_command("make_session", "--date", "2026-02-30", "--seed", "7", "--out", str(tmp_path / "x.ndjson"))

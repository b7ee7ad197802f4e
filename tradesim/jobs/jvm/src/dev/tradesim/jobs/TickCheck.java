package dev.tradesim.jobs;

import java.math.BigDecimal;
import java.util.Iterator;
import java.util.Set;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.json.JsonReadFeature;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.DeserializationFeature;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * A `market_data` record checked as `tradesim.domain.events.Tick` (pydantic, lax mode) checks it: the same
 * records pass and fail, and a failure names the same first field. Held to it by
 * tests/integration/flink/test_tick_check.py (generated records through both) and test_bars.py (on the cluster).
 */
final class TickCheck {
    static final Pattern SYMBOL = Pattern.compile("[A-Z][A-Z0-9.\\-]{0,15}");
    static final BigDecimal MAX_PRICE = new BigDecimal("1000000");
    static final int PRICE_PLACES = 4;
    static final long MAX_PRINT_SIZE = 1_000_000_000L;
    static final long MAX_EPOCH_MS = 253_402_300_799_999L;
    static final Set<String> FIELDS = Set.of("schema_version", "type", "symbol", "bid", "ask", "last", "size",
            "event_time_ms", "seq", "scenario_id", "run_id");
    /** pydantic-core's integer text (after trimming): digits, single underscores between them, a ".0…" end. */
    private static final Pattern INTEGER_TEXT = Pattern.compile("[+-]?[0-9]+(_[0-9]+)*(\\.0+)?");
    /** what Python's Decimal reads as not finite (pydantic then says "finite number") */
    private static final Pattern NOT_FINITE = Pattern.compile("[+-]?(s?nan[0-9]*|inf|infinity)",
            Pattern.CASE_INSENSITIVE);
    /** Unicode White_Space: what pydantic-core (Rust's `trim`) strips around an integer's text */
    private static final String UNICODE_SPACE = "\t\n\u000b\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004"
            + "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";
    /** Python's `str.isspace`: what pydantic strips around a decimal's text (White_Space plus \x1c–\x1f) */
    private static final String PYTHON_SPACE = UNICODE_SPACE + "\u001c\u001d\u001e\u001f";

    private TickCheck() {}

    /** A bad record: the message is "field: problem", as InvalidRecord's. */
    static final class Invalid extends Exception {
        private static final long serialVersionUID = 1L;

        Invalid(String field, String problem) {
            super(field + ": " + problem, null, false, false);
        }
    }

    /** Python's limit on an integer literal (`sys.int_info.default_max_str_digits`): its json refuses a longer one. */
    static final int MAX_INT_DIGITS = 4300;

    /** The reader `parse` needs: floats as the double Python's json makes of them (NaN and Infinity too),
     * integers exact, trailing data refused; number length left to `parse` (Python bounds integers only). */
    static ObjectMapper mapper() {
        JsonFactory factory = JsonFactory.builder()
                .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
                .streamReadConstraints(StreamReadConstraints.builder().maxNumberLength(Integer.MAX_VALUE).build())
                .build();
        return new ObjectMapper(factory).enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    }

    static Bars.Tick parse(ObjectMapper json, String raw) throws Invalid {
        JsonNode n;
        try {
            n = json.readTree(raw);
        } catch (JsonProcessingException e) {
            throw new Invalid("$", "not JSON: " + e.getOriginalMessage());
        } catch (RuntimeException e) {  // the reader's own limits: refused as Python refuses what it cannot read
            throw new Invalid("$", "not JSON: " + e);
        }
        if (n != null && hugeInteger(n)) {
            throw new Invalid("$", "not JSON: an integer of more than " + MAX_INT_DIGITS + " digits");
        }
        if (n == null || n.isMissingNode()) {
            throw new Invalid("$", "not JSON: no value");
        }
        if (!n.isObject()) {
            throw new Invalid("$", "not a JSON object");
        }
        literalOne(n);
        JsonNode type = n.get("type");
        if (type != null && !(type.isTextual() && type.textValue().equals("tick"))) {
            throw new Invalid("type", "Input should be 'tick'");
        }
        Bars.Tick t = new Bars.Tick();
        t.symbol = text(n, "symbol");
        if (!SYMBOL.matcher(t.symbol).matches()) {
            throw new Invalid("symbol", "String should match pattern '^" + SYMBOL.pattern() + "$'");
        }
        t.bid = price(n, "bid");
        t.ask = price(n, "ask");
        t.last = price(n, "last");
        t.size = integer(n, "size", 0, MAX_PRINT_SIZE, null);
        t.eventTimeMs = integer(n, "event_time_ms", 0, MAX_EPOCH_MS, null);
        t.seq = integer(n, "seq", 1, Long.MAX_VALUE, null);
        t.scenarioId = text(n, "scenario_id");
        int length = t.scenarioId.codePointCount(0, t.scenarioId.length());
        if (length < 1) {
            throw new Invalid("scenario_id", "String should have at least 1 character");
        }
        if (length > 128) {
            throw new Invalid("scenario_id", "String should have at most 128 characters");
        }
        t.runId = integer(n, "run_id", 0, Long.MAX_VALUE, 0L);
        for (Iterator<String> names = n.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            if (!FIELDS.contains(name)) {
                throw new Invalid(name, "Extra inputs are not permitted");
            }
        }
        if (t.bid.compareTo(MAX_PRICE) >= 0) {  // the cap is the one price no bid reaches (events.Tick)
            throw new Invalid("$", "Value error, bid " + t.bid + " is not below the price cap " + MAX_PRICE);
        }
        if (t.bid.compareTo(t.ask) > 0) {
            throw new Invalid("$", "Value error, bid " + t.bid + " is above ask " + t.ask);
        }
        return t;
    }

    static String trim(String s, String space) {
        int from = 0;
        int to = s.length();
        while (from < to && space.indexOf(s.charAt(from)) >= 0) {
            from++;
        }
        while (to > from && space.indexOf(s.charAt(to - 1)) >= 0) {
            to--;
        }
        return s.substring(from, to);
    }

    /** A JSON float as Python reads it: the nearest double (what the reader made of it). */
    private static double asFloat(JsonNode v) {
        return v.doubleValue();
    }

    private static boolean hugeInteger(JsonNode n) {
        if (n.isBigInteger()) {
            return n.bigIntegerValue().abs().toString().length() > MAX_INT_DIGITS;
        }
        for (JsonNode child : n) {
            if (hugeInteger(child)) {
                return true;
            }
        }
        return false;
    }

    /** `schema_version: Literal[1]`: absent, or a number (or true) equal to 1. */
    private static void literalOne(JsonNode n) throws Invalid {
        JsonNode v = n.get("schema_version");
        if (v == null || (v.isBoolean() && v.booleanValue())
                || (v.isIntegralNumber() && v.bigIntegerValue().equals(java.math.BigInteger.ONE))
                || (v.isNumber() && !v.isIntegralNumber() && asFloat(v) == 1.0)) {
            return;
        }
        throw new Invalid("schema_version", "Input should be 1");
    }

    private static String text(JsonNode n, String field) throws Invalid {
        JsonNode v = n.get(field);
        if (v == null) {
            throw new Invalid(field, "Field required");
        }
        if (!v.isTextual()) {
            throw new Invalid(field, "Input should be a valid string");
        }
        String s = v.textValue();
        if (s.codePoints().anyMatch(c -> c >= 0xD800 && c <= 0xDFFF)) {  // a lone surrogate: not text in Python
            throw new Invalid(field, "Input should be a valid string, unpaired surrogate");
        }
        return s;
    }

    /** `MarketPrice`: a decimal string or a JSON integer (never a float), finite, in (0, MAX_PRICE], at most
     * PRICE_PLACES places once trailing zeros are dropped; kept as written (scale and all), as Decimal keeps it. */
    private static BigDecimal price(JsonNode n, String field) throws Invalid {
        JsonNode v = n.get(field);
        if (v == null) {
            throw new Invalid(field, "Field required");
        }
        BigDecimal d;
        if (v.isIntegralNumber()) {
            d = new BigDecimal(v.bigIntegerValue());
        } else if (v.isNumber()) {  // NaN and Infinity literals too: Python's json reads them as floats
            throw new Invalid(field, "Value error, must be a decimal string, not a float");
        } else if (v.isTextual()) {
            String s = trim(v.textValue(), PYTHON_SPACE).replace("_", "");  // pydantic drops every underscore
            if (NOT_FINITE.matcher(s).matches()) {
                throw new Invalid(field, "Input should be a finite number");
            }
            try {
                d = new BigDecimal(s);
            } catch (NumberFormatException e) {
                throw new Invalid(field, "Input should be a valid decimal");
            }
        } else {
            throw new Invalid(field, "Decimal input should be an integer, float, string or Decimal object");
        }
        if (d.signum() <= 0) {
            throw new Invalid(field, "Input should be greater than 0");
        }
        if (d.compareTo(MAX_PRICE) > 0) {
            throw new Invalid(field, "Input should be less than or equal to " + MAX_PRICE);
        }
        if (d.stripTrailingZeros().scale() > PRICE_PLACES) {
            throw new Invalid(field, "Decimal input should have no more than " + PRICE_PLACES + " decimal places");
        }
        return d;
    }

    /** A pydantic lax int: a JSON integer, an integral float (as the double Python reads), true/false, or a
     * string of an integer (spaces, sign, digit underscores and a ".0" allowed). */
    private static long integer(JsonNode n, String field, long min, long max, Long absent) throws Invalid {
        JsonNode v = n.get(field);
        if (v == null) {
            if (absent != null) {
                return absent;
            }
            throw new Invalid(field, "Field required");
        }
        BigDecimal d;
        if (v.isBoolean()) {
            d = v.booleanValue() ? BigDecimal.ONE : BigDecimal.ZERO;
        } else if (v.isIntegralNumber()) {
            d = new BigDecimal(v.bigIntegerValue());
        } else if (v.isNumber()) {
            double f = asFloat(v);
            if (Double.isNaN(f) || Double.isInfinite(f)) {
                throw new Invalid(field, "Input should be a finite number");
            }
            if (f != Math.rint(f)) {
                throw new Invalid(field, "Input should be a valid integer, got a number with a fractional part");
            }
            d = new BigDecimal(f);
        } else if (v.isTextual()) {
            String s = trim(v.textValue(), UNICODE_SPACE);
            if (!INTEGER_TEXT.matcher(s).matches()) {
                throw new Invalid(field, "Input should be a valid integer, unable to parse string as an integer");
            }
            d = new BigDecimal(s.replace("_", ""));
        } else {
            throw new Invalid(field, "Input should be a valid integer");
        }
        if (d.compareTo(BigDecimal.valueOf(min)) < 0) {
            throw new Invalid(field, "Input should be greater than or equal to " + min);
        }
        if (d.compareTo(BigDecimal.valueOf(max)) > 0) {
            throw new Invalid(field, "Input should be less than or equal to " + max);
        }
        return d.longValueExact();
    }
}

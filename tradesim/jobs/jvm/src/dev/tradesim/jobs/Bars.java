package dev.tradesim.jobs;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.OffsetResetStrategy;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.TopicPartition;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * The `bars` job in the JVM: 1 s and 1 min OHLCV bars from `market_data` to `market_bars`, keyed by symbol.
 *
 * <p>The rule is `tradesim.jobs.bars_logic.on_tick` (per-symbol event-time clock, bounded out-of-orderness, a
 * tick whose 1 s window closed is late) and the tick check is `tradesim.domain.events.Tick`; the Python side is
 * the oracle the integration tests hold this job to. Arguments are the catalog's (`tradesim.stack.jobs`).
 */
public final class Bars {
    static final String JOB = "bars";
    static final long SECOND = 1_000L;
    static final long MINUTE = 60_000L;
    static final OutputTag<String> DEAD_LETTERS = new OutputTag<String>("dead_letter") {};

    private Bars() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = args(argv);
        String bootstrap = need(a, "bootstrap");
        String protocol = a.getOrDefault("kafka-security-protocol", "PLAINTEXT");
        String sourceTopic = a.getOrDefault("source-topic", "market_data");
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        // a tick crosses one exchange (by symbol); at Flink's default 100 ms buffer timeout a quiet stream's bar
        // would wait up to that there (as the execution job: 5 ms; a busy stream fills its buffers first)
        env.setBufferTimeout(Long.parseLong(a.getOrDefault("buffer-timeout-ms", "5")));
        env.enableCheckpointing(Long.parseLong(a.getOrDefault("checkpoint-interval-ms", "5000")),
                CheckpointingMode.EXACTLY_ONCE);

        KafkaSource<String> source = KafkaSource.<String>builder()
                .setBootstrapServers(bootstrap)
                .setProperty("security.protocol", protocol)
                .setTopics(sourceTopic)
                .setGroupId(a.getOrDefault("group-id", "tradesim-bars"))
                .setStartingOffsets(startAt(sourceTopic, a.getOrDefault("source-start", "")))
                .setValueOnlyDeserializer(new NullableText())
                .setProperty("partition.discovery.interval.ms", "60000")
                .build();
        DataStream<String> raw = env.fromSource(source, WatermarkStrategy.noWatermarks(), "market_data")
                .uid("market_data");
        SingleOutputStreamOperator<Tick> ticks = raw.process(new ParseTicks(sourceTopic)).name("parse ticks")
                .uid("parse ticks");
        SingleOutputStreamOperator<Tuple2<String, String>> bars = ticks
                .keyBy(t -> t.symbol, Types.STRING)
                .process(new SymbolBars(Long.parseLong(a.getOrDefault("out-of-orderness-ms", "2000")), sourceTopic,
                        a.getOrDefault("poison-symbol", "")))
                .returns(Types.TUPLE(Types.STRING, Types.STRING))
                .name("bars 1s+1m per symbol")
                .uid("bars 1s+1m per symbol");

        ticks.getSideOutput(DEAD_LETTERS).union(bars.getSideOutput(DEAD_LETTERS))
                .sinkTo(KafkaSink.<String>builder()
                        .setBootstrapServers(bootstrap)
                        .setProperty("security.protocol", protocol)
                        .setRecordSerializer(KafkaRecordSerializationSchema.<String>builder()
                                .setTopic(a.getOrDefault("dead-letter-topic", "dead_letter"))
                                .setValueSerializationSchema(new SimpleStringSchema())
                                .build())
                        .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
                        .build())
                .name("dead_letter")
                .uid("dead_letter");
        bars.sinkTo(KafkaSink.<Tuple2<String, String>>builder()
                        .setBootstrapServers(bootstrap)
                        .setProperty("security.protocol", protocol)
                        .setRecordSerializer(KafkaRecordSerializationSchema.<Tuple2<String, String>>builder()
                                .setTopic(a.getOrDefault("bars-topic", "market_bars"))
                                .setKeySerializationSchema(new Field(0))
                                .setValueSerializationSchema(new Field(1))
                                .build())
                        .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
                        .build())
                .name("market_bars")
                .uid("market_bars");
        env.execute(a.getOrDefault("job-name", "tradesim-bars"));
    }

    /** One field of a (key, value) row as UTF-8 (a class, not a lambda: the sink infers its type). */
    static final class Field implements SerializationSchema<Tuple2<String, String>> {
        private static final long serialVersionUID = 1L;
        private final int index;

        Field(int index) {
            this.index = index;
        }

        @Override
        public byte[] serialize(Tuple2<String, String> row) {
            String v = row.getField(index);
            return v.getBytes(StandardCharsets.UTF_8);
        }
    }

    /** "--name value" pairs; a bare "--name" is an error, as an unknown value would be. */
    static Map<String, String> args(String[] argv) {
        Map<String, String> out = new HashMap<>();
        for (int i = 0; i < argv.length; i += 2) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --name value pairs, got " + argv[i]);
            }
            out.put(argv[i].substring(2), argv[i + 1]);
        }
        return out;
    }

    static String need(Map<String, String> a, String name) {
        String v = a.get(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }

    /** As `tradesim.jobs.sinks.start_at`: listed offsets, else (and for partitions not listed) the group's
     * committed offsets, else the beginning. The connector (5.0) takes no other reset type than the deprecated one. */
    @SuppressWarnings("deprecation")
    static OffsetsInitializer startAt(String topic, String offsets) {
        if (offsets.isEmpty()) {
            return OffsetsInitializer.committedOffsets(OffsetResetStrategy.EARLIEST);
        }
        Map<TopicPartition, Long> at = new HashMap<>();
        for (String item : offsets.split(",")) {
            String[] po = item.split(":");
            at.put(new TopicPartition(topic, Integer.parseInt(po[0])), Long.parseLong(po[1]));
        }
        return OffsetsInitializer.offsets(at, OffsetResetStrategy.EARLIEST);
    }

    /** A letter's record and reason at most, in characters, as `tradesim.domain.events.DeadLetter.of` cuts them. */
    static final int MAX_RECORD_CHARS = 64 * 1024;
    static final int MAX_REASON_CHARS = 4 * 1024;

    /** The DeadLetter event (`tradesim.domain.events.DeadLetter`) as JSON, cut to fit a Kafka record. */
    static String deadLetter(ObjectMapper json, String record, String reason, String sourceTopic) {
        int reasonChars = reason.codePointCount(0, reason.length());
        if (reasonChars > MAX_REASON_CHARS) {
            reason = reason.substring(0, reason.offsetByCodePoints(0, MAX_REASON_CHARS)) + "\u2026 (reason cut)";
        }
        int recordChars = record.codePointCount(0, record.length());
        if (recordChars > MAX_RECORD_CHARS) {
            reason = reason + " (record cut to its first " + MAX_RECORD_CHARS + " of " + recordChars + " characters)";
            record = record.substring(0, record.offsetByCodePoints(0, MAX_RECORD_CHARS));
        }
        ObjectNode o = json.createObjectNode();
        o.put("schema_version", 1).put("type", "dead_letter").put("source_topic", sourceTopic)
                .put("consumer", JOB).put("reason", reason).put("record", record);
        return o.toString();
    }

    /** A valid tick (a Flink POJO: it crosses the keyBy exchange). */
    public static class Tick {
        public String symbol;
        public BigDecimal bid;
        public BigDecimal ask;
        public BigDecimal last;
        public long size;
        public long eventTimeMs;
        public long seq;
        public String scenarioId;
        public long runId;

        public Tick() {}

        /** The tick as `tradesim.domain.events.encode` writes it (field order and all). */
        String toJson(ObjectMapper json) {
            ObjectNode o = json.createObjectNode();
            o.put("schema_version", 1).put("type", "tick").put("symbol", symbol).put("bid", bid.toString())
                    .put("ask", ask.toString()).put("last", last.toString()).put("size", size)
                    .put("event_time_ms", eventTimeMs).put("seq", seq).put("scenario_id", scenarioId)
                    .put("run_id", runId);
            return o.toString();
        }
    }

    /** A record of `market_data` as a Tick, or a dead letter naming the first bad field. */
    static final class ParseTicks extends ProcessFunction<String, Tick> {
        private static final long serialVersionUID = 1L;
        private final String sourceTopic;
        private transient ObjectMapper json;

        ParseTicks(String sourceTopic) {
            this.sourceTopic = sourceTopic;
        }

        @Override
        public void open(OpenContext ctx) {
            json = TickCheck.mapper();
        }

        @Override
        public void processElement(String raw, Context ctx, Collector<Tick> out) {
            Tick tick;
            try {
                tick = TickCheck.parse(json, raw);
            } catch (TickCheck.Invalid e) {
                ctx.output(DEAD_LETTERS, deadLetter(json, raw, e.getMessage(), sourceTopic));
                return;
            } catch (RuntimeException e) {  // a record the check did not foresee: set aside, never a restart loop
                ctx.output(DEAD_LETTERS, deadLetter(json, raw, "parse failed: " + e, sourceTopic));
                return;
            }
            out.collect(tick);
        }
    }

    /** One window's running aggregate (`bars_logic.BarAcc`); a Flink POJO in keyed map state. */
    public static class Acc {
        public long firstTime;
        public long firstRun;
        public long firstSeq;
        public BigDecimal open;
        public long lastTime;
        public long lastRun;
        public long lastSeq;
        public BigDecimal close;
        public BigDecimal high;
        public BigDecimal low;
        public long volume;
        public BigDecimal notional;
        public long count;

        public Acc() {}

        static Acc of(Tick t) {
            Acc a = new Acc();
            a.firstTime = a.lastTime = t.eventTimeMs;
            a.firstRun = a.lastRun = t.runId;
            a.firstSeq = a.lastSeq = t.seq;
            a.open = a.close = a.high = a.low = t.last;
            a.volume = t.size;
            a.notional = t.last.multiply(BigDecimal.valueOf(t.size));
            a.count = 1;
            return a;
        }

        /** `bars_logic.merge(this, tick)`: ties keep this side's open, close, high and low, as Python's. */
        Acc add(Tick t) {
            if (compareKey(t.eventTimeMs, t.runId, t.seq, firstTime, firstRun, firstSeq) < 0) {
                firstTime = t.eventTimeMs;
                firstRun = t.runId;
                firstSeq = t.seq;
                open = t.last;
            }
            if (compareKey(t.eventTimeMs, t.runId, t.seq, lastTime, lastRun, lastSeq) > 0) {
                lastTime = t.eventTimeMs;
                lastRun = t.runId;
                lastSeq = t.seq;
                close = t.last;
            }
            if (t.last.compareTo(high) > 0) {
                high = t.last;
            }
            if (t.last.compareTo(low) < 0) {
                low = t.last;
            }
            volume += t.size;
            notional = notional.add(t.last.multiply(BigDecimal.valueOf(t.size)));
            count += 1;
            return this;
        }

        static int compareKey(long t1, long r1, long s1, long t2, long r2, long s2) {
            int c = Long.compare(t1, t2);
            if (c == 0) {
                c = Long.compare(r1, r2);
            }
            return c != 0 ? c : Long.compare(s1, s2);
        }

        /** VWAP as `bars_logic.to_bar`: the quotient in Decimal's default 28-digit context, then 8 places. */
        BigDecimal vwap() {
            if (volume == 0) {
                return close;
            }
            return notional.divide(BigDecimal.valueOf(volume), new MathContext(28, RoundingMode.HALF_EVEN))
                    .setScale(8, RoundingMode.HALF_EVEN);
        }

        /** The Bar event (`tradesim.domain.events.Bar`) as `encode` writes it. */
        String toJson(ObjectMapper json, String symbol, String interval, long start, long end) {
            ObjectNode o = json.createObjectNode();
            o.put("schema_version", 1).put("type", "bar").put("symbol", symbol).put("interval", interval)
                    .put("window_start_ms", start).put("window_end_ms", end).put("open", open.toString())
                    .put("high", high.toString()).put("low", low.toString()).put("close", close.toString())
                    .put("vwap", vwap().toString()).put("volume", volume).put("trade_count", count);
            return o.toString();
        }
    }

    /** Keyed by symbol: `bars_logic.on_tick` on the symbol's clock and its open 1 s and 1 min windows. */
    static final class SymbolBars extends KeyedProcessFunction<String, Tick, Tuple2<String, String>> {
        private static final long serialVersionUID = 1L;
        private final long lagMs;
        private final String sourceTopic;
        private final String poison;
        private transient ValueState<Long> clock;
        private transient MapState<Long, Acc> seconds;
        private transient MapState<Long, Acc> minutes;
        private transient ObjectMapper json;

        SymbolBars(long lagMs, String sourceTopic, String poison) {
            this.lagMs = lagMs;
            this.sourceTopic = sourceTopic;
            this.poison = poison;
        }

        @Override
        public void open(OpenContext ctx) {
            clock = getRuntimeContext().getState(new ValueStateDescriptor<>("clock", Types.LONG));
            seconds = getRuntimeContext().getMapState(new MapStateDescriptor<>("1s", Types.LONG, Types.POJO(Acc.class)));
            minutes = getRuntimeContext().getMapState(new MapStateDescriptor<>("1m", Types.LONG, Types.POJO(Acc.class)));
            json = new ObjectMapper();
        }

        @Override
        public void processElement(Tick t, Context ctx, Collector<Tuple2<String, String>> out) throws Exception {
            if (!poison.isEmpty() && poison.equals(t.symbol)) {  // faults.poison["bars"]: the test stack's
                ctx.output(DEAD_LETTERS, deadLetter(json, t.toJson(json), "bars failed: InjectedFault: injected fault: "
                        + "bars fails on " + t.symbol + " (faults.poison)", sourceTopic));
                return;
            }
            List<Tuple2<String, String>> bars;
            try {
                bars = onTick(t);
            } catch (RuntimeException e) {  // as tradesim.jobs.guard: the tick is set aside, the job goes on
                ctx.output(DEAD_LETTERS, deadLetter(json, t.toJson(json), "bars failed: " + e, sourceTopic));
                return;
            }
            bars.forEach(out::collect);
        }

        /** `bars_logic.on_tick`: the bars this tick closes, oldest window end first. */
        private List<Tuple2<String, String>> onTick(Tick t) throws Exception {
            List<Tuple2<String, String>> emitted = new ArrayList<>();
            Long seen = clock.value();
            long now = seen == null ? -1 : seen;
            if (windowStart(t.eventTimeMs, SECOND) + SECOND - 1 <= now - lagMs - 1) {
                return emitted;  // late (`bars_logic.is_late`): its 1 s window already closed on this symbol's clock
            }
            long s = windowStart(t.eventTimeMs, SECOND);
            long m = windowStart(t.eventTimeMs, MINUTE);
            Acc sa = seconds.get(s);
            seconds.put(s, sa == null ? Acc.of(t) : sa.add(t));
            Acc ma = minutes.get(m);
            minutes.put(m, ma == null ? Acc.of(t) : ma.add(t));
            now = Math.max(now, t.eventTimeMs);
            clock.update(now);
            long watermark = now - lagMs - 1;
            // closed windows, oldest end first; at one end the 1 s bar before the 1 min bar (bars_logic's order)
            List<long[]> done = new ArrayList<>();
            collectClosed(seconds, SECOND, watermark, done);
            collectClosed(minutes, MINUTE, watermark, done);
            done.sort((x, y) -> x[0] != y[0] ? Long.compare(x[0], y[0]) : Long.compare(x[1], y[1]));
            for (long[] d : done) {
                MapState<Long, Acc> windows = d[1] == SECOND ? seconds : minutes;
                Acc acc = windows.get(d[2]);
                windows.remove(d[2]);
                emitted.add(Tuple2.of(t.symbol, acc.toJson(json, t.symbol, d[1] == SECOND ? "1s" : "1m", d[2],
                        d[0])));
            }
            return emitted;
        }

        private static void collectClosed(MapState<Long, Acc> windows, long size, long watermark, List<long[]> done)
                throws Exception {
            for (Iterator<Long> it = windows.keys().iterator(); it.hasNext(); ) {
                long start = it.next();
                if (start + size - 1 <= watermark) {
                    done.add(new long[] {start + size, size, start});
                }
            }
        }
    }

    static long windowStart(long ts, long size) {
        return ts - Math.floorMod(ts, size);
    }
}

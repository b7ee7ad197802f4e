package dev.tradesim.jobs;

import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;

/**
 * A Kafka record's value as text, and a record without a value (a tombstone) as "": every job's parse then sets
 * it aside as a bad record, where SimpleStringSchema throws and restarts the job on that record forever. Public:
 * the PyFlink jobs take it through py4j (`tradesim.jobs.sinks.text_values`).
 */
public final class NullableText implements DeserializationSchema<String> {
    private static final long serialVersionUID = 1L;

    @Override
    public String deserialize(byte[] message) {
        return message == null ? "" : new String(message, StandardCharsets.UTF_8);
    }

    @Override
    public boolean isEndOfStream(String next) {
        return false;
    }

    @Override
    public TypeInformation<String> getProducedType() {
        return Types.STRING;
    }
}

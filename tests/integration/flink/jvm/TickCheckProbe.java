package dev.tradesim.jobs;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/** Test probe: each stdin line through the bars job's TickCheck; prints "OK <tick as encoded>", "ERR <reason>" or
 * "CRASH <exception>" (a record the check did not foresee). */
public final class TickCheckProbe {
    private TickCheckProbe() {}

    public static void main(String[] args) throws Exception {
        ObjectMapper json = TickCheck.mapper();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            try {
                out.println("OK " + TickCheck.parse(json, line).toJson(json));
            } catch (TickCheck.Invalid e) {
                out.println("ERR " + e.getMessage().replace('\n', ' '));
            } catch (RuntimeException e) {  // the job would dead-letter it as "parse failed"; the test names it
                out.println("CRASH " + e.toString().replace('\n', ' '));
            }
        }
        out.flush();
    }
}

package dev.tradesim.jobs;

import java.io.File;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * The jobs jar's Main-Class, for Amazon Managed Service for Apache Flink, which starts a Java application with no
 * program arguments: the job's class and arguments are in the application's runtime properties, group
 * `tradesim.job` (`class`, and `args` as a JSON list of strings), as the CDK app in tradesim/infra writes them.
 * The Python jobs' counterpart is `tradesim.jobs.managed`. `--properties PATH` reads another file (the tests).
 */
public final class Managed {
    static final String PROPERTIES = "/etc/flink/application_properties.json";
    static final String JOB_GROUP = "tradesim.job";
    static final String PACKAGE = "dev.tradesim.jobs.";

    private Managed() {}

    public static void main(String[] argv) throws Exception {
        String path = PROPERTIES;
        if (argv.length == 2 && argv[0].equals("--properties")) {
            path = argv[1];
        } else if (argv.length != 0) {
            throw new IllegalArgumentException("usage: Managed [--properties PATH]");
        }
        ObjectMapper json = new ObjectMapper();
        JsonNode job = null;
        for (JsonNode group : json.readTree(new File(path))) {
            if (JOB_GROUP.equals(group.path("PropertyGroupId").asText())) {
                job = group.path("PropertyMap");
            }
        }
        if (job == null) {
            throw new IllegalArgumentException("no property group " + JOB_GROUP + " in " + path);
        }
        String name = job.path("class").asText("");
        if (!name.startsWith(PACKAGE) || name.equals(Managed.class.getName())) {  // a job of this jar, not any class
            throw new IllegalArgumentException(JOB_GROUP + ".class must be a class of " + PACKAGE + ", got " + name);
        }
        JsonNode args = json.readTree(job.path("args").asText("[]"));
        List<String> list = new ArrayList<>();
        if (!args.isArray()) {
            throw new IllegalArgumentException(JOB_GROUP + ".args must be a JSON list of strings");
        }
        for (JsonNode arg : args) {
            if (!arg.isTextual()) {
                throw new IllegalArgumentException(JOB_GROUP + ".args must be a JSON list of strings");
            }
            list.add(arg.asText());
        }
        Method main = Class.forName(name).getMethod("main", String[].class);
        try {
            main.invoke(null, (Object) list.toArray(new String[0]));
        } catch (InvocationTargetException e) {  // the job's own failure, not reflection's wrapper
            Throwable cause = e.getCause();
            if (cause instanceof Exception) {
                throw (Exception) cause;
            }
            throw e;
        }
    }
}

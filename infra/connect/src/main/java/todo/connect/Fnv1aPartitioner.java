package todo.connect;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

import org.apache.kafka.clients.producer.Partitioner;
import org.apache.kafka.common.Cluster;
import org.apache.kafka.common.PartitionInfo;

/**
 * The partition of a keyed record as every other producer of the project picks it: 32-bit FNV-1a
 * of the key's bytes, read as a signed 32-bit integer, {@code |hash % partitions|}. That is
 * sarama's hash partitioner (the Dapr sidecar's Kafka producer) and librdkafka's
 * {@code fnv1a_random} (confluent-kafka: the relay, replay_dlq, publish_event). Kafka's own
 * default, murmur2, would put one task's events on another partition than theirs, breaking the
 * per-task order of a topic whenever the publishers change or interleave.
 *
 * A record without a key (the project writes none) goes to a random available partition, as with
 * both of those.
 */
public final class Fnv1aPartitioner implements Partitioner {
    private static final int OFFSET_BASIS = 0x811C9DC5;
    private static final int PRIME = 0x01000193;

    static int fnv1a(byte[] bytes) {
        int hash = OFFSET_BASIS;
        for (byte b : bytes) {
            hash ^= b & 0xFF;
            hash *= PRIME;
        }
        return hash;
    }

    /** The partition of {@code keyBytes} among {@code partitions}; Java's %, like Go's, keeps the dividend's sign. */
    static int partitionOf(byte[] keyBytes, int partitions) {
        return Math.abs(fnv1a(keyBytes) % partitions);
    }

    @Override
    public int partition(String topic, Object key, byte[] keyBytes, Object value, byte[] valueBytes, Cluster cluster) {
        if (keyBytes == null) {
            List<PartitionInfo> available = cluster.availablePartitionsForTopic(topic);
            List<PartitionInfo> candidates = available.isEmpty() ? cluster.partitionsForTopic(topic) : available;
            return candidates.get(ThreadLocalRandom.current().nextInt(candidates.size())).partition();
        }
        return partitionOf(keyBytes, cluster.partitionCountForTopic(topic));
    }

    @Override
    public void configure(Map<String, ?> configs) {
    }

    @Override
    public void close() {
    }
}

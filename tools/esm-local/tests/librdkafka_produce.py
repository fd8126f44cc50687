"""Produces records with librdkafka (confluent-kafka), an independent producer for esm-local's tests.

    librdkafka_produce.py BOOTSTRAP TOPIC CODEC COUNT

Record i goes to partition 0 with key `k<i>` and value `<CODEC>-<i>-` followed by compressible
filler (librdkafka sends a batch uncompressed when compression would not make it smaller). The
records are lingered into batches of up to 200, so each batch really carries CODEC and a fetch
spans several of them. Prints the number of records acknowledged; exits non-zero if any was not.
"""

import sys

from confluent_kafka import Producer


def main() -> int:
    bootstrap, topic, codec, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "linger.ms": 100,
            "batch.num.messages": 200,
            "acks": "all",
            "enable.idempotence": False,
        }
    )
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    filler = " the quick brown fox jumps over the lazy dog" * 4
    for i in range(count):
        producer.produce(
            topic, key=f"k{i}", value=f"{codec}-{i}-{filler}", partition=0, on_delivery=delivered
        )
        producer.poll(0)
    left = producer.flush(30)
    if left or failures:
        print(f"{left} records not delivered, errors: {failures[:5]}", file=sys.stderr)
        return 1
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
